package state_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
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
	srv := redistest.Shared(t)
	rdb := srv.Client()
	ctx := context.Background()
	if err := rdb.HSet(ctx, "{dstream:old-format}:meta", "version", "1", "committed", "7").Err(); err != nil {
		t.Fatal(err)
	}
	s, err := state.NewRedis(rdb, state.Config{Job: "old-format", LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Acquire(ctx)
	if err == nil || !errors.Is(err, microbatch.ErrPermanent) || !strings.Contains(err.Error(), "format version 1") || !strings.Contains(err.Error(), "dstream reset") {
		t.Fatalf("Acquire on a format-1 checkpoint: %v, want a permanent refusal that says how to reset", err)
	}
}

func TestStandbyWaitsForTheLease(t *testing.T) {
	srv := redistest.Shared(t)
	ctx := context.Background()
	open := func() *state.Redis {
		s, err := state.NewRedis(srv.Client(), state.Config{Job: "lease", LeaseTTL: 300 * time.Millisecond})
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
