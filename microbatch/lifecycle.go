package microbatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Start runs the job in the background; AwaitTermination waits for it.
func (j *Job) Start(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mu.started {
		return errors.New("microbatch: job already started")
	}
	g, err := j.compile(false)
	if err != nil {
		return err
	}
	j.graph = g
	ctx, cancel := context.WithCancel(ctx)
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
	j.base = meta.Base

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
