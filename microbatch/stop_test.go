package microbatch

import (
	"context"
	"testing"
	"time"
)

// blockingStore is a Store whose Acquire waits until ctx ends, as a standby
// does while another instance holds the job.
type blockingStore struct{ *MemoryStore }

func (blockingStore) Acquire(ctx context.Context) (Meta, error) {
	<-ctx.Done()
	return Meta{}, ctx.Err()
}

// TestGracefulStopWhileIdleDoesNotWait stops jobs that have no batch in
// flight: one waiting for a batch time an hour away, one standing by for
// the lease. A graceful stop has nothing to finish in either, so the job
// must end without waiting for the batch time or the lease (the bound
// below is a deadlock guard, far from both).
func TestGracefulStopWhileIdleDoesNotWait(t *testing.T) {
	for _, test := range []struct {
		name  string
		store Store
	}{
		{"waiting for the next batch time", NewMemoryStore()},
		{"standing by", blockingStore{NewMemoryStore()}},
	} {
		t.Run(test.name, func(t *testing.T) {
			j := NewJob(time.Hour)
			j.Checkpoint(test.store)
			QueueStream(j, [][]int{{1}}).Pprint(1)
			if err := j.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // let it reach its wait
			j.Stop(true)
			ended, err := j.AwaitTerminationOrTimeout(time.Minute)
			if !ended {
				t.Fatal("the job did not end within a minute of a graceful stop while idle")
			}
			if err != nil {
				t.Fatalf("a graceful stop ended the job with %v, want nil", err)
			}
		})
	}
}
