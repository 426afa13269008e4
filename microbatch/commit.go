package microbatch

import (
	"context"
	"errors"
	"fmt"
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

// computed is a batch computed and ready to commit: its outputs, and its
// state changes encoded. Nothing of it depends on the job's operators any
// more, so the next batch may compute while it commits.
type computed struct {
	batchStart
	wallStart time.Time
	info      BatchInfo
	messages  [][]Message
	deltas    []Delta
	ck        Checkpoint
	encoding  time.Duration
	records   int
	changes   int
}

// runBatch computes a planned batch and commits it.
func (j *Job) runBatch(ctx context.Context, store Store, b batchStart) error {
	c, err := j.computeBatch(ctx, b, nil)
	if err != nil {
		return err
	}
	stats, err := j.commitBatch(ctx, store, c)
	if err != nil {
		return err
	}
	j.committedBatch(stats)
	return nil
}

// computeBatch computes a planned batch: its operators, its outputs' messages
// and its state's changes, encoded. The operators' state then counts the
// batch as checkpointed; if its commit fails the job stops, and recovery
// loads the state the Store holds.
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
	for _, n := range j.graph.nodes {
		n.step(r)
	}
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
	encodeStart := time.Now()
	c.ck = Checkpoint{Batch: p.ID, KeepFrom: j.keepFrom(p.ID)}
	if j.storeGraph {
		c.ck.Graph = j.graph.fingerprintJSON
		j.storeGraph = false
	}
	for _, st := range j.graph.stateful {
		c.changes += st.changed()
		if d, ok := st.delta(p.ID); ok {
			c.deltas = append(c.deltas, d)
		}
		st.checkpoint(p.ID, &c.ck)
		st.committed()
	}
	c.encoding = time.Since(encodeStart)
	return c, nil
}

// commitBatch commits a computed batch: records its plan (unless recovery
// did), prepares its state, writes its sinks and commits the checkpoint.
// It touches nothing the next batch's computation does, so it runs while
// that computes (commits, like batches, go one at a time and in order).
func (j *Job) commitBatch(ctx context.Context, store Store, c *computed) (BatchStats, error) {
	p := c.plan
	if !c.recorded {
		if err := j.retry(ctx, "record plan", func() error { return store.RecordPlan(ctx, p) }); err != nil {
			return BatchStats{}, fmt.Errorf("record plan %d: %w", p.ID, err)
		}
	}
	ckStart := time.Now()
	if err := j.retry(ctx, "prepare", func() error { return store.Prepare(ctx, p.ID, c.deltas) }); err != nil {
		return BatchStats{}, fmt.Errorf("batch %d: prepare state: %w", p.ID, err)
	}
	ckTime := c.encoding + time.Since(ckStart)
	messages := 0
	for i, s := range j.sinks {
		messages += len(c.messages[i])
		t, transactional := s.(TransactionalSink)
		if !transactional && len(c.messages[i]) == 0 || transactional && c.heal {
			continue
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
				// lost) the batch must not be written twice.
				if transactional {
					if held, err := holds(ctx, t, p.ID); err != nil || held {
						return err
					}
				}
			}
			return s.WriteBatch(ctx, c.info, c.messages[i])
		}
		if err := j.retry(ctx, "write sink", write); err != nil {
			return BatchStats{}, fmt.Errorf("batch %d: write sink: %w", p.ID, err)
		}
	}
	ckStart = time.Now()
	if err := j.retry(ctx, "commit", func() error { return store.Commit(ctx, c.ck) }); err != nil {
		return BatchStats{}, fmt.Errorf("batch %d: commit: %w", p.ID, err)
	}
	ckTime += time.Since(ckStart)
	return BatchStats{
		ID: p.ID, Time: p.Time, Records: c.records, Offsets: p.Records(),
		SchedulingDelay: max(0, c.started.Sub(p.Time)),
		ProcessingTime:  time.Since(c.wallStart),
		CheckpointTime:  ckTime,
		Messages:        messages,
		StateChanges:    c.changes,
		Healed:          c.heal,
	}, nil
}

// committedBatch tells the job's listeners, on the job's goroutine, that a
// batch committed.
func (j *Job) committedBatch(stats BatchStats) {
	j.log.Debug().Uint64("batch", stats.ID).Int("records", stats.Records).Str("processing", stats.ProcessingTime.String()).Msg("batch committed")
	for _, l := range j.listeners {
		l(stats)
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
