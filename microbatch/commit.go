package microbatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// batchStart is how a planned batch comes to run.
type batchStart struct {
	plan Plan
	// started is when it started, on the job's timeline.
	started time.Time
	// installs holds the batch if it was read early; readNext, called once
	// the batch is read, may start reading the next.
	installs []func()
	readNext func()
	// heal: the transactional sink holds the batch already (the Store
	// lost it): compute and commit its state, write nothing to the sink.
	heal bool
	// recorded: the plan is in the Store already (a batch recovery runs).
	recorded bool
}

// computed is a batch computed: its outputs' messages. Its state's changes
// are encoded when the group it commits with is sealed.
type computed struct {
	batchStart
	wallStart time.Time
	info      BatchInfo
	messages  [][]Message
	records   int
}

// batchGroup is batches that commit together, in order: one batch, or those
// that waited for the commit before them (docs/checkpoint.md). Its state's
// changes are encoded under its last batch; nothing of it depends on the
// job's operators any more, so the next batch may compute while it commits.
type batchGroup struct {
	batches  []*computed
	deltas   []Delta
	ck       Checkpoint
	encoding time.Duration
	changes  int
}

func (g *batchGroup) last() *computed { return g.batches[len(g.batches)-1] }

// runBatch computes a planned batch and commits it.
func (j *Job) runBatch(ctx context.Context, store Store, b batchStart) error {
	c, err := j.computeBatch(ctx, b, nil)
	if err != nil {
		return err
	}
	stats, err := j.commitGroup(ctx, store, j.seal([]*computed{c}))
	if err != nil {
		return err
	}
	j.committedBatches(stats)
	return nil
}

// computeBatch computes a planned batch: its operators and its outputs'
// messages.
//
// beforeOutputs, if set, runs once the operators computed, before any
// output does (outputs such as pprint and ForeachBatch act at once): it
// settles the batch before, whose commit may fail or stop the job. If it
// says not to go on, the batch is dropped (nil, nil): its operators' state
// is then ahead of the Store, for a job that stops, or recovers, anyway.
func (j *Job) computeBatch(ctx context.Context, b batchStart, beforeOutputs func() (bool, error)) (*computed, error) {
	c := &computed{batchStart: b, wallStart: time.Now()}
	p := b.plan
	r := &batchRun{job: j, id: p.ID, plan: p, messages: make([][]Message, len(j.sinks))}
	if b.installs != nil {
		for _, install := range b.installs {
			install()
		}
	} else if err := j.load(ctx, r); err != nil {
		return nil, err
	}
	if b.readNext != nil {
		b.readNext()
	}
	j.stepAll(r)
	for _, in := range j.graph.inputs {
		c.records += in.recordCount()
	}
	defer func() {
		for _, n := range j.graph.nodes {
			n.reset()
		}
	}()
	if beforeOutputs != nil {
		if goOn, err := beforeOutputs(); !goOn || err != nil {
			return nil, err
		}
	}
	for _, o := range j.graph.outputs {
		if err := o.run(ctx, r); err != nil {
			return nil, fmt.Errorf("batch %d: output: %w", p.ID, err)
		}
	}
	// The inputs describe the batch they read last: the next one, once
	// it is installed.
	c.info, c.messages = r.info(), r.messages
	return c, nil
}

// stepAll computes every node of the graph for the batch of r, in graph
// order, but a stateful operator on a goroutine of its own: its keyed
// work (millions of keys, each a cache miss) is most of a batch's, and a
// job's stateful operators (a window's counts, the running totals) seldom
// depend on each other. A node waits for the parents still computing;
// stepAll waits for all of them.
func (j *Job) stepAll(r *batchRun) {
	if j.parallelism <= 1 {
		j.awaitSeal()
		for _, n := range j.graph.nodes {
			n.step(r)
		}
		return
	}
	var (
		wg      sync.WaitGroup
		running map[int]chan struct{} // by node id, closed when computed
	)
	for _, n := range j.graph.nodes {
		for _, p := range n.base().parents {
			if done, ok := running[p.base().id]; ok {
				<-done
			}
		}
		if n.base().state == nil {
			n.step(r)
			continue
		}
		j.awaitSeal()
		if running == nil {
			running = make(map[int]chan struct{})
		}
		done := make(chan struct{})
		running[n.base().id] = done
		wg.Go(func() {
			defer close(done)
			n.step(r)
		})
	}
	wg.Wait()
}

// sealing is a group being sealed on a goroutine of its own: g once done
// is closed.
type sealing struct {
	g    *batchGroup
	done chan struct{}
}

// sealEarly seals batches while the job goes on to the next batch, whose
// reading, parsing and folding (no operator's state) overlap the encoding;
// its stateful operators wait for the seal (awaitSeal). With parallelism 1
// the seal runs at once. The commit of the group, or the job's loop on an
// error, waits for it.
func (j *Job) sealEarly(batches []*computed) *sealing {
	j.awaitSeal() // a batch without stateful operators did not wait for it
	s := &sealing{done: make(chan struct{})}
	if j.parallelism <= 1 {
		s.g = j.seal(batches)
		close(s.done)
		return s
	}
	j.sealing = s
	go func() {
		defer close(s.done)
		s.g = j.seal(batches)
	}()
	return s
}

// awaitSeal waits for the group sealing, if any: the operators' state is
// theirs again.
func (j *Job) awaitSeal() {
	if j.sealing != nil {
		<-j.sealing.done
		j.sealing = nil
	}
}

// seal makes batches, computed in order since the last seal, a group: it
// encodes the operators' changes since then, under the last batch. The
// operators' state then counts the batches as checkpointed; if their
// commit fails the job stops, and recovery loads the state the Store holds.
func (j *Job) seal(batches []*computed) *batchGroup {
	g := &batchGroup{batches: batches}
	id := g.last().plan.ID
	start := time.Now()
	g.ck = Checkpoint{Batch: id, KeepFrom: j.keepFrom(id)}
	if j.storeGraph {
		g.ck.Graph = j.graph.fingerprintJSON
		j.storeGraph = false
	}
	// Operators encode their changes in parallel (each touches only its
	// own table); their parts join in graph order, as one would write them.
	type sealed struct {
		changes int
		delta   Delta
		ok      bool
		ck      Checkpoint
	}
	parts := make([]sealed, len(j.graph.stateful))
	_ = inParallel(len(parts), j.parallelism, func(i int) error {
		st, p := j.graph.stateful[i], &parts[i]
		p.changes = st.changed()
		p.delta, p.ok = st.delta(id)
		st.checkpoint(id, &p.ck)
		st.committed()
		return nil
	})
	for _, p := range parts {
		g.changes += p.changes
		if p.ok {
			g.deltas = append(g.deltas, p.delta)
		}
		g.ck.Replace = append(g.ck.Replace, p.ck.Replace...)
		g.ck.Segments = append(g.ck.Segments, p.ck.Segments...)
		g.ck.Drop = append(g.ck.Drop, p.ck.Drop...)
	}
	g.encoding = time.Since(start)
	return g
}

// commitGroup commits a sealed group: records its plans (unless recovery
// did), prepares its state, writes its sinks and commits the checkpoint.
// It touches nothing the next batch's computation does, so it runs while
// that computes (commits, like batches, go one at a time and in order).
func (j *Job) commitGroup(ctx context.Context, store Store, g *batchGroup) ([]BatchStats, error) {
	last := g.last().plan
	var plans []Plan
	for _, c := range g.batches {
		if !c.recorded {
			plans = append(plans, c.plan)
		}
	}
	if len(plans) > 0 {
		if err := j.retry(ctx, "record plan", func() error { return store.RecordPlan(ctx, plans...) }); err != nil {
			return nil, fmt.Errorf("record plan %d: %w", plans[0].ID, err)
		}
	}
	ckStart := time.Now()
	if err := j.retry(ctx, "prepare", func() error { return store.Prepare(ctx, last.ID, g.deltas) }); err != nil {
		return nil, fmt.Errorf("batch %d: prepare state: %w", last.ID, err)
	}
	ckTime := g.encoding + time.Since(ckStart)
	for i, s := range j.sinks {
		if err := j.writeSink(ctx, store, g, i, s); err != nil {
			return nil, err
		}
	}
	ckStart = time.Now()
	if err := j.retry(ctx, "commit", func() error { return store.Commit(ctx, g.ck) }); err != nil {
		return nil, fmt.Errorf("batch %d: commit: %w", last.ID, err)
	}
	ckTime += time.Since(ckStart)
	stats := make([]BatchStats, len(g.batches))
	for k, c := range g.batches {
		p := c.plan
		messages := 0
		for _, m := range c.messages {
			messages += len(m)
		}
		stats[k] = BatchStats{
			ID: p.ID, Time: p.Time, Records: c.records, Offsets: p.Records(),
			SchedulingDelay: max(0, c.started.Sub(p.Time)),
			ProcessingTime:  time.Since(c.wallStart),
			CheckpointTime:  ckTime,
			Messages:        messages,
			Healed:          c.heal,
			Group:           len(g.batches),
		}
	}
	stats[len(stats)-1].StateChanges = g.changes
	stats[len(stats)-1].LastInGroup = true
	return stats, nil
}

// writeSink writes the group's messages for sink i: a transactional sink
// gets the whole group in one transaction (nothing when it holds the batch
// already: a heal), any other sink batch by batch.
func (j *Job) writeSink(ctx context.Context, store Store, g *batchGroup, i int, s Sink) error {
	t, transactional := s.(TransactionalSink)
	first := g.batches[0].plan.ID
	if !transactional {
		for _, c := range g.batches {
			if len(c.messages[i]) == 0 {
				continue
			}
			if err := j.retry(ctx, "write sink", func() error { return s.WriteBatch(ctx, c.info, c.messages[i]) }); err != nil {
				return fmt.Errorf("batch %d: write sink: %w", c.plan.ID, err)
			}
		}
		return nil
	}
	if g.batches[0].heal {
		return nil // only a batch of its own heals
	}
	infos, msgs := make([]BatchInfo, len(g.batches)), make([][]Message, len(g.batches))
	for k, c := range g.batches {
		infos[k], msgs[k] = c.info, c.messages[i]
	}
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
			// After an ambiguous failure (a commit whose answer was
			// lost) the group must not be written twice.
			if held, err := holds(ctx, t, first); err != nil || held {
				return err
			}
		}
		return t.WriteBatches(ctx, infos, msgs)
	}
	if err := j.retry(ctx, "write sink", write); err != nil {
		return fmt.Errorf("batch %d: write sink: %w", g.last().plan.ID, err)
	}
	return nil
}

// committedBatches tells the job's listeners, on the job's goroutine, that
// batches committed.
func (j *Job) committedBatches(stats []BatchStats) {
	for _, st := range stats {
		j.log.Debug().Uint64("batch", st.ID).Int("records", st.Records).Int("group", st.Group).Str("processing", st.ProcessingTime.String()).Msg("batch committed")
		for _, l := range j.listeners {
			l(st)
		}
	}
}

// holds reports whether the transactional sink holds batch id.
func holds(ctx context.Context, t TransactionalSink, id uint64) (bool, error) {
	held, err := t.Committed(ctx, id-1)
	if err != nil {
		return false, err
	}
	return len(held) > 0, nil
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
