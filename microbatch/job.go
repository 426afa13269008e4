package microbatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
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
	retryFor    time.Duration
	remember    time.Duration
	listeners   []func(BatchStats)

	store    Store
	nodes    []node
	inputs   []input
	stateful []stateful
	outputs  []output
	sinks    []Sink
	buildErr []error

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

// WithBatchLimit stops the job after it ran n new batches (0: no limit).
func WithBatchLimit(n uint64) Option { return func(j *Job) { j.maxBatches = n } }

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
	}
	j.stopped, j.stop = context.WithCancel(context.Background())
	for _, o := range opts {
		o(j)
	}
	if interval <= 0 {
		j.fail("NewJob", fmt.Errorf("batch interval %v must be positive", interval))
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
}

// batchRun is one batch going through the graph.
type batchRun struct {
	job      *Job
	id       uint64
	plan     Plan
	rebuild  bool
	messages [][]Message
}

func (j *Job) validate(replay bool) error {
	j.propagateRetention()
	j.countReaders()
	errs := slices.Clone(j.buildErr)
	if len(j.outputs) == 0 {
		errs = append(errs, &BuildError{Op: "Start", Err: errors.New("no output operations: add Pprint, ForeachBatch or Write")})
	}
	if len(j.inputs) == 0 {
		errs = append(errs, &BuildError{Op: "Start", Err: errors.New("no inputs: add Lines, Records or QueueStream")})
	}
	txn := 0
	for _, s := range j.sinks {
		if _, ok := s.(TransactionalSink); ok {
			txn++
		}
	}
	if txn > 1 {
		errs = append(errs, &BuildError{Op: "Write", Err: errors.New("a job writes to at most one transactional sink")})
	}
	if len(j.stateful) > 0 && j.store == nil && !replay {
		errs = append(errs, &BuildError{Op: j.stateful[0].stateOp(), Err: errors.New("stateful operators need a checkpoint store: call Job.Checkpoint")})
	}
	statefulIDs := map[int]bool{}
	for _, s := range j.stateful {
		statefulIDs[s.base().id] = true
	}
	for _, n := range j.nodes {
		if n.base().windowSpan > 0 && hasAncestor(n, statefulIDs) {
			errs = append(errs, &BuildError{Op: n.base().op, Err: errors.New("a window over the output of a stateful operator cannot be rebuilt from recorded plans; window its input instead")})
		}
	}
	return errors.Join(errs...)
}

func hasAncestor(n node, ids map[int]bool) bool {
	for _, p := range n.base().parents {
		if ids[p.base().id] || hasAncestor(p, ids) {
			return true
		}
	}
	return false
}

// windowSpan bounds how many past batches the graph's windows need.
func (j *Job) windowSpan() uint64 {
	var span uint64
	for _, n := range j.nodes {
		span += n.base().windowSpan
	}
	return span
}

// Start runs the job in the background; AwaitTermination waits for it.
func (j *Job) Start(ctx context.Context) error {
	if err := j.validate(false); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mu.started {
		cancel()
		return errors.New("microbatch: job already started")
	}
	j.mu.started, j.mu.cancel, j.mu.done = true, cancel, make(chan struct{})
	go func() {
		err := j.run(ctx)
		cancel()
		j.mu.Lock()
		j.mu.err = err
		close(j.mu.done)
		j.mu.Unlock()
	}()
	return nil
}

// Run runs the job until ctx is done, Stop is called, or an error occurs.
// It returns nil after a Stop or when ctx was canceled.
func (j *Job) Run(ctx context.Context) error {
	if err := j.Start(ctx); err != nil {
		return err
	}
	return j.AwaitTermination()
}

// AwaitTermination waits until the job ends and returns its error.
func (j *Job) AwaitTermination() error {
	_, err := j.AwaitTerminationOrTimeout(-1)
	return err
}

// AwaitTerminationOrTimeout waits at most d (forever if d < 0); it reports
// whether the job ended, and its error.
func (j *Job) AwaitTerminationOrTimeout(d time.Duration) (bool, error) {
	j.mu.Lock()
	done := j.mu.done
	j.mu.Unlock()
	if done == nil {
		return false, errors.New("microbatch: job not started")
	}
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-done:
		j.mu.Lock()
		defer j.mu.Unlock()
		return true, j.mu.err
	case <-timeout:
		return false, nil
	}
}

// Stop stops the job. A graceful stop lets the batch in flight finish and
// commit; otherwise it is abandoned, to be run again from its recorded plan
// on the next start.
func (j *Job) Stop(graceful bool) {
	j.stop()
	if !graceful {
		j.mu.Lock()
		if j.mu.cancel != nil {
			j.mu.cancel()
		}
		j.mu.Unlock()
	}
}

func (j *Job) run(ctx context.Context) error {
	store := j.store
	if store == nil {
		store = NewMemoryStore()
	}
	// idle is ctx, also canceled by Stop: between batches nothing is in
	// flight, so a stop need not wait for anything there.
	idle, cancelIdle := context.WithCancel(ctx)
	defer cancelIdle()
	defer context.AfterFunc(j.stopped, cancelIdle)()
	var meta Meta
	err := j.retry(idle, "acquire", func() (err error) {
		meta, err = store.Acquire(idle)
		return err
	})
	if err != nil {
		if idle.Err() != nil {
			return nil
		}
		return fmt.Errorf("acquire job: %w", err)
	}
	j.log.Info().Uint64("committed", meta.Committed).Uint64("epoch", meta.Epoch).Msg("job acquired")

	defer j.closeInputs()
	runCtx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel(nil)
		wg.Wait()
		// Releasing lets a standby take over at once; if the store is
		// down, the lease lapses on its own within its TTL.
		rctx, cancelRelease := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancelRelease()
		if err := store.Release(rctx); err != nil {
			j.log.Warn().Err(err).Msg("release job")
		}
	}()
	wg.Go(func() {
		t := time.NewTicker(j.renewEvery)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				err := store.Renew(runCtx)
				switch {
				case err == nil || runCtx.Err() != nil:
				case errors.Is(err, ErrFenced) || errors.Is(err, ErrPermanent):
					cancel(fmt.Errorf("renew lease: %w", err))
					return
				default:
					// The store is unreachable for now (a Redis restart): keep
					// going and try again. If another instance takes the job
					// meanwhile, its epoch fences every later write of ours.
					j.log.Warn().Err(err).Msg("renew lease failed; retrying")
				}
			}
		}
	})
	err = j.loop(runCtx, store, meta)
	if cause := context.Cause(runCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	if (ctx.Err() != nil || j.stopped.Err() != nil) && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// releaseTimeout bounds how long a stopping job tries to release the lease.
const releaseTimeout = 2 * time.Second

func (j *Job) loop(ctx context.Context, store Store, meta Meta) error {
	// idle is ctx, also canceled by Stop: what the job waits for while no
	// batch is in flight.
	idle, cancelIdle := context.WithCancel(ctx)
	defer cancelIdle()
	defer context.AfterFunc(j.stopped, cancelIdle)()
	last, pending, err := j.recover(idle, store, meta)
	if err != nil {
		return err
	}
	ran := uint64(0)
	if pending != nil {
		if err := j.runBatch(ctx, store, *pending, j.clock.Now(), nil, nil); err != nil {
			return err
		}
		last, ran = *pending, 1
	}
	next := last.Time.Add(j.interval)
	if last.ID == 0 {
		// A fresh job aligns its batch times to the interval, as Spark does.
		next = j.clock.Now().Truncate(j.interval).Add(j.interval)
	}
	// While a batch computes and commits, the next one is cut and read if
	// its time has come (the job is catching up): reading then overlaps
	// computing rather than adding to it.
	var ahead *early
	earlyCtx, cancelEarly := context.WithCancel(ctx)
	defer func() {
		cancelEarly()
		if ahead != nil {
			<-ahead.done
		}
	}()
	for {
		if j.maxBatches > 0 && ran >= j.maxBatches {
			return nil
		}
		// Stop cancels j.stopped at once, idle a moment later.
		if j.stopped.Err() != nil {
			return nil
		}
		if err := j.clock.Wait(idle, next); err != nil {
			if j.stopped.Err() != nil {
				return nil
			}
			return err
		}
		if j.stopped.Err() != nil {
			return nil
		}
		started := j.clock.Now()
		var (
			plan     Plan
			installs []func()
			err      error
		)
		if ahead != nil {
			<-ahead.done
			plan, installs, err = ahead.plan, ahead.installs, ahead.err
			ahead = nil
		} else {
			plan, err = j.cut(idle, last, next)
		}
		if err != nil {
			if j.stopped.Err() != nil {
				return nil
			}
			return err
		}
		if err := j.retry(ctx, "record plan", func() error { return store.RecordPlan(ctx, plan) }); err != nil {
			return fmt.Errorf("record plan %d: %w", plan.ID, err)
		}
		readNext := func() {
			t := next.Add(j.interval)
			if (j.maxBatches == 0 || ran+1 < j.maxBatches) && j.due(t) {
				ahead = j.readEarly(earlyCtx, plan, t)
			}
		}
		if err := j.runBatch(ctx, store, plan, started, installs, readNext); err != nil {
			return err
		}
		last, next = plan, next.Add(j.interval)
		ran++
	}
}

func rangesOf(all []Range, topic string) []Range {
	var out []Range
	for _, r := range all {
		if r.Topic == topic {
			out = append(out, r)
		}
	}
	return out
}

// recover restores the job from the Store: it settles a prepared batch,
// loads the operators' state and rebuilds the windows by replaying the
// recorded plans they span. It returns the last committed plan and the plan
// of a batch that was planned but not committed, to be run first.
func (j *Job) recover(ctx context.Context, store Store, meta Meta) (last Plan, pending *Plan, err error) {
	c := meta.Committed
	var txn TransactionalSink
	var sinkLast uint64
	for _, s := range j.sinks {
		if t, ok := s.(TransactionalSink); ok {
			txn = t
			err := j.retry(ctx, "last batch", func() (err error) {
				sinkLast, err = t.LastBatch(ctx)
				return err
			})
			if err != nil {
				return last, nil, fmt.Errorf("recover: read last batch of sink: %w", err)
			}
		}
	}
	switch {
	case sinkLast > c+1, sinkLast == c+1 && meta.Planned <= c:
		return last, nil, &StateLostError{Committed: c, SinkLast: sinkLast}
	case meta.Prepared == c+1 && txn != nil && sinkLast == c+1:
		// The output of the prepared batch is committed: complete it.
		if err := j.retry(ctx, "commit", func() error { return store.Commit(ctx, c+1, j.keepFrom(c+1)) }); err != nil {
			return last, nil, fmt.Errorf("recover: complete prepared batch %d: %w", c+1, err)
		}
		j.log.Info().Uint64("batch", c+1).Msg("completed prepared batch whose output was committed")
		c++
	case meta.Prepared == c+1:
		if err := j.retry(ctx, "discard", func() error { return store.Discard(ctx, c+1) }); err != nil {
			return last, nil, fmt.Errorf("recover: discard prepared batch %d: %w", c+1, err)
		}
		j.log.Info().Uint64("batch", c+1).Msg("discarded prepared batch whose output was not committed")
	case sinkLast == c+1:
		return last, nil, &StateLostError{Committed: c, SinkLast: sinkLast}
	}
	for _, st := range j.stateful {
		g := st.base().guard
		g.lockFor(c)
		err := j.retry(ctx, "load state", func() error {
			st.clearState()
			return store.LoadState(ctx, st.stateOp(), st.restore)
		})
		if err == nil {
			st.finishRestore()
		}
		g.unlock()
		if err != nil {
			return last, nil, fmt.Errorf("recover: load state: %w", err)
		}
	}
	if c > 0 {
		span := j.windowSpan()
		from := c - min(c-1, span)
		var plans []Plan
		err := j.retry(ctx, "load plans", func() (err error) {
			plans, err = store.Plans(ctx, from, c)
			return err
		})
		if err != nil {
			return last, nil, fmt.Errorf("recover: load plans %d-%d: %w", from, c, err)
		}
		if len(plans) == 0 || plans[len(plans)-1].ID != c {
			return last, nil, fmt.Errorf("recover: plan of committed batch %d is missing", c)
		}
		for _, p := range plans[:len(plans)-1] {
			if err := j.rebuild(ctx, p); err != nil {
				return last, nil, err
			}
		}
		last = plans[len(plans)-1]
		if err := j.rebuild(ctx, last); err != nil {
			return last, nil, err
		}
		j.log.Info().Uint64("committed", c).Int("replayed", len(plans)).Msg("recovered")
	}
	if meta.Planned > c {
		var plans []Plan
		err := j.retry(ctx, "load plans", func() (err error) {
			plans, err = store.Plans(ctx, c+1, c+1)
			return err
		})
		if err != nil || len(plans) != 1 {
			return last, nil, fmt.Errorf("recover: load plan of unfinished batch %d: %v", c+1, err)
		}
		pending = &plans[0]
	}
	return last, pending, nil
}

func (j *Job) keepFrom(committed uint64) uint64 {
	keep := max(j.retainPlans, j.windowSpan()+1, uint64(j.remember/j.interval)+1)
	if committed <= keep {
		return 1
	}
	return committed - keep + 1
}

// rebuild replays a committed batch through the window-feeding part of the
// graph only: no state changes, no output.
func (j *Job) rebuild(ctx context.Context, p Plan) error {
	if j.windowSpan() == 0 {
		return nil
	}
	r := &batchRun{job: j, id: p.ID, plan: p, rebuild: true}
	if err := j.load(ctx, r); err != nil {
		return err
	}
	for _, n := range j.nodes {
		n.step(r)
	}
	for _, n := range j.nodes {
		n.reset()
	}
	return nil
}

func (j *Job) load(ctx context.Context, r *batchRun) error {
	installs, err := j.read(ctx, r.plan, j.readers())
	for _, install := range installs {
		install()
	}
	return err
}

// readers returns, on the job's goroutine, a read for every input.
func (j *Job) readers() []func(context.Context, []Range) (func(), error) {
	reads := make([]func(context.Context, []Range) (func(), error), len(j.inputs))
	for i, in := range j.inputs {
		reads[i] = in.reader()
	}
	return reads
}

// read reads the batch of plan p with reads; installing what it returns
// makes it the inputs' batch.
func (j *Job) read(ctx context.Context, p Plan, reads []func(context.Context, []Range) (func(), error)) ([]func(), error) {
	installs := make([]func(), 0, len(j.inputs))
	for i, in := range j.inputs {
		var install func()
		err := j.retry(ctx, "read", func() (err error) {
			install, err = reads[i](ctx, rangesOf(p.Ranges, in.topic()))
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("read batch %d of %s: %w", p.ID, in.topic(), err)
		}
		installs = append(installs, install)
	}
	return installs, nil
}

// cut plans the batch after last at batch time t.
func (j *Job) cut(ctx context.Context, last Plan, t time.Time) (Plan, error) {
	plan := Plan{ID: last.ID + 1, Time: t}
	for _, in := range j.inputs {
		var ranges []Range
		err := j.retry(ctx, "cut", func() (err error) {
			ranges, err = in.cut(ctx, rangesOf(last.Ranges, in.topic()))
			return err
		})
		if err != nil {
			return plan, fmt.Errorf("cut batch %d of %s: %w", plan.ID, in.topic(), err)
		}
		plan.Ranges = append(plan.Ranges, ranges...)
	}
	return plan, nil
}

// early is a batch cut and read ahead, on a goroutine of its own, while the
// batch before it computes and commits. Reading is free of side effects, so
// a batch read early and then not run (the job stopped) leaves no trace;
// its plan is recorded, as always, before the batch runs.
type early struct {
	plan     Plan
	installs []func()
	err      error
	done     chan struct{}
}

// readEarly cuts and reads the batch after last, at batch time t.
func (j *Job) readEarly(ctx context.Context, last Plan, t time.Time) *early {
	e := &early{done: make(chan struct{})}
	reads := j.readers()
	go func() {
		defer close(e.done)
		if e.plan, e.err = j.cut(ctx, last, t); e.err == nil {
			e.installs, e.err = j.read(ctx, e.plan, reads)
		}
	}()
	return e
}

// due reports whether batch time t has come, so that its batch may be cut
// now. Every time has come for a VirtualClock, which jumps to it.
func (j *Job) due(t time.Time) bool {
	if _, ok := j.clock.(*VirtualClock); ok {
		return true
	}
	return !j.clock.Now().Before(t)
}

// runBatch computes a planned batch and commits it: prepare state, write
// sinks, commit checkpoint. installs holds the batch if it was read early;
// readNext, called once the batch is read, may start reading the next.
func (j *Job) runBatch(ctx context.Context, store Store, p Plan, started time.Time, installs []func(), readNext func()) error {
	wallStart := time.Now()
	r := &batchRun{job: j, id: p.ID, plan: p, messages: make([][]Message, len(j.sinks))}
	if installs != nil {
		for _, install := range installs {
			install()
		}
	} else if err := j.load(ctx, r); err != nil {
		return err
	}
	if readNext != nil {
		readNext()
	}
	for _, n := range j.nodes {
		n.step(r)
	}
	records := 0
	for _, in := range j.inputs {
		records += in.recordCount()
	}
	defer func() {
		for _, n := range j.nodes {
			n.reset()
		}
	}()
	for _, o := range j.outputs {
		if err := o.run(ctx, r); err != nil {
			return fmt.Errorf("batch %d: output: %w", p.ID, err)
		}
	}
	var changes []Change
	for _, st := range j.stateful {
		changes = st.changes(changes)
	}
	ckStart := time.Now()
	if err := j.retry(ctx, "prepare", func() error { return store.Prepare(ctx, p.ID, changes) }); err != nil {
		return fmt.Errorf("batch %d: prepare state: %w", p.ID, err)
	}
	ckTime := time.Since(ckStart)
	messages := 0
	for i, s := range j.sinks {
		messages += len(r.messages[i])
		attempt := 0
		write := func() error {
			attempt++
			if attempt > 1 {
				// A retry may set up a new transactional producer, which
				// fences every other producer of the job: make sure first
				// that no other instance took the job over meanwhile.
				if err := store.Renew(ctx); err != nil {
					return err
				}
			}
			return j.writeOnce(ctx, s, p, r.messages[i], attempt > 1)
		}
		if err := j.retry(ctx, "write sink", write); err != nil {
			return fmt.Errorf("batch %d: write sink: %w", p.ID, err)
		}
	}
	ckStart = time.Now()
	if err := j.retry(ctx, "commit", func() error { return store.Commit(ctx, p.ID, j.keepFrom(p.ID)) }); err != nil {
		return fmt.Errorf("batch %d: commit: %w", p.ID, err)
	}
	ckTime += time.Since(ckStart)
	for _, st := range j.stateful {
		st.committed()
	}
	stats := BatchStats{
		ID: p.ID, Time: p.Time, Records: records, Offsets: p.Records(),
		SchedulingDelay: max(0, started.Sub(p.Time)),
		ProcessingTime:  time.Since(wallStart),
		CheckpointTime:  ckTime,
		Messages:        messages,
		StateChanges:    len(changes),
	}
	j.log.Debug().Uint64("batch", p.ID).Int("records", records).Str("processing", stats.ProcessingTime.String()).Msg("batch committed")
	for _, l := range j.listeners {
		l(stats)
	}
	return nil
}

// writeOnce writes a batch to a sink. On a retry it first asks a
// transactional sink whether it already holds the batch: after an ambiguous
// failure (a commit whose answer was lost) the batch must not be written twice.
func (j *Job) writeOnce(ctx context.Context, s Sink, p Plan, msgs []Message, retry bool) error {
	if t, ok := s.(TransactionalSink); ok && retry && len(msgs) > 0 {
		last, err := t.LastBatch(ctx)
		if err != nil {
			return err
		}
		if last >= p.ID {
			return nil
		}
	}
	return s.WriteBatch(ctx, BatchInfo{Plan: p}, msgs)
}

// retry calls f until it succeeds, fails permanently, or the retry budget
// is spent, backing off between attempts.
func (j *Job) retry(ctx context.Context, what string, f func() error) error {
	deadline := time.Now().Add(j.retryFor)
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || ctx.Err() != nil || errors.Is(err, ErrFenced) || errors.Is(err, ErrConflict) ||
			errors.Is(err, ErrPermanent) || time.Now().Add(backoff).After(deadline) {
			return err
		}
		j.log.Warn().Err(err).Str("op", what).Int("attempt", attempt).Str("backoff", backoff.String()).Msg("retrying")
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Replay recomputes the batches of plans, in order, without a Store and
// without writing to any sink: for audits and debugging. Operator state
// starts empty at the first plan, so stateful results equal the live ones
// only when plans start at batch 1. emit receives, for every batch, the
// messages each Write operation would have sent (by sink, in declaration
// order). Pprint and ForeachBatch run as usual.
func (j *Job) Replay(ctx context.Context, plans []Plan, emit func(b BatchInfo, messages []Message) error) error {
	if err := j.validate(true); err != nil {
		return err
	}
	j.mu.Lock()
	if j.mu.started {
		j.mu.Unlock()
		return errors.New("microbatch: job already started")
	}
	j.mu.started = true
	j.mu.Unlock()
	for i, p := range plans {
		if i > 0 && p.ID != plans[i-1].ID+1 {
			return fmt.Errorf("replay: plan %d follows plan %d: plans must be consecutive", p.ID, plans[i-1].ID)
		}
		r := &batchRun{job: j, id: p.ID, plan: p, messages: make([][]Message, len(j.sinks))}
		if err := j.load(ctx, r); err != nil {
			return err
		}
		for _, n := range j.nodes {
			n.step(r)
		}
		for _, o := range j.outputs {
			if err := o.run(ctx, r); err != nil {
				return fmt.Errorf("replay batch %d: output: %w", p.ID, err)
			}
		}
		for _, n := range j.nodes {
			n.reset()
		}
		for _, st := range j.stateful {
			st.committed()
		}
		var all []Message
		for _, m := range r.messages {
			all = append(all, m...)
		}
		if err := emit(BatchInfo{Plan: p}, all); err != nil {
			return err
		}
	}
	return nil
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
