package state_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

// TestCommitByNextHolder stages a batch with one instance and commits it
// with the next, which reads the staged changes back from Redis as recovery
// does when the batch's output is already in the sink; also from the
// layout earlier builds staged in (a hash).
func TestCommitByNextHolder(t *testing.T) {
	rdb := redistest.Shared(t).Client()
	defer rdb.Close()
	ctx := context.Background()
	for _, test := range []struct {
		name   string
		legacy bool
	}{{"current layout", false}, {"hash layout of earlier builds", true}} {
		t.Run(test.name, func(t *testing.T) {
			job := fmt.Sprintf("next-holder-%d", jobSeq.Add(1))
			open := func() *state.Redis {
				s, err := state.NewRedis(rdb, state.Config{Job: job, LeaseTTL: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Acquire(ctx); err != nil {
					t.Fatal(err)
				}
				return s
			}
			plan := func(id uint64) microbatch.Plan {
				return microbatch.Plan{ID: id, Time: time.Unix(int64(id), 0).UTC(), Ranges: []microbatch.Range{{Topic: "t", From: int64(id), Until: int64(id + 1)}}}
			}
			first := open()
			for _, step := range []func() error{
				func() error { return first.RecordPlan(ctx, plan(1)) },
				func() error {
					return first.Prepare(ctx, 1, []microbatch.Change{
						{Op: "a", Key: []byte("gone"), Value: []byte("x")},
						{Op: "a", Key: []byte("kept"), Value: []byte("1")},
						{Op: "b", Key: []byte("k\x00ey"), Value: []byte{}},
					})
				},
				func() error { return first.Commit(ctx, 1, 1) },
				func() error { return first.RecordPlan(ctx, plan(2)) },
				func() error {
					return first.Prepare(ctx, 2, []microbatch.Change{
						{Op: "a", Key: []byte("gone"), Delete: true},
						{Op: "a", Key: []byte("kept"), Value: []byte("2")},
						{Op: "b", Key: []byte("new"), Value: []byte{0, 1, 2}},
					})
				},
			} {
				if err := step(); err != nil {
					t.Fatal(err)
				}
			}
			if test.legacy {
				pending := "{dstream:" + job + "}:pending"
				if err := rdb.Del(ctx, pending).Err(); err != nil {
					t.Fatal(err)
				}
				err := rdb.HSet(ctx, pending, "a\x00gone", "\x00", "a\x00kept", "\x012", "b\x00new", "\x01\x00\x01\x02").Err()
				if err != nil {
					t.Fatal(err)
				}
			}
			// first crashes here; the next holder completes batch 2.
			next := open()
			if err := next.Commit(ctx, 2, 1); err != nil {
				t.Fatal(err)
			}
			for op, want := range map[string]map[string]string{
				"a": {"kept": "2"},
				"b": {"k\x00ey": "", "new": "\x00\x01\x02"},
			} {
				got := map[string]string{}
				if err := next.LoadState(ctx, op, func(k, v []byte) error { got[string(k)] = string(v); return nil }); err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(got, want) {
					t.Errorf("state %s = %q, want %q", op, got, want)
				}
			}
		})
	}
}
