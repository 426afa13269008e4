package microbatch

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Job is a streaming computation: Spark's StreamingContext with its DStream
// graph. Build the graph with the job's inputs and the package's operators,
// declare at least one output operation, then Run it (or Start it and
// AwaitTermination). A Job runs once.
type Job struct {
	interval    time.Duration
	clock       Clock
	log         zerolog.Logger
	stdout      io.Writer
	location    *time.Location
	parallelism int
	renewEvery  time.Duration
	retainPlans uint64
	maxBatches  uint64
	maxGroup    int
	retryFor    time.Duration
	remember    time.Duration
	listeners   []func(BatchStats)
	// partFormat is the encoding of the state parts the job writes.
	partFormat int
	// incrementalWindows keeps every ReduceByKeyAndWindow with an inverse
	// incremental, however short its window: the tests that compare the
	// two forms, or need the incremental one's checkpoint, set it.
	incrementalWindows bool

	// The graph as the operators build it; Start compiles it into graph.
	store    Store
	nodes    []node
	inputs   []input
	stateful []stateful
	outputs  []output
	sinks    []Sink
	buildErr []error
	graph    *graph
	// task is the part of a sharded job this job runs (nil: all of it).
	task *Task
	// firstBatch agrees on the time of a fresh job's first batch.
	firstBatch func(ctx context.Context, proposed time.Time) (time.Time, error)

	// Set by recovery on the job's goroutine: storeGraph makes the next
	// commit store the graph's fingerprint; base is the reset base.
	storeGraph bool
	base       uint64
	// sealing is the group sealing while the next batch computes; the
	// job's loop sets it, and waits for it before a stateful operator
	// changes its state (stepAll).
	sealing *sealing
	// lead is how far the job's timeline runs ahead of this host's clock
	// (ns), read by ClockSkew from any goroutine.
	lead atomic.Int64

	// stopped is canceled by Stop: no batch starts after it, and whatever
	// the job waits for between batches (its batch time, the lease, a
	// store that is down during recovery) is abandoned at once.
	stopped context.Context
	stop    context.CancelFunc
	mu      struct {
		sync.Mutex
		started bool
		cancel  context.CancelFunc
		done    chan struct{}
		err     error
	}
}

// Option configures a Job.
type Option func(*Job)

// WithClock sets the clock that decides when batch times are reached
// (default: the wall clock). A VirtualClock runs batches back to back.
func WithClock(c Clock) Option { return func(j *Job) { j.clock = c } }

// WithLogger sets the job's logger (default: none).
func WithLogger(l zerolog.Logger) Option {
	return func(j *Job) { j.log = l.With().Str("component", "microbatch").Logger() }
}

// WithStdout sets where Pprint prints (default os.Stdout).
func WithStdout(w io.Writer) Option { return func(j *Job) { j.stdout = w } }

// WithLocation sets the time zone of pprint's batch times (default UTC).
func WithLocation(l *time.Location) Option { return func(j *Job) { j.location = l } }

// WithParallelism sets how many goroutines keyed operations use (default
// GOMAXPROCS). Outputs do not depend on it.
func WithParallelism(n int) Option { return func(j *Job) { j.parallelism = max(1, n) } }

// WithLeaseRenewal sets how often the Store lease is renewed (default 1s);
// keep it well under the Store's lease TTL.
func WithLeaseRenewal(d time.Duration) Option { return func(j *Job) { j.renewEvery = d } }

// WithPlanRetention keeps the plans of the last n committed batches for
// replays and audits (default 8640, a day of 10 s batches). Plans that open
// windows need are always kept.
func WithPlanRetention(n uint64) Option { return func(j *Job) { j.retainPlans = n } }

// WithRetry sets how long a failing Source, Store or Sink call is retried,
// with backoff, before the job fails (default 2m; 0 fails at once). Fencing,
// checkpoint conflicts and errors marked ErrPermanent are never retried.
func WithRetry(d time.Duration) Option { return func(j *Job) { j.retryFor = d } }

// WithCommitGroup bounds how many batches commit together when they wait
// for the commit before them (docs/checkpoint.md): 16 by default; 1
// commits every batch on its own.
func WithCommitGroup(n int) Option { return func(j *Job) { j.maxGroup = max(1, n) } }

// WithStatePartFormat sets the encoding of the state parts the job writes
// (docs/checkpoint.md): 2, the default, or 1, which releases before
// 2026-12-02 read too, for as long as rolling back to one must stay
// possible. Parts of both formats are always read.
func WithStatePartFormat(n int) Option { return func(j *Job) { j.partFormat = n } }

// WithBatchLimit stops the job after it ran n new batches (0: no limit).
func WithBatchLimit(n uint64) Option { return func(j *Job) { j.maxBatches = n } }

// WithTimeline sets how a job without a committed batch times its first
// one: first gets the time the job would give it (the next multiple of the
// interval) and returns the time to use. The tasks of a sharded job agree on
// one timeline this way (docs/scale-out.md).
func WithTimeline(first func(ctx context.Context, proposed time.Time) (time.Time, error)) Option {
	return func(j *Job) { j.firstBatch = first }
}

// WithListener calls f after every committed batch, on the job's goroutine.
func WithListener(f func(BatchStats)) Option {
	return func(j *Job) { j.listeners = append(j.listeners, f) }
}

// NewJob returns a Job that cuts a batch every interval.
func NewJob(interval time.Duration, opts ...Option) *Job {
	j := &Job{
		interval:    interval,
		clock:       SystemClock{},
		log:         zerolog.Nop(),
		stdout:      os.Stdout,
		location:    time.UTC,
		parallelism: runtime.GOMAXPROCS(0),
		renewEvery:  time.Second,
		retainPlans: 8640,
		retryFor:    2 * time.Minute,
		maxGroup:    16,
		partFormat:  partFormat,
	}
	j.stopped, j.stop = context.WithCancel(context.Background())
	for _, o := range opts {
		o(j)
	}
	if interval <= 0 {
		j.fail("NewJob", fmt.Errorf("batch interval %v must be positive", interval))
	}
	if j.partFormat != partFormat && j.partFormat != partFormatV1 {
		j.fail("NewJob", fmt.Errorf("state part format %d: use %d (the default) or %d (readable by releases before 2026-12-02)", j.partFormat, partFormat, partFormatV1))
	}
	return j
}

// Interval returns the batch interval.
func (j *Job) Interval() time.Duration { return j.interval }

// Checkpoint sets the Store that makes plans, offsets and state durable.
// Stateful operators need one; without it the job keeps nothing across runs.
func (j *Job) Checkpoint(s Store) { j.store = s }

// Remember keeps the plans of at least the last d of batches, beyond what
// windows need (Spark's remember).
func (j *Job) Remember(d time.Duration) { j.remember = d }

func (j *Job) fail(op string, err error) {
	j.buildErr = append(j.buildErr, &BuildError{Op: op, Err: err})
}

// BatchStats describes one committed batch, for metrics and status pages.
type BatchStats struct {
	ID      uint64
	Time    time.Time
	Records int
	Offsets int64 // offsets the plan spans
	// SchedulingDelay is how late the batch started after its batch time.
	SchedulingDelay time.Duration
	// ProcessingTime covers reading, computing and committing.
	ProcessingTime time.Duration
	// CheckpointTime is the part of ProcessingTime spent in the Store.
	CheckpointTime time.Duration
	Messages       int
	StateChanges   int
	// Healed marks a batch recomputed because the Store lost it; its
	// output was in the sink already and was not written again.
	Healed bool
	// Group is how many batches committed together with this one, itself
	// included: 1, or more when batches waited for the commit before them
	// (docs/checkpoint.md). StateChanges of a group count on its last batch.
	Group int
	// LastInGroup marks the last batch of its commit (every batch that
	// committed alone).
	LastInGroup bool
}

// batchRun is one batch going through the graph.
type batchRun struct {
	job      *Job
	id       uint64
	plan     Plan
	rebuild  bool
	messages [][]Message
}

// info describes the batch to sinks and output operations: its plan, the
// graph and reset base, and, for a task fed by exchanges, the input ranges
// its exchanged records derive from.
func (r *batchRun) info() BatchInfo {
	j := r.job
	b := BatchInfo{Plan: r.plan, Base: j.base}
	if j.graph != nil {
		b.Graph = j.graph.fingerprintHash
		for _, in := range j.graph.inputs {
			if x, ok := in.(interface{ origins() []Range }); ok {
				b.Provenance = append(b.Provenance, x.origins()...)
			}
		}
	}
	return b
}

// compiled returns the compiled graph once the job started (nil before),
// from any goroutine.
func (j *Job) compiled() *graph {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.graph
}

// closeInputs closes the sources that hold resources (receivers).
func (j *Job) closeInputs() {
	for _, in := range j.inputs {
		if c, ok := in.(interface{ closeSource() error }); ok {
			if err := c.closeSource(); err != nil {
				j.log.Warn().Err(err).Str("input", in.topic()).Msg("close input")
			}
		}
	}
}
