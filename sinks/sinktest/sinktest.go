// Package sinktest is the conformance suite every microbatch.TransactionalSink
// passes: the in-memory sink and the Kafka sink run the same tests.
package sinktest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/dstream-io/dstream/microbatch"
)

// Opener returns a new instance (a new process, as it were) of one job's
// sink; all instances of one Opener share the job's output.
type Opener func(t *testing.T) microbatch.TransactionalSink

// Run runs the suite. newJob returns an Opener for a fresh job.
func Run(t *testing.T, newJob func(t *testing.T) Opener) {
	for _, test := range []struct {
		name string
		run  func(t *testing.T, open Opener)
	}{
		{"MarkersDescribeEveryBatch", testMarkers},
		{"NewInstanceFindsCommittedBatches", testNewInstance},
		{"GroupsLeaveAMarkerPerBatch", testGroups},
	} {
		t.Run(test.name, func(t *testing.T) { test.run(t, newJob(t)) })
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

// Batch returns the batch info of batch id, with topic ids.
func Batch(id uint64) microbatch.BatchInfo {
	return microbatch.BatchInfo{Graph: "0123456789abcdef", Base: 0, Plan: microbatch.Plan{ID: id, Time: t0.Add(time.Duration(id) * time.Second),
		Ranges: []microbatch.Range{
			{Topic: "logs", Partition: 0, From: int64(id * 10), Until: int64(id*10 + 10), TopicID: "00112233445566778899aabbccddeeff"},
			{Topic: "logs", Partition: 1, From: int64(id * 3), Until: int64(id*3 + 3), TopicID: "00112233445566778899aabbccddeeff"},
		}}}
}

func messages(n int) []microbatch.Message {
	var out []microbatch.Message
	for i := range n {
		out = append(out, microbatch.Message{Key: []byte{byte('a' + i)}, Value: []byte("v")})
	}
	return out
}

func equal(a, b microbatch.BatchInfo) bool {
	return a.ID == b.ID && a.Time.Equal(b.Time) && slices.Equal(a.Ranges, b.Ranges) && a.Graph == b.Graph && a.Base == b.Base
}

func check(t *testing.T, s microbatch.TransactionalSink, after uint64, want ...uint64) {
	t.Helper()
	got, err := s.Committed(context.Background(), after)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Committed(%d) = %d batches, want %v", after, len(got), want)
	}
	for i, id := range want {
		if !equal(got[i], Batch(id)) {
			t.Fatalf("Committed(%d)[%d] = %+v, want %+v", after, i, got[i], Batch(id))
		}
	}
}

// testMarkers writes batches with and without messages: each leaves its
// marker, which Committed gives back whole (plan, topic ids, graph).
func testMarkers(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	check(t, s, 0)
	for _, b := range []struct {
		id uint64
		n  int
	}{{1, 3}, {2, 0}, {3, 0}, {4, 2}} {
		if err := s.WriteBatch(ctx, Batch(b.id), messages(b.n)); err != nil {
			t.Fatalf("batch %d: %v", b.id, err)
		}
		check(t, s, b.id-1, b.id)
	}
	check(t, s, 0, 1, 2, 3, 4)
	check(t, s, 2, 3, 4)
	check(t, s, 4)
}

// testNewInstance checks that another instance of the job's sink finds the
// batches the first one committed, and continues after them.
func testNewInstance(t *testing.T, open Opener) {
	ctx := context.Background()
	first := open(t)
	for id := uint64(1); id <= 3; id++ {
		if err := first.WriteBatch(ctx, Batch(id), messages(1)); err != nil {
			t.Fatal(err)
		}
	}
	next := open(t)
	check(t, next, 1, 2, 3)
	if err := next.WriteBatch(ctx, Batch(4), nil); err != nil {
		t.Fatal(err)
	}
	check(t, next, 3, 4)
}

// testGroups writes groups of batches, each in one transaction: every batch
// of a group leaves its own marker, and the next group follows on.
func testGroups(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	if err := s.WriteBatches(ctx, []microbatch.BatchInfo{Batch(1), Batch(2), Batch(3)},
		[][]microbatch.Message{messages(2), nil, messages(1)}); err != nil {
		t.Fatal(err)
	}
	check(t, s, 0, 1, 2, 3)
	check(t, s, 1, 2, 3)
	next := open(t)
	check(t, next, 0, 1, 2, 3)
	if err := next.WriteBatches(ctx, []microbatch.BatchInfo{Batch(4)}, [][]microbatch.Message{nil}); err != nil {
		t.Fatal(err)
	}
	if err := next.WriteBatches(ctx, []microbatch.BatchInfo{Batch(5), Batch(6)}, [][]microbatch.Message{messages(1), messages(3)}); err != nil {
		t.Fatal(err)
	}
	check(t, next, 3, 4, 5, 6)
}
