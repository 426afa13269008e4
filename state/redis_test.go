package state_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
	"github.com/redis/go-redis/v9"
)

func TestCheckWarnsAboutSettingsThatLoseCheckpoints(t *testing.T) {
	for _, test := range []struct {
		name string
		opts redistest.Options
		want []string // substrings, one per expected warning
	}{
		{"aof and noeviction", redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"}, nil},
		{"eviction", redistest.Options{AOF: true, MaxMemory: "64mb", MaxMemoryPolicy: "allkeys-lru"}, []string{"maxmemory-policy is \"allkeys-lru\""}},
		{"no persistence", redistest.Options{MaxMemoryPolicy: "noeviction"}, []string{"persistence is off"}},
		{"snapshots only", redistest.Options{MaxMemoryPolicy: "noeviction", Config: map[string]string{"save": "\"900 1\""}}, []string{"AOF is off"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			srv := redistest.Require(t, test.opts)
			s, err := state.NewRedis(srv.Client(), state.Config{Job: "check"})
			if err != nil {
				t.Fatal(err)
			}
			got := s.Check(context.Background())
			if len(got) != len(test.want) {
				t.Fatalf("warnings %q, want %d", got, len(test.want))
			}
			for i, w := range test.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q does not mention %q", got[i], w)
				}
			}
		})
	}
}

func TestAcquireRefusesAnotherCheckpointFormat(t *testing.T) {
	eachRedis(t, testAcquireRefusesAnotherCheckpointFormat)
}

func testAcquireRefusesAnotherCheckpointFormat(t *testing.T, b backend) {
	ctx := context.Background()
	job := fmt.Sprintf("old-format-%d", jobSeq.Add(1))
	if err := b.rdb.HSet(ctx, "{dstream:"+job+"}:meta", "version", "1", "committed", "7").Err(); err != nil {
		t.Fatal(err)
	}
	s, err := state.NewRedis(b.rdb, state.Config{Job: job, LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Acquire(ctx)
	if err == nil || !errors.Is(err, microbatch.ErrPermanent) || !strings.Contains(err.Error(), "format version 1") || !strings.Contains(err.Error(), "dstream reset") {
		t.Fatalf("Acquire on a format-1 checkpoint: %v, want a permanent refusal that says how to reset", err)
	}
}

func TestStandbyWaitsForTheLease(t *testing.T) { eachRedis(t, testStandbyWaitsForTheLease) }

func testStandbyWaitsForTheLease(t *testing.T, b backend) {
	ctx := context.Background()
	job := fmt.Sprintf("lease-%d", jobSeq.Add(1))
	open := func() *state.Redis {
		s, err := state.NewRedis(b.rdb, state.Config{Job: job, LeaseTTL: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	active, standby := open(), open()
	if _, err := active.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	// While the active instance renews, the standby does not get the job.
	waitCtx, cancel := context.WithTimeout(ctx, time.Second)
	renewed := make(chan error, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-waitCtx.Done():
				renewed <- nil
				return
			case <-tick.C:
				if err := active.Renew(ctx); err != nil {
					renewed <- err
					return
				}
			}
		}
	}()
	if _, err := standby.Acquire(waitCtx); err == nil {
		t.Fatal("standby acquired a job whose lease is being renewed")
	}
	cancel()
	if err := <-renewed; err != nil {
		t.Fatal(err)
	}
	// Once renewals stop, the lease lapses and the standby takes over with a
	// newer epoch; the old holder is fenced.
	meta, err := standby.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Epoch <= active.Epoch() {
		t.Fatalf("takeover epoch %d not above %d", meta.Epoch, active.Epoch())
	}
	if err := active.Renew(ctx); err == nil {
		t.Fatal("the old holder renewed after a takeover")
	}
}

// TestNetworkErrorsAreNotConflicts cuts Redis (through a TCP proxy) in the
// middle of the transactions of Commit and Discard, between the reads that
// check the progress and the writes: the error must be one the engine
// retries (not ErrConflict, not permanent), and the retry must succeed. On a
// cluster the proxy stands in front of the job's master, which the cluster
// client dials through it.
func TestNetworkErrorsAreNotConflicts(t *testing.T) { eachRedis(t, testNetworkErrorsAreNotConflicts) }

func testNetworkErrorsAreNotConflicts(t *testing.T, b backend) {
	job := fmt.Sprintf("cut-%d", jobSeq.Add(1))
	target := ""
	if b.cluster == nil {
		target = redistest.Shared(t).Addr()
	} else {
		node, err := b.cluster.NodeFor(context.Background(), "{dstream:"+job+"}:meta")
		if err != nil {
			t.Fatal(err)
		}
		target = b.cluster.Node(node).Addr()
	}
	proxy, err := redistest.NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	var rdb redis.UniversalClient
	if b.cluster == nil {
		rdb = redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1})
	} else {
		o := b.cluster.ClusterOptions()
		o.MaxRetries = -1
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == target {
				addr = proxy.Addr()
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		rdb = redis.NewClusterClient(o)
	}
	defer rdb.Close()
	s, err := state.NewRedis(rdb, state.Config{Job: job, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	plan := func(id uint64) microbatch.Plan {
		return microbatch.Plan{ID: id, Time: time.Unix(int64(id), 0).UTC(), Ranges: []microbatch.Range{{Topic: "t", From: int64(id), Until: int64(id + 1)}}}
	}
	retried := func(what string, f func() error) {
		t.Helper()
		err := f()
		if err == nil {
			t.Fatalf("%s went through a cut network", what)
		}
		if errors.Is(err, microbatch.ErrConflict) || errors.Is(err, microbatch.ErrPermanent) || errors.Is(err, microbatch.ErrFenced) {
			t.Fatalf("%s with Redis cut: %v; want an error the engine retries", what, err)
		}
		time.Sleep(300 * time.Millisecond) // the cut ends
		if err := f(); err != nil {
			t.Fatalf("%s retried: %v", what, err)
		}
	}
	for _, step := range []func() error{
		func() error { return s.RecordPlan(ctx, plan(1)) },
		func() error { return s.Prepare(ctx, 1, []microbatch.Delta{{Op: "a", Batch: 1, Data: []byte("x")}}) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	// Commit reads the batch's plan inside its transaction.
	proxy.CutOn("HGET", 200*time.Millisecond)
	retried("commit", func() error { return s.Commit(ctx, microbatch.Checkpoint{Batch: 1, KeepFrom: 1}) })
	if err := s.RecordPlan(ctx, plan(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(ctx, 2, []microbatch.Delta{{Op: "a", Batch: 2, Data: []byte("y")}}); err != nil {
		t.Fatal(err)
	}
	// Discard reads the prepared operators inside its transaction.
	proxy.CutOn("GET", 200*time.Millisecond)
	retried("discard", func() error { return s.Discard(ctx, 2) })
	if proxy.Cuts() != 2 {
		t.Fatalf("the proxy cut %d times, want 2", proxy.Cuts())
	}
	if m, err := s.Progress(ctx); err != nil || m.Committed != 1 || m.Prepared != 0 {
		t.Fatalf("progress %+v, %v; want batch 1 committed, nothing prepared", m, err)
	}
}
