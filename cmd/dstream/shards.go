package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/internal/wiring"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/sinks"
	"github.com/dstream-io/dstream/state"
)

// A sharded job (DSTREAM_SHARDS > 1) runs as tasks — the stages of its
// graph, a task per shard of a keyed stage — that its replicas divide
// (docs/scale-out.md). Each replica heartbeats into the job's member set and
// takes free tasks up to its fair share; each task is a job of its own,
// with its own lease, epoch, checkpoint, producer and control partition.

// taskSpec names one task of the job.
type taskSpec struct {
	name         string
	stage, index int
	partition    int32 // its partition of the control topic
}

// layoutOf lists the tasks of the job sharded in shards, in stage and index
// order, and its exchanges with their partitions.
func layoutOf(cfg Config) ([]taskSpec, map[string]int, error) {
	j := graphOf(cfg)
	stages, err := j.Stages(cfg.Shards)
	if err != nil {
		return nil, nil, err
	}
	var tasks []taskSpec
	for stage, n := range stages {
		for i := range n {
			tasks = append(tasks, taskSpec{name: fmt.Sprintf("s%d-%d", stage, i), stage: stage, index: i, partition: int32(len(tasks))})
		}
	}
	return tasks, j.Exchanges(cfg.Shards), nil
}

// graphOf builds the job's graph, only to lay it out.
func graphOf(cfg Config) *microbatch.Job {
	j := microbatch.NewJob(cfg.BatchInterval)
	topips.Build(j, nilSource{cfg.InputTopic}, microbatch.NewMemorySink(), topips.Config{Window: cfg.Window, Slide: cfg.Slide, TopN: cfg.TopN})
	return j
}

// nilSource stands for the input when the graph is only laid out.
type nilSource struct{ topic string }

func (s nilSource) Topic() string { return s.topic }
func (nilSource) Cut(context.Context, []microbatch.Range) ([]microbatch.Range, error) {
	return nil, errors.New("no input")
}
func (nilSource) Read(context.Context, []microbatch.Range, func(microbatch.Record)) error {
	return errors.New("no input")
}

// shardsChangedError refuses a start in a number of shards other than the
// one the job's checkpoints are divided in.
type shardsChangedError struct {
	job              string
	recorded, shards int
}

func (e shardsChangedError) Is(target error) bool { return target == microbatch.ErrPermanent }

func (e shardsChangedError) Error() string {
	return fmt.Sprintf("job %s runs in %d shard(s), DSTREAM_SHARDS=%d: its keyed state is divided in %d and cannot be divided anew "+
		"(docs/scale-out.md). Set DSTREAM_SHARDS=%d again, or start the job over in %d: stop every replica, then run "+
		"`DSTREAM_SHARDS=%d dstream reset --to latest --yes` (its state starts empty)",
		e.job, e.recorded, e.shards, e.recorded, e.recorded, e.shards, e.shards)
}

// claimShards records the job's number of shards at its first start, and
// refuses (permanently) another number later; it waits out Redis faults
// until ctx is done.
func (p *processor) claimShards(ctx context.Context) error {
	for {
		err := p.tryClaimShards(ctx)
		if err == nil || errors.Is(err, microbatch.ErrPermanent) {
			return err
		}
		p.sampled.Warn().Err(err).Msg("cannot read the job's shards from Redis; retrying")
		t := time.NewTimer(p.cfg.LeaseTTL / 4)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (p *processor) tryClaimShards(ctx context.Context) error {
	claim := p.cfg.Shards
	if _, found, err := state.RecordedShards(ctx, p.rdb, p.cfg.JobID); err != nil {
		return err
	} else if !found {
		// A checkpoint from before the number was recorded is unsharded.
		m, err := p.reader.Progress(ctx)
		if err != nil {
			return err
		}
		if m.Committed > 0 {
			claim = 1
		}
	}
	recorded, err := state.ClaimShards(ctx, p.rdb, p.cfg.JobID, claim)
	if err != nil {
		return err
	}
	if recorded != p.cfg.Shards {
		return shardsChangedError{job: p.cfg.JobID, recorded: recorded, shards: p.cfg.Shards}
	}
	return nil
}

// taskRun is a task this replica runs.
type taskRun struct {
	spec     taskSpec
	job      *microbatch.Job
	pipeline *topips.Pipeline
	src      *ingest.Source // stage 0's input
	close    []func()
	taken    time.Time
	done     chan struct{}
	err      error
	last     atomic.Uint64 // last batch committed here
}

// shardRunner runs this replica's share of the job's tasks.
type shardRunner struct {
	p         *processor
	tasks     []taskSpec
	exchanges map[string]int
	members   *state.Members
	mu        struct {
		sync.Mutex
		running map[string]*taskRun
	}
}

// runShards runs the replica's share of the tasks until ctx is done or the
// job cannot run (a permanent error, which it then refuses).
func (p *processor) runShards(ctx, bgCtx context.Context) error {
	tasks, exchanges, err := layoutOf(p.cfg)
	if err != nil {
		return err
	}
	for name, n := range exchanges {
		if err := sinks.EnsureTopic(ctx, p.client, "exchange", wiring.ExchangeTopic(p.cfg.JobID, name), int32(n)); err != nil {
			return err
		}
	}
	// The replica's name: its host's (a pod's) and a random part, so that
	// the status can say where each task runs.
	id := make([]byte, 3)
	_, _ = rand.Read(id)
	host, _ := os.Hostname()
	// A member lives as long as a lease: a dead replica leaves the member
	// set when its tasks' leases lapse, so the survivors' fair share grows
	// in time to take all of them (a longer-lived member held the share
	// down and left tasks unowned for another TTL).
	r := &shardRunner{p: p, tasks: tasks, exchanges: exchanges,
		members: state.NewMembers(p.rdb, p.cfg.JobID, cmp.Or(host, "dstream")+"-"+hex.EncodeToString(id), p.cfg.LeaseTTL)}
	r.mu.running = map[string]*taskRun{}
	p.shards.Store(r)
	p.setRole(roleStandby)
	p.m.watchLagOf(func() []*ingest.Source {
		var out []*ingest.Source
		for _, run := range r.running() {
			if run.src != nil {
				out = append(out, run.src)
			}
		}
		return out
	}, p.client)
	p.log.Info().Int("shards", p.cfg.Shards).Int("tasks", len(tasks)).Msg("a sharded job: taking a fair share of its tasks")
	err = r.loop(ctx, bgCtx)
	r.stopAll()
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	_ = r.members.Leave(lctx)
	if errors.Is(err, microbatch.ErrPermanent) {
		return p.refuse(ctx, err)
	}
	return err
}

// releaseTimeout bounds leaving the member set on the way out.
const releaseTimeout = 2 * time.Second

func (r *shardRunner) loop(ctx, bgCtx context.Context) error {
	// Twice per lease renewal: a lapsed task is seen free within an eighth
	// of the TTL.
	t := time.NewTicker(r.p.cfg.LeaseTTL / 8)
	defer t.Stop()
	for {
		if err := r.reap(); err != nil {
			return err
		}
		live, err := r.members.Heartbeat(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.p.sampled.Warn().Err(err).Msg("heartbeat failed; retrying")
		} else {
			r.balance(ctx, bgCtx, live)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// reap drops the tasks whose jobs ended: fenced (another replica took
// them) or failed (taken again later); a permanent error ends the loop.
func (r *shardRunner) reap() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, run := range r.mu.running {
		select {
		case <-run.done:
		default:
			continue
		}
		delete(r.mu.running, name)
		for _, c := range run.close {
			c()
		}
		switch err := run.err; {
		case err == nil:
		case errors.Is(err, microbatch.ErrPermanent):
			return fmt.Errorf("task %s: %w", name, err)
		case errors.Is(err, microbatch.ErrFenced), errors.Is(err, microbatch.ErrConflict):
			r.p.log.Warn().Err(err).Str("task", name).Msg("the task moved to another replica, or its checkpoint did: dropping it")
		default:
			r.p.log.Error().Err(err).Str("task", name).Msg("the task failed: it will be taken again")
		}
	}
	r.p.m.tasks.Set(float64(len(r.mu.running)))
	if len(r.mu.running) == 0 {
		r.p.setRole(roleStandby)
	}
	return nil
}

// balance takes free tasks up to the fair share ⌈T/M⌉ of the live members,
// the tasks whose index mod M is the member's rank first, and gives back
// one task a round when over its share.
func (r *shardRunner) balance(ctx, bgCtx context.Context, live []string) {
	m := max(1, len(live))
	rank := slices.Index(live, r.members.ID())
	share := (len(r.tasks) + m - 1) / m
	preferred := func(t taskSpec) bool { return rank >= 0 && int(t.partition)%m == rank }
	r.mu.Lock()
	held := len(r.mu.running)
	var over *taskRun
	for _, run := range r.mu.running {
		if over == nil || !preferred(run.spec) {
			over = run
		}
	}
	r.mu.Unlock()
	if held > share && over != nil {
		r.p.log.Info().Str("task", over.spec.name).Int("members", m).Int("share", share).Msg("over this replica's share: giving a task back")
		r.stop(over)
		return
	}
	order := slices.Clone(r.tasks)
	slices.SortStableFunc(order, func(a, b taskSpec) int {
		switch pa, pb := preferred(a), preferred(b); {
		case pa && !pb:
			return -1
		case pb && !pa:
			return 1
		}
		return 0
	})
	for _, t := range order {
		if held >= share || ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		_, running := r.mu.running[t.name]
		r.mu.Unlock()
		if running {
			continue
		}
		ok, err := r.start(ctx, bgCtx, t)
		if err != nil {
			r.p.sampled.Warn().Err(err).Str("task", t.name).Msg("cannot start the task")
			continue
		}
		if ok {
			held++
		}
	}
}

// start takes task t if it is free and runs it.
func (r *shardRunner) start(ctx, bgCtx context.Context, t taskSpec) (bool, error) {
	p, cfg := r.p, r.p.cfg
	store, err := state.NewRedis(p.rdb, state.Config{Job: state.TaskJob(cfg.JobID, t.name), LeaseTTL: cfg.LeaseTTL, Owner: r.members.ID()},
		state.WithLogger(p.log))
	if err != nil {
		return false, err
	}
	if _, ok, err := store.TryAcquire(ctx); err != nil || !ok {
		return false, err
	}
	run := &taskRun{spec: t, done: make(chan struct{}), taken: time.Now()}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		_ = store.Release(rctx)
	}
	exchanges := make([]string, 0, len(r.exchanges))
	for name := range r.exchanges {
		exchanges = append(exchanges, wiring.ExchangeTopic(cfg.JobID, name))
	}
	slices.Sort(exchanges)
	sink, err := wiring.NewSink(ctx, wiring.SinkConfig{Job: cfg.JobID, Output: cfg.OutputTopic, DeadLetters: cfg.DeadLetterTopic,
		Control: cfg.controlTopic(), Task: t.name, ControlPartition: t.partition, Tasks: int32(len(r.tasks)), Exchanges: exchanges}, p.base, p.log)
	if err != nil {
		release()
		return false, err
	}
	run.close = append(run.close, sink.Close)
	src, err := ingest.New(p.client, ingest.Config{
		Topic: cfg.InputTopic, StartOffset: ingest.StartOffset(cfg.StartOffset),
		BatchInterval: cfg.BatchInterval, MaxRatePerPartition: cfg.MaxRatePerPartition,
		OnRecreated: ingest.RecreatePolicy(cfg.OnTopicRecreated), Shard: t.index, Shards: cfg.Shards,
	}, ingest.WithLogger(p.log))
	if err != nil {
		release()
		sink.Close()
		return false, err
	}
	if t.stage == 0 {
		run.src = src
	}
	log := p.log.With().Str("task", t.name).Logger()
	// Each task sums up its own batches: tasks commit on their own
	// goroutines, and a line that mixed two tasks' batch ids would mislead.
	batches := newBatchLog(log)
	var closeMu sync.Mutex
	// One sink value for the exchanges and the outputs, so that a batch's
	// exchange records, results and marker commit in one transaction.
	counted := p.m.countAborts(sink)
	task := microbatch.Task{Stage: t.stage, Index: t.index, Shards: cfg.Shards, Sink: counted,
		Topic: func(name string) string { return wiring.ExchangeTopic(cfg.JobID, name) },
		Exchange: func(name string, partition int32, upstream int) microbatch.BatchSource {
			x, err := ingest.NewExchange(p.base, ingest.ExchangeConfig{Topic: wiring.ExchangeTopic(cfg.JobID, name), Partition: partition,
				Job: cfg.JobID, Upstream: upstream, InputTopic: cfg.InputTopic}, log)
			if err != nil {
				return failingExchange{err: err, topic: wiring.ExchangeTopic(cfg.JobID, name)}
			}
			closeMu.Lock()
			run.close = append(run.close, func() { _ = x.Close() })
			closeMu.Unlock()
			return x
		}}
	run.job = microbatch.NewJob(cfg.BatchInterval,
		microbatch.WithLogger(log),
		microbatch.WithStdout(p.stdout),
		microbatch.WithLeaseRenewal(cfg.LeaseTTL/4),
		microbatch.WithStatePartFormat(cfg.StateFormat),
		microbatch.WithTask(task),
		microbatch.WithTimeline(func(ctx context.Context, proposed time.Time) (time.Time, error) {
			return state.FirstBatchTime(ctx, p.rdb, cfg.JobID, proposed)
		}),
		microbatch.WithListener(func(b microbatch.BatchStats) {
			if run.last.Swap(b.ID) == 0 {
				// How long the task took to move here: taken (recovery,
				// the batch in flight) to its first commit.
				log.Info().Uint64("batch", b.ID).Int64("since_taken_ms", time.Since(run.taken).Milliseconds()).
					Msg("the task committed its first batch here")
			}
			p.m.observe(b)
			p.m.taskCommitted(t.name, b)
			batches.observe(b)
		}))
	run.job.Checkpoint(store)
	run.pipeline = p.buildPipeline(run.job, src, counted)
	if err := run.job.Start(bgCtx); err != nil {
		release()
		sink.Close()
		return false, err
	}
	r.mu.Lock()
	r.mu.running[t.name] = run
	p.m.tasks.Set(float64(len(r.mu.running)))
	r.mu.Unlock()
	p.setRole(roleActive)
	log.Info().Int("stage", t.stage).Int("index", t.index).Msg("took the task")
	go func() {
		run.err = run.job.AwaitTermination()
		close(run.done)
	}()
	return true, nil
}

// stop stops a task gracefully (its batch in flight finishes within the
// grace period), which releases it for another replica.
func (r *shardRunner) stop(run *taskRun) {
	run.job.Stop(true)
	if ended, _ := run.job.AwaitTerminationOrTimeout(r.p.cfg.ShutdownGrace); !ended {
		r.p.log.Warn().Str("task", run.spec.name).Msg("grace period over: abandoning the task's batch in flight; it reruns from its plan")
		run.job.Stop(false)
	}
	<-run.done
}

// stopAll stops every task, each within the grace period, at once.
func (r *shardRunner) stopAll() {
	r.mu.Lock()
	runs := make([]*taskRun, 0, len(r.mu.running))
	for _, run := range r.mu.running {
		runs = append(runs, run)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Go(func() { r.stop(run) })
	}
	wg.Wait()
	_ = r.reap()
}

// running lists the tasks this replica runs, by name.
func (r *shardRunner) running() []*taskRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*taskRun, 0, len(r.mu.running))
	for _, run := range r.mu.running {
		out = append(out, run)
	}
	slices.SortFunc(out, func(a, b *taskRun) int { return int(a.spec.partition - b.spec.partition) })
	return out
}

// view lists the job's tasks: where each runs (the replica holding its
// lease), the last batch it committed, and the lag of the first-stage tasks
// running here.
func (r *shardRunner) view(ctx context.Context) []apiTask {
	here := map[string]*taskRun{}
	for _, run := range r.running() {
		here[run.spec.name] = run
	}
	out := make([]apiTask, 0, len(r.tasks))
	for _, t := range r.tasks {
		a := apiTask{Name: t.name, Stage: t.stage, Index: t.index}
		store, err := state.NewRedis(r.p.rdb, state.Config{Job: state.TaskJob(r.p.cfg.JobID, t.name)})
		if err == nil {
			if m, err := store.Progress(ctx); err == nil {
				a.CommittedBatch = m.Committed
			}
			if owner, err := store.Holder(ctx); err == nil && owner != "" {
				a.Replica = &owner
			}
		}
		if run, ok := here[t.name]; ok {
			a.Here = true
			if run.src != nil {
				var lag int64
				for _, l := range lagOf(ctx, r.p.adm, run.src.Topic(), cutPositions(run.src.LastCut())) {
					lag += l.Lag
				}
				a.Lag = &lag
			}
		}
		out = append(out, a)
	}
	return out
}

// lookup finds the task that keeps ip's state, if this replica runs it.
func (r *shardRunner) lookup(ip string) (topips.Entry, bool, bool) {
	key, err := weblog.ParseIP(ip)
	if err != nil {
		return topips.Entry{}, false, true
	}
	shard := microbatch.ShardOf(key, r.p.cfg.Shards)
	for _, run := range r.running() {
		if run.spec.stage == 1 && run.spec.index == shard {
			e, ok := run.pipeline.Lookup(ip)
			return e, ok, true
		}
	}
	return topips.Entry{}, false, false
}

// failingExchange stands for an exchange whose client could not be made:
// the task fails at its first cut, and is taken again later.
type failingExchange struct {
	err   error
	topic string
}

func (x failingExchange) Topic() string { return x.topic }
func (x failingExchange) Cut(context.Context, []microbatch.Range) ([]microbatch.Range, error) {
	return nil, x.err
}
func (x failingExchange) CutBatch(context.Context, uint64, []microbatch.Range) ([]microbatch.Range, time.Time, error) {
	return nil, time.Time{}, x.err
}
func (x failingExchange) Read(context.Context, []microbatch.Range, func(microbatch.Record)) error {
	return x.err
}
