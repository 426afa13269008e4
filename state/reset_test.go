package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

func openStore(t *testing.T, b backend, job string) *state.Redis {
	t.Helper()
	s, err := state.NewRedis(b.rdb, state.Config{Job: job, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// commitBatch runs the protocol for batch id with one delta per op and a
// stored graph naming graphOps.
func commitBatch(t *testing.T, s *state.Redis, id uint64, ops []string, graphOps ...string) {
	t.Helper()
	ctx := context.Background()
	p := microbatch.Plan{ID: id, Time: time.Unix(int64(id), 0).UTC(), Ranges: []microbatch.Range{{Topic: "logs", From: int64(id - 1), Until: int64(id)}}}
	if err := s.RecordPlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	var deltas []microbatch.Delta
	for _, op := range ops {
		deltas = append(deltas, microbatch.Delta{Op: op, Batch: id, Data: []byte(op + fmt.Sprint(id))})
	}
	if err := s.Prepare(ctx, id, deltas); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, microbatch.Checkpoint{Batch: id, KeepFrom: 1, Graph: graph(t, graphOps...)}); err != nil {
		t.Fatal(err)
	}
}

// graph is a stored graph with the named stateful operators.
func graph(t *testing.T, ops ...string) []byte {
	t.Helper()
	fp := microbatch.Fingerprint{Version: 1, IntervalMS: 1000, Inputs: []string{"logs"}}
	for _, op := range ops {
		fp.State = append(fp.State, microbatch.StateFingerprint{Name: op, Kind: "updateStateByKey", Key: "string", Value: "int64"})
	}
	b, err := json.Marshal(fp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stateOf returns the parts of op's state by field name.
func stateOf(t *testing.T, s *state.Redis, op string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.LoadState(context.Background(), op, func(p microbatch.StatePart) error {
		switch p.Kind {
		case microbatch.SegmentPart:
			out[fmt.Sprintf("s%d", p.Index)] = string(p.Data)
		case microbatch.DeltaPart:
			out[fmt.Sprintf("d%d", p.Batch)] = string(p.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSeize(t *testing.T) { eachRedis(t, testSeize) }

func testSeize(t *testing.T, b backend) {
	ctx := context.Background()
	job := fmt.Sprintf("seize-%d", jobSeq.Add(1))
	fresh := openStore(t, b, job)
	committed, version, g, err := fresh.Seize(ctx, false)
	if err != nil || committed != 0 || version != "" || g != nil {
		t.Fatalf("Seize of a new job: %d, %q, %s, %v; want nothing", committed, version, g, err)
	}
	if err := fresh.Release(ctx); err != nil {
		t.Fatal(err)
	}
	active := openStore(t, b, job)
	if _, err := active.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	commitBatch(t, active, 1, []string{"a"}, "a")
	cmd := openStore(t, b, job)
	if _, _, _, err := cmd.Seize(ctx, false); !errors.Is(err, state.ErrJobRunning) {
		t.Fatalf("Seize of a running job without force: %v, want ErrJobRunning", err)
	}
	committed, version, g, err = cmd.Seize(ctx, true)
	if err != nil || committed != 1 || version != state.FormatVersion || string(g) != string(graph(t, "a")) {
		t.Fatalf("Seize with force: %d, %q, %s, %v; want batch 1 of format %s and its graph", committed, version, g, err, state.FormatVersion)
	}
	if err := active.Renew(ctx); !errors.Is(err, microbatch.ErrFenced) {
		t.Fatalf("the instance a forced Seize took the job from renewed: %v, want ErrFenced", err)
	}
}

// TestReset drops every key of the job's state, the operators of the stored
// graph and those only a scan finds (an operator the graph lost, a format-1
// hash), its plans and history, and starts it over at the given batch.
func TestReset(t *testing.T) { eachRedis(t, testReset) }

func testReset(t *testing.T, b backend) {
	ctx := context.Background()
	job := fmt.Sprintf("reset-%d", jobSeq.Add(1))
	tag := "{dstream:" + job + "}"
	s := openStore(t, b, job)
	if _, err := s.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	// "a" is in the graph; "b" has state but is not; "old" is format 1's.
	commitBatch(t, s, 1, []string{"a", "b"}, "a")
	commitBatch(t, s, 2, []string{"a", "b"}, "a")
	if err := b.rdb.HSet(ctx, tag+":state:old", "k", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := state.NewHistory(b.rdb, job, 5).Record(ctx, state.BatchRecord{ID: 2}); err != nil {
		t.Fatal(err)
	}
	dropped := []string{tag + ":st:a", tag + ":st:b", tag + ":state:old", tag + ":history", tag + ":plans"}
	if n, err := b.rdb.Exists(ctx, dropped...).Result(); err != nil || n != int64(len(dropped)) {
		t.Fatalf("before the reset %d of %v exist (%v), want all", n, dropped, err)
	}
	// Another job's keys stay.
	other := openStore(t, b, fmt.Sprintf("reset-other-%d", jobSeq.Add(1)))
	if _, err := other.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	commitBatch(t, other, 1, []string{"a"}, "a")

	if err := s.Release(ctx); err != nil {
		t.Fatal(err)
	}
	cmd := openStore(t, b, job)
	if _, _, _, err := cmd.Seize(ctx, false); err != nil {
		t.Fatal(err)
	}
	start := microbatch.Plan{ID: 7, Time: time.Unix(7, 0).UTC(), Ranges: []microbatch.Range{{Topic: "logs", From: 40, Until: 40}}}
	if err := cmd.Reset(ctx, start); err != nil {
		t.Fatal(err)
	}
	for _, key := range dropped[:4] {
		if n, err := b.rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
			t.Errorf("after the reset %s exists (%v)", key, err)
		}
	}
	if err := cmd.Release(ctx); err != nil {
		t.Fatal(err)
	}
	next := openStore(t, b, job)
	m, err := next.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Committed != 7 || m.Planned != 7 || m.Prepared != 0 || m.Base != 7 || m.Graph != nil {
		t.Fatalf("after a reset at 7: %+v, want batch 7 committed, the base, no graph", m)
	}
	plans, err := next.Plans(ctx, 1, 7)
	if err != nil || len(plans) != 1 || plans[0].ID != 7 || !slices.Equal(plans[0].Ranges, start.Ranges) {
		t.Fatalf("plans after the reset: %+v, %v; want the start plan alone", plans, err)
	}
	if got := stateOf(t, next, "a"); len(got) != 0 {
		t.Errorf("state a after the reset: %q", got)
	}
	commitBatch(t, next, 8, []string{"a"}, "a")
	if got, want := stateOf(t, next, "a"), map[string]string{"d8": "a8"}; !maps.Equal(got, want) {
		t.Errorf("state a after batch 8: %q, want %q", got, want)
	}
	if got, want := stateOf(t, other, "a"), map[string]string{"d1": "a1"}; !maps.Equal(got, want) {
		t.Errorf("another job's state after the reset: %q, want %q", got, want)
	}
}

func TestDropState(t *testing.T) { eachRedis(t, testDropState) }

func testDropState(t *testing.T, b backend) {
	ctx := context.Background()
	job := fmt.Sprintf("drop-%d", jobSeq.Add(1))
	s := openStore(t, b, job)
	if _, err := s.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	commitBatch(t, s, 1, []string{"a", "b"}, "a", "b")
	if err := s.Release(ctx); err != nil {
		t.Fatal(err)
	}
	cmd := openStore(t, b, job)
	if _, _, _, err := cmd.Seize(ctx, false); err != nil {
		t.Fatal(err)
	}
	err := cmd.DropState(ctx, []string{"zzz"})
	if !errors.Is(err, microbatch.ErrPermanent) || !strings.Contains(err.Error(), `no stateful operator "zzz" (it has: a, b)`) {
		t.Fatalf("dropping an operator the checkpoint lacks: %v, want a permanent error naming the ones it has", err)
	}
	if err := cmd.DropState(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if got := stateOf(t, cmd, "a"); len(got) != 0 {
		t.Errorf("state a after dropping it: %q", got)
	}
	if got, want := stateOf(t, cmd, "b"), map[string]string{"d1": "b1"}; !maps.Equal(got, want) {
		t.Errorf("state b after dropping a: %q, want %q", got, want)
	}
	m, err := cmd.Progress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Committed != 1 || string(m.Graph) != string(graph(t, "b")) {
		t.Errorf("after dropping a: committed %d, graph %s; want batch 1 and a graph of b alone", m.Committed, m.Graph)
	}
}
