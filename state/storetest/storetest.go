// Package storetest is the conformance suite every microbatch.Store passes:
// the in-memory store and the Redis store run the same tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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
		{"ReplaceDropsAnOperatorsState", testReplace},
		{"CommitByNextHolder", testCommitByNextHolder},
		{"Fencing", testFencing},
		{"TrimsPlans", testTrim},
		{"GroupCommit", testGroupCommit},
		{"GroupCompletedByNextHolder", testGroupByNextHolder},
	} {
		t.Run(test.name, func(t *testing.T) { test.run(t, newJob(t)) })
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

func plan(id uint64) microbatch.Plan {
	return microbatch.Plan{ID: id, Time: t0.Add(time.Duration(id) * time.Second), Ranges: []microbatch.Range{
		{Topic: "logs", Partition: 0, From: int64(id-1) * 10, Until: int64(id) * 10, TopicID: "abcdef0123456789abcdef0123456789"},
		{Topic: "logs", Partition: 1, From: int64(id-1) * 5, Until: int64(id) * 5, TopicID: "abcdef0123456789abcdef0123456789"},
	}}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// parts returns what the store holds of op's state, by name: s<index> for
// segments, d<batch> for deltas.
func parts(t *testing.T, s microbatch.Store, op string) map[string]string {
	t.Helper()
	out := map[string]string{}
	must(t, s.LoadState(context.Background(), op, func(p microbatch.StatePart) error {
		switch p.Kind {
		case microbatch.SegmentPart:
			out[fmt.Sprintf("s%d", p.Index)] = string(p.Data)
		case microbatch.DeltaPart:
			out[fmt.Sprintf("d%d", p.Batch)] = string(p.Data)
		default:
			t.Errorf("part of unknown kind %d", p.Kind)
		}
		return nil
	}))
	return out
}

func delta(op string, batch uint64, data string) microbatch.Delta {
	return microbatch.Delta{Op: op, Batch: batch, Data: []byte(data)}
}

// commit runs the whole protocol for batch id.
func commit(t *testing.T, s microbatch.Store, id uint64, deltas ...microbatch.Delta) {
	t.Helper()
	ctx := context.Background()
	must(t, s.RecordPlan(ctx, plan(id)))
	must(t, s.Prepare(ctx, id, deltas))
	must(t, s.Commit(ctx, microbatch.Checkpoint{Batch: id, KeepFrom: 1}))
}

func testFresh(t *testing.T, open Opener) {
	s := open(t)
	meta, err := s.Acquire(context.Background())
	must(t, err)
	if meta.Committed != 0 || meta.Planned != 0 || meta.Prepared != 0 || meta.Epoch == 0 || meta.Graph != nil || meta.Base != 0 {
		t.Fatalf("fresh job: %+v, want nothing committed and an epoch", meta)
	}
}

func testPlanThenCommit(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	_, err := s.Acquire(ctx)
	must(t, err)
	must(t, s.RecordPlan(ctx, plan(1)))
	must(t, s.Prepare(ctx, 1, []microbatch.Delta{delta("a", 1, "A1"), delta("b", 1, "\x00bin")}))
	must(t, s.Commit(ctx, microbatch.Checkpoint{Batch: 1, KeepFrom: 1, Graph: []byte(`{"g":1}`),
		Segments: []microbatch.Segment{{Op: "a", Index: 0, Data: []byte("S0@1")}, {Op: "a", Index: 3, Data: []byte("S3@1")}}}))
	if got, want := parts(t, s, "a"), map[string]string{"d1": "A1", "s0": "S0@1", "s3": "S3@1"}; !maps.Equal(got, want) {
		t.Fatalf("state a = %q, want %q", got, want)
	}
	if got := parts(t, s, "b"); got["d1"] != "\x00bin" || len(got) != 1 {
		t.Fatalf("binary delta lost: %q", got)
	}
	// Batch 2 rewrites segment 0 and drops delta 1 of a.
	must(t, s.RecordPlan(ctx, plan(2)))
	must(t, s.Prepare(ctx, 2, []microbatch.Delta{delta("a", 2, "A2")}))
	must(t, s.Commit(ctx, microbatch.Checkpoint{Batch: 2, KeepFrom: 1,
		Segments: []microbatch.Segment{{Op: "a", Index: 0, Data: []byte("S0@2")}},
		Drop:     []microbatch.Delta{{Op: "a", Batch: 1}}}))
	if got, want := parts(t, s, "a"), map[string]string{"d2": "A2", "s0": "S0@2", "s3": "S3@1"}; !maps.Equal(got, want) {
		t.Fatalf("state a after batch 2 = %q, want %q", got, want)
	}
	plans, err := s.Plans(ctx, 1, 5)
	must(t, err)
	if len(plans) != 2 || plans[0].ID != 1 || plans[1].ID != 2 || !plans[1].Time.Equal(plan(2).Time) || !slices.Equal(plans[1].Ranges, plan(2).Ranges) {
		t.Fatalf("plans = %+v, want plans 1 and 2 with their topic ids", plans)
	}
	// A new instance sees the progress and the graph.
	s2 := open(t)
	must(t, s.Release(ctx))
	meta, err := s2.Acquire(ctx)
	must(t, err)
	if meta.Committed != 2 || meta.Planned != 2 || meta.Prepared != 0 || string(meta.Graph) != `{"g":1}` {
		t.Fatalf("meta after two batches: %+v, graph %s", meta, meta.Graph)
	}
}

func testReplace(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	_, err := s.Acquire(ctx)
	must(t, err)
	commit(t, s, 1, delta("a", 1, "A1"), delta("b", 1, "B1"))
	must(t, s.RecordPlan(ctx, plan(2)))
	must(t, s.Prepare(ctx, 2, []microbatch.Delta{delta("a", 2, "A2")}))
	must(t, s.Commit(ctx, microbatch.Checkpoint{Batch: 2, KeepFrom: 1, Replace: []string{"a"},
		Segments: []microbatch.Segment{{Op: "a", Index: 1, Data: []byte("S1@2")}}}))
	if got, want := parts(t, s, "a"), map[string]string{"s1": "S1@2"}; !maps.Equal(got, want) {
		t.Fatalf("replaced state a = %q, want %q", got, want)
	}
	if got, want := parts(t, s, "b"), map[string]string{"d1": "B1"}; !maps.Equal(got, want) {
		t.Fatalf("state b = %q, want %q (untouched)", got, want)
	}
}

func testRetries(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	_, err := s.Acquire(ctx)
	must(t, err)
	must(t, s.RecordPlan(ctx, plan(1)))
	must(t, s.RecordPlan(ctx, plan(1))) // same plan again: fine
	d := []microbatch.Delta{delta("a", 1, "1")}
	must(t, s.Prepare(ctx, 1, d))
	must(t, s.Prepare(ctx, 1, d))
	ck := microbatch.Checkpoint{Batch: 1, KeepFrom: 1, Segments: []microbatch.Segment{{Op: "a", Data: []byte("S")}}}
	must(t, s.Commit(ctx, ck))
	must(t, s.Commit(ctx, ck)) // a retried commit that went through
	if got, want := parts(t, s, "a"), map[string]string{"d1": "1", "s0": "S"}; !maps.Equal(got, want) {
		t.Fatalf("state = %q, want %q", got, want)
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
	if err := s.Commit(ctx, microbatch.Checkpoint{Batch: 1, KeepFrom: 1}); !errors.Is(err, microbatch.ErrConflict) {
		t.Errorf("commit without prepare: err = %v, want ErrConflict", err)
	}
}

func testDiscard(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	_, err := s.Acquire(ctx)
	must(t, err)
	commit(t, s, 1, delta("a", 1, "1"))
	must(t, s.RecordPlan(ctx, plan(2)))
	must(t, s.Prepare(ctx, 2, []microbatch.Delta{delta("a", 2, "2"), delta("b", 2, "x")}))
	must(t, s.Release(ctx))
	s2 := open(t)
	meta, err := s2.Acquire(ctx)
	must(t, err)
	if meta.Prepared != 2 || meta.Planned != 2 || meta.Committed != 1 {
		t.Fatalf("meta = %+v, want batch 2 prepared", meta)
	}
	must(t, s2.Discard(ctx, 2))
	if got, want := parts(t, s2, "a"), map[string]string{"d1": "1"}; !maps.Equal(got, want) {
		t.Fatalf("state a after discard = %q, want %q", got, want)
	}
	if got := parts(t, s2, "b"); len(got) != 0 {
		t.Fatalf("state b after discard = %q, want none", got)
	}
	// The batch runs again from its plan and commits.
	must(t, s2.Prepare(ctx, 2, []microbatch.Delta{delta("a", 2, "3")}))
	must(t, s2.Commit(ctx, microbatch.Checkpoint{Batch: 2, KeepFrom: 1}))
	if got, want := parts(t, s2, "a"), map[string]string{"d1": "1", "d2": "3"}; !maps.Equal(got, want) {
		t.Fatalf("state after rerun = %q, want %q", got, want)
	}
}

// testCommitByNextHolder stages a batch with one instance and commits it
// with the next, as recovery does when the batch's output is already in the
// sink: the staged deltas become the committed ones.
func testCommitByNextHolder(t *testing.T, open Opener) {
	ctx := context.Background()
	first := open(t)
	_, err := first.Acquire(ctx)
	must(t, err)
	commit(t, first, 1, delta("a", 1, "A1"))
	must(t, first.RecordPlan(ctx, plan(2)))
	must(t, first.Prepare(ctx, 2, []microbatch.Delta{delta("a", 2, "A2"), delta("b", 2, "B2")}))
	must(t, first.Release(ctx)) // it crashed here
	next := open(t)
	meta, err := next.Acquire(ctx)
	must(t, err)
	if meta.Prepared != 2 {
		t.Fatalf("meta = %+v, want batch 2 prepared", meta)
	}
	must(t, next.Commit(ctx, microbatch.Checkpoint{Batch: 2, KeepFrom: 1}))
	if got, want := parts(t, next, "a"), map[string]string{"d1": "A1", "d2": "A2"}; !maps.Equal(got, want) {
		t.Fatalf("state a = %q, want %q", got, want)
	}
	if got, want := parts(t, next, "b"), map[string]string{"d2": "B2"}; !maps.Equal(got, want) {
		t.Fatalf("state b = %q, want %q", got, want)
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
		{"commit", old.Commit(ctx, microbatch.Checkpoint{Batch: 2, KeepFrom: 1})},
		{"discard", old.Discard(ctx, 2)},
		{"plan", old.RecordPlan(ctx, plan(3))},
	} {
		if !errors.Is(test.err, microbatch.ErrFenced) {
			t.Errorf("stale instance %s: err = %v, want ErrFenced", test.name, test.err)
		}
	}
	must(t, cur.Prepare(ctx, 2, nil))
	must(t, cur.Commit(ctx, microbatch.Checkpoint{Batch: 2, KeepFrom: 1}))
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
		must(t, s.Commit(ctx, microbatch.Checkpoint{Batch: id, KeepFrom: max(1, id-1)}))
	}
	plans, err := s.Plans(ctx, 1, 6)
	must(t, err)
	if len(plans) != 2 || plans[0].ID != 5 {
		t.Fatalf("kept plans %v, want 5 and 6", plans)
	}
}

// testGroupCommit commits batches 2-4 as a group: their plans in one call
// (all or none), one delta under the last, one commit.
func testGroupCommit(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	_, err := s.Acquire(ctx)
	must(t, err)
	commit(t, s, 1, delta("a", 1, "A1"))
	// A call that breaks the sequence records none of its plans.
	if err := s.RecordPlan(ctx, plan(2), plan(4)); !errors.Is(err, microbatch.ErrConflict) {
		t.Fatalf("plans 2 and 4: err = %v, want ErrConflict", err)
	}
	if plans, err := s.Plans(ctx, 2, 4); err != nil || len(plans) != 0 {
		t.Fatalf("after a refused call: plans %+v, %v; want none", plans, err)
	}
	must(t, s.RecordPlan(ctx, plan(2), plan(3), plan(4)))
	must(t, s.RecordPlan(ctx, plan(3), plan(4))) // a retry of part of it
	for _, test := range []struct {
		name string
		err  error
	}{
		{"prepare a committed batch", s.Prepare(ctx, 1, nil)},
		{"prepare an unplanned batch", s.Prepare(ctx, 5, nil)},
		{"commit an unprepared batch", s.Commit(ctx, microbatch.Checkpoint{Batch: 4, KeepFrom: 1})},
	} {
		if !errors.Is(test.err, microbatch.ErrConflict) {
			t.Errorf("%s: err = %v, want ErrConflict", test.name, test.err)
		}
	}
	must(t, s.Prepare(ctx, 4, []microbatch.Delta{delta("a", 4, "A2-4")}))
	must(t, s.Commit(ctx, microbatch.Checkpoint{Batch: 4, KeepFrom: 1}))
	must(t, s.Commit(ctx, microbatch.Checkpoint{Batch: 4, KeepFrom: 1})) // a retry that went through
	if got, want := parts(t, s, "a"), map[string]string{"d1": "A1", "d4": "A2-4"}; !maps.Equal(got, want) {
		t.Fatalf("state a = %q, want %q", got, want)
	}
	plans, err := s.Plans(ctx, 1, 9)
	must(t, err)
	if len(plans) != 4 || plans[3].ID != 4 || !slices.Equal(plans[2].Ranges, plan(3).Ranges) {
		t.Fatalf("plans = %+v, want 1-4", plans)
	}
	commit(t, s, 5)
	must(t, s.Release(ctx))
	next := open(t)
	meta, err := next.Acquire(ctx)
	must(t, err)
	if meta.Committed != 5 || meta.Planned != 5 || meta.Prepared != 0 {
		t.Fatalf("meta = %+v, want batch 5 committed", meta)
	}
}

// testGroupByNextHolder leaves a group of batches planned and prepared, as
// a crash between the output's transaction and the checkpoint does: the next
// holder completes the group's commit, or runs its batches one by one.
func testGroupByNextHolder(t *testing.T, open Opener) {
	ctx := context.Background()
	for _, complete := range []bool{true, false} {
		first := open(t)
		meta, err := first.Acquire(ctx)
		must(t, err)
		c := meta.Committed
		must(t, first.RecordPlan(ctx, plan(c+1), plan(c+2), plan(c+3)))
		must(t, first.Prepare(ctx, c+3, []microbatch.Delta{delta("g", c+3, "G")}))
		must(t, first.Release(ctx)) // it crashed here
		next := open(t)
		meta, err = next.Acquire(ctx)
		must(t, err)
		if meta.Committed != c || meta.Planned != c+3 || meta.Prepared != c+3 {
			t.Fatalf("meta = %+v, want batches %d-%d planned, %d prepared", meta, c+1, c+3, c+3)
		}
		if complete {
			must(t, next.Commit(ctx, microbatch.Checkpoint{Batch: c + 3, KeepFrom: 1}))
			if got := parts(t, next, "g")[fmt.Sprintf("d%d", c+3)]; got != "G" {
				t.Fatalf("completed group: state g = %q", parts(t, next, "g"))
			}
			must(t, next.Release(ctx))
			continue
		}
		// The output holds none of the group: the batches run again one
		// by one from their recorded plans.
		must(t, next.Discard(ctx, c+3))
		for id := c + 1; id <= c+3; id++ {
			must(t, next.RecordPlan(ctx, plan(id)))
			must(t, next.Prepare(ctx, id, []microbatch.Delta{delta("g", id, "one")}))
			must(t, next.Commit(ctx, microbatch.Checkpoint{Batch: id, KeepFrom: 1}))
		}
		meta, err = next.Acquire(ctx)
		must(t, err)
		if meta.Committed != c+3 || meta.Planned != c+3 || meta.Prepared != 0 {
			t.Fatalf("meta after the rerun = %+v", meta)
		}
		must(t, next.Release(ctx))
	}
}
