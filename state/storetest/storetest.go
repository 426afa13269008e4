// Package storetest is the conformance suite every microbatch.Store passes:
// the in-memory store and the Redis store run the same tests.
package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dstream-io/dstream/microbatch"
)

// Opener returns a new instance (a new process, as it were) of one job's
// store; all instances of one Opener share the job's data.
type Opener func(t *testing.T) microbatch.Store

// Run runs the suite. newJob returns an Opener for a fresh, empty job.
func Run(t *testing.T, newJob func(t *testing.T) Opener) {
	for _, test := range []struct {
		name string
		run  func(t *testing.T, open Opener)
	}{
		{"FreshJob", testFresh},
		{"PlanThenCommit", testPlanThenCommit},
		{"RetriesAreIdempotent", testRetries},
		{"Conflicts", testConflicts},
		{"DiscardDropsPrepared", testDiscard},
		{"Fencing", testFencing},
		{"TrimsPlans", testTrim},
	} {
		t.Run(test.name, func(t *testing.T) { test.run(t, newJob(t)) })
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

func plan(id uint64) microbatch.Plan {
	return microbatch.Plan{ID: id, Time: t0.Add(time.Duration(id) * time.Second), Ranges: []microbatch.Range{
		{Topic: "logs", Partition: 0, From: int64(id-1) * 10, Until: int64(id) * 10},
		{Topic: "logs", Partition: 1, From: int64(id-1) * 5, Until: int64(id) * 5},
	}}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func state(t *testing.T, s microbatch.Store, op string) map[string]string {
	t.Helper()
	out := map[string]string{}
	must(t, s.LoadState(context.Background(), op, func(k, v []byte) error {
		out[string(k)] = string(v)
		return nil
	}))
	return out
}

// commit runs the whole protocol for batch id.
func commit(t *testing.T, s microbatch.Store, id uint64, changes ...microbatch.Change) {
	t.Helper()
	ctx := context.Background()
	must(t, s.RecordPlan(ctx, plan(id)))
	must(t, s.Prepare(ctx, id, changes))
	must(t, s.Commit(ctx, id, 1))
}

func testFresh(t *testing.T, open Opener) {
	s := open(t)
	meta, err := s.Acquire(context.Background())
	must(t, err)
	if meta.Committed != 0 || meta.Planned != 0 || meta.Prepared != 0 || meta.Epoch == 0 {
		t.Fatalf("fresh job: %+v, want nothing committed and an epoch", meta)
	}
}

func testPlanThenCommit(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	_, err := s.Acquire(ctx)
	must(t, err)
	must(t, s.RecordPlan(ctx, plan(1)))
	must(t, s.Prepare(ctx, 1, []microbatch.Change{{Op: "a", Key: []byte("k1"), Value: []byte("v1")}, {Op: "b", Key: []byte("x"), Value: []byte("\x00bin")}}))
	if got := state(t, s, "a"); len(got) != 0 {
		t.Fatalf("prepared state is visible before commit: %v", got)
	}
	must(t, s.Commit(ctx, 1, 1))
	if got := state(t, s, "a"); got["k1"] != "v1" || len(got) != 1 {
		t.Fatalf("state a = %v", got)
	}
	if got := state(t, s, "b"); got["x"] != "\x00bin" {
		t.Fatalf("binary value lost: %q", got["x"])
	}
	commit(t, s, 2, microbatch.Change{Op: "a", Key: []byte("k1"), Delete: true}, microbatch.Change{Op: "a", Key: []byte("k2"), Value: []byte("v2")})
	if got := state(t, s, "a"); len(got) != 1 || got["k2"] != "v2" {
		t.Fatalf("after delete: %v", got)
	}
	plans, err := s.Plans(ctx, 1, 5)
	must(t, err)
	if len(plans) != 2 || plans[0].ID != 1 || plans[1].ID != 2 || !plans[1].Time.Equal(plan(2).Time) || plans[1].Ranges[1] != plan(2).Ranges[1] {
		t.Fatalf("plans = %+v", plans)
	}
	// A new instance sees the progress.
	s2 := open(t)
	must(t, s.Release(ctx))
	meta, err := s2.Acquire(ctx)
	must(t, err)
	if meta.Committed != 2 || meta.Planned != 2 || meta.Prepared != 0 {
		t.Fatalf("meta after two batches: %+v", meta)
	}
}

func testRetries(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	_, err := s.Acquire(ctx)
	must(t, err)
	must(t, s.RecordPlan(ctx, plan(1)))
	must(t, s.RecordPlan(ctx, plan(1))) // same plan again: fine
	ch := []microbatch.Change{{Op: "a", Key: []byte("k"), Value: []byte("1")}}
	must(t, s.Prepare(ctx, 1, ch))
	must(t, s.Prepare(ctx, 1, ch))
	must(t, s.Commit(ctx, 1, 1))
	must(t, s.Commit(ctx, 1, 1)) // a retried commit that went through
	if got := state(t, s, "a"); got["k"] != "1" {
		t.Fatalf("state = %v", got)
	}
}

func testConflicts(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	_, err := s.Acquire(ctx)
	must(t, err)
	for _, test := range []struct {
		name string
		err  error
	}{
		{"plan 2 before plan 1", s.RecordPlan(ctx, plan(2))},
		{"prepare unplanned batch", s.Prepare(ctx, 1, nil)},
	} {
		if !errors.Is(test.err, microbatch.ErrConflict) {
			t.Errorf("%s: err = %v, want ErrConflict", test.name, test.err)
		}
	}
	must(t, s.RecordPlan(ctx, plan(1)))
	other := plan(1)
	other.Ranges[0].Until++
	if err := s.RecordPlan(ctx, other); !errors.Is(err, microbatch.ErrConflict) {
		t.Errorf("re-recording plan 1 with other ranges: err = %v, want ErrConflict", err)
	}
	if err := s.Commit(ctx, 1, 1); !errors.Is(err, microbatch.ErrConflict) {
		t.Errorf("commit without prepare: err = %v, want ErrConflict", err)
	}
}

func testDiscard(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	_, err := s.Acquire(ctx)
	must(t, err)
	commit(t, s, 1, microbatch.Change{Op: "a", Key: []byte("k"), Value: []byte("1")})
	must(t, s.RecordPlan(ctx, plan(2)))
	must(t, s.Prepare(ctx, 2, []microbatch.Change{{Op: "a", Key: []byte("k"), Value: []byte("2")}}))
	must(t, s.Release(ctx))
	s2 := open(t)
	meta, err := s2.Acquire(ctx)
	must(t, err)
	if meta.Prepared != 2 || meta.Planned != 2 || meta.Committed != 1 {
		t.Fatalf("meta = %+v, want batch 2 prepared", meta)
	}
	must(t, s2.Discard(ctx, 2))
	if got := state(t, s2, "a"); got["k"] != "1" {
		t.Fatalf("state after discard = %v", got)
	}
	// The batch runs again from its plan and commits.
	must(t, s2.Prepare(ctx, 2, []microbatch.Change{{Op: "a", Key: []byte("k"), Value: []byte("3")}}))
	must(t, s2.Commit(ctx, 2, 1))
	if got := state(t, s2, "a"); got["k"] != "3" {
		t.Fatalf("state after rerun = %v", got)
	}
}

func testFencing(t *testing.T, open Opener) {
	ctx := context.Background()
	old := open(t)
	_, err := old.Acquire(ctx)
	must(t, err)
	commit(t, old, 1)
	must(t, old.RecordPlan(ctx, plan(2)))
	must(t, old.Release(ctx)) // as if its lease lapsed
	cur := open(t)
	meta, err := cur.Acquire(ctx)
	must(t, err)
	for _, test := range []struct {
		name string
		err  error
	}{
		{"renew", old.Renew(ctx)},
		{"prepare", old.Prepare(ctx, 2, nil)},
		{"commit", old.Commit(ctx, 2, 1)},
		{"discard", old.Discard(ctx, 2)},
		{"plan", old.RecordPlan(ctx, plan(3))},
	} {
		if !errors.Is(test.err, microbatch.ErrFenced) {
			t.Errorf("stale instance %s: err = %v, want ErrFenced", test.name, test.err)
		}
	}
	must(t, cur.Prepare(ctx, 2, nil))
	must(t, cur.Commit(ctx, 2, 1))
	must(t, cur.Renew(ctx))
	if meta.Committed != 1 {
		t.Fatalf("takeover meta = %+v", meta)
	}
}

func testTrim(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	_, err := s.Acquire(ctx)
	must(t, err)
	for id := uint64(1); id <= 6; id++ {
		must(t, s.RecordPlan(ctx, plan(id)))
		must(t, s.Prepare(ctx, id, nil))
		must(t, s.Commit(ctx, id, max(1, id-1)))
	}
	plans, err := s.Plans(ctx, 1, 6)
	must(t, err)
	if len(plans) != 2 || plans[0].ID != 5 {
		t.Fatalf("kept plans %v, want 5 and 6", plans)
	}
}
