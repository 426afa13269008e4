package microbatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// recovered is where recovery leaves the job.
type recovered struct {
	// last is the last committed plan (ID 0: none).
	last Plan
	// pending are batches planned but not committed (a batch, or a group
	// of them), to run first, one by one.
	pending []Plan
	// heal are batches the transactional sink holds but the Store lost:
	// they are computed and committed again without writing their output.
	heal []Plan
}

// recover restores the job from the Store: it compares the stored graph
// with the job's, settles a prepared batch against what the transactional
// sink holds, loads the operators' state, rebuilds the windows by replaying
// the recorded plans they span, and lists the batches to heal.
func (j *Job) recover(ctx context.Context, store Store, meta Meta) (recovered, error) {
	var rec recovered
	diff, err := diffGraphs(meta.Graph, j.graph.fingerprint, func(op, key, value string) bool {
		i := slices.IndexFunc(j.graph.stateful, func(st stateful) bool { return st.stateOp() == op })
		return i >= 0 && j.graph.stateful[i].readsCodecs(key, value)
	})
	if err != nil {
		return rec, fmt.Errorf("recover: %w", err)
	}
	j.storeGraph = diff.store
	for _, note := range diff.notes {
		j.log.Warn().Str("change", note).Msg("the job changed since its last checkpoint; resuming")
	}

	c := meta.Committed
	held, err := j.sinkHolds(ctx, c)
	if err != nil {
		return rec, err
	}
	// A prepared batch is the last of its group (of one, or more).
	prepared := meta.Prepared
	discard := func() error {
		if prepared <= c {
			return nil
		}
		if err := j.retry(ctx, "discard", func() error { return store.Discard(ctx, prepared) }); err != nil {
			return fmt.Errorf("recover: discard prepared batch %d: %w", prepared, err)
		}
		return nil
	}
	switch {
	case len(held) == 0:
		if err := discard(); err != nil {
			return rec, err
		}
		if prepared > c {
			j.log.Info().Uint64("batch", prepared).Msg("discarded prepared batch whose output was not committed")
		}
	case prepared > c && held[len(held)-1].ID == prepared:
		// The output of the prepared batch (and of its group) is
		// committed: complete it.
		ck := Checkpoint{Batch: prepared, KeepFrom: j.keepFrom(prepared)}
		if err := j.retry(ctx, "commit", func() error { return store.Commit(ctx, ck) }); err != nil {
			return rec, fmt.Errorf("recover: complete prepared batch %d: %w", prepared, err)
		}
		j.log.Info().Uint64("batch", prepared).Int("group", len(held)).Msg("completed prepared batch whose output was committed")
		c = prepared
	default:
		// The sink holds batches the Store lost (Redis lost its last
		// writes): they are healed below, from their plans in the sink.
		if err := discard(); err != nil {
			return rec, err
		}
		for _, b := range held {
			rec.heal = append(rec.heal, b.Plan)
		}
		j.log.Warn().Uint64("committed", c).Uint64("from", held[0].ID).Uint64("to", held[len(held)-1].ID).
			Msg("the store lost batches the output holds (Redis lost its last writes?): healing them from their plans without writing them again")
	}

	for _, st := range j.graph.stateful {
		if diff.startOver[st.stateOp()] {
			continue
		}
		if was, ok := diff.recode[st.stateOp()]; ok {
			if err := st.useStoredCodecs(was[0], was[1]); err != nil {
				return rec, fmt.Errorf("recover: %w: %w", err, ErrPermanent)
			}
		}
		found, err := j.loadState(ctx, store, st, c)
		if err != nil {
			return rec, err
		}
		if diff.adopt && !found {
			diff.startOver[st.stateOp()] = true
		}
	}
	if c > 0 {
		if rec.last, err = j.rebuildWindows(ctx, store, c, meta.Base, diff.windowsChanged || len(diff.startOver) > 0); err != nil {
			return rec, err
		}
	}
	for _, st := range j.graph.stateful {
		if diff.startOver[st.stateOp()] {
			g := st.base().guard
			g.lockFor(c)
			st.startOver(c)
			g.unlock()
		}
	}
	if len(rec.heal) == 0 && meta.Planned > c {
		var plans []Plan
		err := j.retry(ctx, "load plans", func() (err error) {
			plans, err = store.Plans(ctx, c+1, meta.Planned)
			return err
		})
		if err != nil {
			return rec, fmt.Errorf("recover: load plans of unfinished batches %d-%d: %w", c+1, meta.Planned, err)
		}
		for i, p := range plans {
			if p.ID != c+1+uint64(i) {
				break
			}
			rec.pending = append(rec.pending, p)
		}
		if uint64(len(rec.pending)) != meta.Planned-c {
			return rec, fmt.Errorf("recover: the plans of unfinished batches %d-%d are incomplete: %w", c+1, meta.Planned, ErrPermanent)
		}
	}
	return rec, nil
}

// sinkHolds returns the plans of the batches after c that the job's
// transactional sink holds: normally none, or c+1 when a crash came
// between the output's commit and the checkpoint's. They must continue
// from c, one after the other, or the Store lost what cannot be healed.
func (j *Job) sinkHolds(ctx context.Context, c uint64) ([]BatchInfo, error) {
	var held []BatchInfo
	for _, s := range j.sinks {
		t, ok := s.(TransactionalSink)
		if !ok {
			continue
		}
		err := j.retry(ctx, "committed batches", func() (err error) {
			held, err = t.Committed(ctx, c)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("recover: read the batches the sink holds: %w", err)
		}
	}
	if n := len(held); n > 0 && held[n-1].Base > c {
		return nil, &StateLostError{Committed: c, SinkLast: held[n-1].ID,
			Why: fmt.Sprintf("the store lost the reset of the job at batch %d (a flushed Redis?); run the reset again", held[n-1].Base)}
	}
	for i, p := range held {
		if p.ID != c+1+uint64(i) {
			return nil, &StateLostError{Committed: c, SinkLast: held[len(held)-1].ID,
				Why: fmt.Sprintf("the output's markers jump to batch %d after batch %d, so the plans in between are unknown", p.ID, c+uint64(i))}
		}
	}
	return held, nil
}

// loadState restores one operator's committed state and reports whether
// the Store held any.
func (j *Job) loadState(ctx context.Context, store Store, st stateful, committed uint64) (found bool, err error) {
	g := st.base().guard
	g.lockFor(committed)
	defer g.unlock()
	l := &stateLoader{committed: committed}
	err = j.retry(ctx, "load state", func() error {
		l.segments, l.deltas = map[uint32][]byte{}, map[uint64][]byte{}
		return store.LoadState(ctx, st.stateOp(), l.add)
	})
	if err != nil {
		return false, fmt.Errorf("recover: load state of %s: %w", st.stateOp(), err)
	}
	st.clearState()
	if err := st.load(l, j.parallelism); err != nil {
		return false, fmt.Errorf("recover: %w: %w", err, ErrPermanent)
	}
	return len(l.segments)+len(l.deltas) > 0, nil
}

// rebuildWindows replays the recorded plans the windows span, up to the
// committed batch c, and returns c's plan. The plans must all be there (but
// those before a reset at base, whose batches the windows no longer hold):
// a window that grew since the last run may need more than were kept.
func (j *Job) rebuildWindows(ctx context.Context, store Store, c, base uint64, changed bool) (Plan, error) {
	span := j.graph.span
	from := max(c-min(c-1, span), base)
	var plans []Plan
	err := j.retry(ctx, "load plans", func() (err error) {
		plans, err = store.Plans(ctx, from, c)
		return err
	})
	if err != nil {
		return Plan{}, fmt.Errorf("recover: load plans %d-%d: %w", from, c, err)
	}
	if len(plans) == 0 || plans[len(plans)-1].ID != c {
		return Plan{}, fmt.Errorf("recover: the plan of committed batch %d is missing: %w", c, ErrPermanent)
	}
	if first := plans[0].ID; first != from || uint64(len(plans)) != c-from+1 {
		if changed {
			return Plan{}, &GraphChangeError{Changes: []string{fmt.Sprintf(
				"the changed windows need the plans of batches %d to %d, but the checkpoint keeps them from batch %d only: "+
					"`dstream reset --yes` starts the job over (or keep the previous windows)", from, c, first)}}
		}
		return Plan{}, fmt.Errorf("recover: plans %d-%d are incomplete (from %d, %d plans): %w", from, c, first, len(plans), ErrPermanent)
	}
	for _, p := range plans {
		if err := j.rebuild(ctx, p); err != nil {
			return Plan{}, err
		}
	}
	j.log.Info().Uint64("committed", c).Int("replayed", len(plans)).Msg("recovered")
	return plans[len(plans)-1], nil
}

func (j *Job) keepFrom(committed uint64) uint64 {
	keep := max(j.retainPlans, j.graph.span+1, uint64(j.remember/j.interval)+1)
	if committed <= keep {
		return 1
	}
	return committed - keep + 1
}

// rebuild replays a committed batch through the window-feeding part of the
// graph only: no state changes, no output.
func (j *Job) rebuild(ctx context.Context, p Plan) error {
	if j.graph.span == 0 {
		return nil
	}
	r := &batchRun{job: j, id: p.ID, plan: p, rebuild: true}
	if err := j.load(ctx, r); err != nil {
		return err
	}
	for _, n := range j.graph.nodes {
		n.step(r)
	}
	for _, n := range j.graph.nodes {
		n.reset()
	}
	return nil
}

// skewFrom returns how far the last batch time lies ahead of this host's
// clock: the lead this instance adds to its clock so that it goes on from
// the recorded timeline instead of waiting the skew out.
func (j *Job) skewFrom(last Plan) time.Duration {
	if last.ID == 0 {
		return 0
	}
	lead := last.Time.Sub(j.clock.Now())
	if lead <= 0 {
		return 0
	}
	j.log.Warn().Str("lead", lead.String()).Time("last_batch_time", last.Time).
		Msg("the recorded timeline is ahead of this host's clock (the previous instance's clock ran fast?): going on from the timeline without waiting")
	return lead
}

// healError explains a permanent failure to heal batch p, of the batches
// up to last that the sink holds.
func healError(p Plan, c, last uint64, err error) error {
	if errors.Is(err, ErrPermanent) {
		return &StateLostError{Committed: c, SinkLast: last,
			Why: fmt.Sprintf("batch %d cannot be recomputed: %v", p.ID, strings.TrimSpace(err.Error()))}
	}
	return err
}
