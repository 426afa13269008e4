package microbatch

import (
	"context"
	"errors"
	"fmt"
	"time"
)

func (j *Job) loop(ctx context.Context, store Store, meta Meta) error {
	// idle is ctx, also canceled by Stop: what the job waits for while no
	// batch is in flight.
	idle, cancelIdle := context.WithCancel(ctx)
	defer cancelIdle()
	defer context.AfterFunc(j.stopped, cancelIdle)()
	rec, err := j.recover(idle, store, meta)
	if err != nil {
		return err
	}
	last, ran := rec.last, uint64(0)
	for _, p := range rec.heal {
		err := j.retry(ctx, "record plan", func() error { return store.RecordPlan(ctx, p) })
		if err == nil {
			err = j.runBatch(ctx, store, batchStart{plan: p, started: j.now(), heal: true, recorded: true})
		}
		if err != nil {
			return fmt.Errorf("heal batch %d: %w", p.ID, healError(p, meta.Committed, rec.heal[len(rec.heal)-1].ID, err))
		}
		last = p
		ran++
	}
	if len(rec.heal) > 0 {
		j.log.Info().Int("batches", len(rec.heal)).Uint64("committed", last.ID).Msg("healed: the checkpoint holds every batch the output holds")
	}
	j.lead.Store(int64(j.skewFrom(last)))
	for _, p := range rec.pending {
		if err := j.runBatch(ctx, store, batchStart{plan: p, started: j.now(), recorded: true}); err != nil {
			return err
		}
		last = p
		ran++
	}
	next := last.Time.Add(j.interval)
	if last.ID == 0 {
		// A fresh job aligns its batch times to the interval, as Spark does.
		next = j.now().Truncate(j.interval).Add(j.interval)
		if j.firstBatch != nil && !j.graph.driven {
			err := j.retry(idle, "timeline", func() (err error) {
				next, err = j.firstBatch(idle, next)
				return err
			})
			if err != nil {
				if j.stopped.Err() != nil {
					return nil
				}
				return fmt.Errorf("the job's timeline: %w", err)
			}
		}
	}
	// While a batch computes and commits, the next one is cut and read if
	// its time has come (the job is catching up): reading then overlaps
	// computing rather than adding to it. And while a batch commits (its
	// plan recorded, its state prepared, its outputs' transaction, its
	// checkpoint: round trips, mostly), the next one computes: a batch's
	// outputs are written only after the batch before it committed and
	// its own plan is recorded, so what a crash leaves is what it left
	// before. Batches that finish computing while a commit is still in
	// flight, with the next batch due already, wait for it and then
	// commit together (docs/checkpoint.md).
	var ahead *early
	earlyCtx, cancelEarly := context.WithCancel(ctx)
	var (
		committing *commit
		waiting    []*computed
	)
	// settle waits for the commit in flight, if any, and reports it.
	settle := func() error {
		if committing == nil {
			return nil
		}
		<-committing.done
		c := committing
		committing = nil
		if c.err != nil {
			return c.err
		}
		j.committedBatches(c.stats)
		return nil
	}
	// flush commits the waiting batches, once the commit in flight settled.
	flush := func() error {
		if len(waiting) == 0 {
			return nil
		}
		sealed := j.sealEarly(waiting)
		waiting = nil
		if err := settle(); err != nil {
			j.awaitSeal()
			return err
		}
		committing = j.commitEarly(ctx, store, sealed)
		return nil
	}
	// finish commits what was computed and waits for it.
	finish := func() error {
		if err := flush(); err != nil {
			return err
		}
		return settle()
	}
	defer func() {
		cancelEarly()
		if ahead != nil {
			<-ahead.done
		}
		_ = settle() // the goroutine's owner waits for it; its error was returned or superseded
	}()
	// barrier settles the batch before a batch's outputs run, when they
	// act at once (pprint, ForeachBatch).
	var barrier func() (bool, error)
	if !j.graph.groups {
		barrier = func() (bool, error) {
			if err := settle(); err != nil {
				return false, err
			}
			// The batch before may have stopped the job (a listener).
			return j.stopped.Err() == nil, nil
		}
	}
	for {
		if j.maxBatches > 0 && ran >= j.maxBatches {
			return finish()
		}
		// Stop cancels j.stopped at once, idle a moment later.
		if j.stopped.Err() != nil {
			return finish()
		}
		// A task fed by an exchange runs a batch once it is complete; any
		// other waits for the batch's time.
		if !j.graph.driven {
			if !j.due(next) {
				// Nothing to compute meanwhile: commit and report now
				// rather than a batch interval later.
				if err := finish(); err != nil {
					return err
				}
			}
			if err := j.waitFor(idle, next); err != nil {
				if j.stopped.Err() != nil {
					return finish()
				}
				return errors.Join(err, finish())
			}
		}
		if j.stopped.Err() != nil {
			return finish()
		}
		started := j.now()
		var (
			plan     Plan
			installs []func()
			err      error
		)
		if ahead != nil {
			<-ahead.done
			plan, installs, err = ahead.plan, ahead.installs, ahead.err
			ahead = nil
		} else if j.graph.driven {
			plan, err = j.cutDriven(idle, last)
			next = plan.Time
		} else {
			plan, err = j.cut(idle, last, next)
		}
		if err != nil {
			if j.stopped.Err() != nil {
				return finish()
			}
			return errors.Join(err, finish())
		}
		readNext := func() {
			t := next.Add(j.interval)
			if !j.graph.driven && (j.maxBatches == 0 || ran+1 < j.maxBatches) && j.due(t) {
				ahead = j.readEarly(earlyCtx, plan, t)
			}
		}
		c, err := j.computeBatch(ctx, batchStart{plan: plan, started: started, installs: installs, readNext: readNext}, barrier)
		if err != nil || c == nil {
			return errors.Join(err, settle())
		}
		waiting = append(waiting, c)
		last, next = plan, next.Add(j.interval)
		ran++
		if !j.joinsNextGroup(committing, len(waiting), ran, next) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// joinsNextGroup reports whether a computed batch, the waiting-th, waits
// for the commit in flight to commit with the batches after it: while that
// commit lasts and the next batch, at batch time next, is due already.
func (j *Job) joinsNextGroup(committing *commit, waiting int, ran uint64, next time.Time) bool {
	return j.graph.groups && !j.graph.driven && committing != nil && !committing.finished() &&
		waiting < j.maxGroup && (j.maxBatches == 0 || ran < j.maxBatches) && j.due(next)
}

// commit is a group of batches committing on a goroutine of its own.
type commit struct {
	stats []BatchStats
	err   error
	done  chan struct{}
}

func (c *commit) finished() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// commitEarly commits a group, once sealed, while the job computes the
// next batch; the job's loop owns the goroutine and waits for it.
func (j *Job) commitEarly(ctx context.Context, store Store, s *sealing) *commit {
	cm := &commit{done: make(chan struct{})}
	go func() {
		defer close(cm.done)
		<-s.done
		cm.stats, cm.err = j.commitGroup(ctx, store, s.g)
	}()
	return cm
}

// batchCutter is an input cut by batch id: an exchange.
type batchCutter interface {
	cutBatch(ctx context.Context, id uint64, after []Range) ([]Range, time.Time, error)
}

// cutDriven plans the batch after last of a task fed by exchanges: once
// the batch is complete in every exchange, at the batch time its records
// carry.
func (j *Job) cutDriven(ctx context.Context, last Plan) (Plan, error) {
	plan := Plan{ID: last.ID + 1}
	for _, in := range j.graph.inputs {
		var (
			ranges []Range
			t      time.Time
		)
		err := j.retry(ctx, "cut", func() (err error) {
			ranges, t, err = in.(batchCutter).cutBatch(ctx, plan.ID, rangesOf(last.Ranges, in.topic()))
			return err
		})
		if err != nil {
			return plan, fmt.Errorf("cut batch %d of %s: %w", plan.ID, in.topic(), err)
		}
		if !plan.Time.IsZero() && !t.Equal(plan.Time) {
			return plan, fmt.Errorf("cut batch %d: its exchanges disagree on its time (%v, %v): %w", plan.ID, plan.Time, t, ErrPermanent)
		}
		plan.Time = t
		plan.Ranges = append(plan.Ranges, ranges...)
	}
	return plan, nil
}

// cut plans the batch after last at batch time t.
func (j *Job) cut(ctx context.Context, last Plan, t time.Time) (Plan, error) {
	plan := Plan{ID: last.ID + 1, Time: t}
	for _, in := range j.graph.inputs {
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
	return !j.now().Before(t)
}

// now is the time on the job's timeline: this host's clock plus the lead
// the recorded timeline has over it.
func (j *Job) now() time.Time { return j.clock.Now().Add(time.Duration(j.lead.Load())) }

// waitFor waits until batch time t comes on the job's timeline.
func (j *Job) waitFor(ctx context.Context, t time.Time) error {
	return j.clock.Wait(ctx, t.Add(-time.Duration(j.lead.Load())))
}

// ClockSkew returns how far the job's recorded timeline ran ahead of this
// host's clock when the job recovered (0 if it did not): the previous
// instance's clock ran fast by about that much. The job adds it to its
// clock, so batch times stay monotonic without waiting it out.
func (j *Job) ClockSkew() time.Duration { return time.Duration(j.lead.Load()) }

func rangesOf(all []Range, topic string) []Range {
	var out []Range
	for _, r := range all {
		if r.Topic == topic {
			out = append(out, r)
		}
	}
	return out
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
	reads := make([]func(context.Context, []Range) (func(), error), len(j.graph.inputs))
	for i, in := range j.graph.inputs {
		reads[i] = in.reader()
	}
	return reads
}

// read reads the batch of plan p with reads; installing what it returns
// makes it the inputs' batch.
func (j *Job) read(ctx context.Context, p Plan, reads []func(context.Context, []Range) (func(), error)) ([]func(), error) {
	installs := make([]func(), 0, len(j.graph.inputs))
	for i, in := range j.graph.inputs {
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
