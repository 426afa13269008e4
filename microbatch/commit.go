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
}

// runBatch computes a planned batch and commits it: prepare state, write
// sinks, commit checkpoint.
func (j *Job) runBatch(ctx context.Context, store Store, b batchStart) error {
	wallStart := time.Now()
	p := b.plan
	r := &batchRun{job: j, id: p.ID, plan: p, messages: make([][]Message, len(j.sinks))}
	if b.installs != nil {
		for _, install := range b.installs {
			install()
		}
	} else if err := j.load(ctx, r); err != nil {
		return err
	}
	if b.readNext != nil {
		b.readNext()
	}
	for _, n := range j.graph.nodes {
		n.step(r)
	}
	records := 0
	for _, in := range j.graph.inputs {
		records += in.recordCount()
	}
	defer func() {
		for _, n := range j.graph.nodes {
			n.reset()
		}
	}()
	for _, o := range j.graph.outputs {
		if err := o.run(ctx, r); err != nil {
			return fmt.Errorf("batch %d: output: %w", p.ID, err)
		}
	}
	ckStart := time.Now()
	var deltas []Delta
	changes := 0
	ck := Checkpoint{Batch: p.ID, KeepFrom: j.keepFrom(p.ID)}
	if j.storeGraph {
		ck.Graph = j.graph.fingerprintJSON
	}
	for _, st := range j.graph.stateful {
		changes += st.changed()
		if d, ok := st.delta(p.ID); ok {
			deltas = append(deltas, d)
		}
		st.checkpoint(p.ID, &ck)
	}
	if err := j.retry(ctx, "prepare", func() error { return store.Prepare(ctx, p.ID, deltas) }); err != nil {
		return fmt.Errorf("batch %d: prepare state: %w", p.ID, err)
	}
	ckTime := time.Since(ckStart)
	info := r.info()
	messages := 0
	for i, s := range j.sinks {
		messages += len(r.messages[i])
		t, transactional := s.(TransactionalSink)
		if !transactional && len(r.messages[i]) == 0 || transactional && b.heal {
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
			return s.WriteBatch(ctx, info, r.messages[i])
		}
		if err := j.retry(ctx, "write sink", write); err != nil {
			return fmt.Errorf("batch %d: write sink: %w", p.ID, err)
		}
	}
	ckStart = time.Now()
	if err := j.retry(ctx, "commit", func() error { return store.Commit(ctx, ck) }); err != nil {
		return fmt.Errorf("batch %d: commit: %w", p.ID, err)
	}
	ckTime += time.Since(ckStart)
	j.storeGraph = false
	for _, st := range j.graph.stateful {
		st.committed()
	}
	stats := BatchStats{
		ID: p.ID, Time: p.Time, Records: records, Offsets: p.Records(),
		SchedulingDelay: max(0, b.started.Sub(p.Time)),
		ProcessingTime:  time.Since(wallStart),
		CheckpointTime:  ckTime,
		Messages:        messages,
		StateChanges:    changes,
		Healed:          b.heal,
	}
	j.log.Debug().Uint64("batch", p.ID).Int("records", records).Str("processing", stats.ProcessingTime.String()).Msg("batch committed")
	for _, l := range j.listeners {
		l(stats)
	}
	return nil
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
