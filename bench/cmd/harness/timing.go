package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dstream-io/dstream/microbatch"
)

// timings adds up the wall time the engine spends in each call to its
// Source, Store and Sink: where a batch's time goes besides computing.
type timings struct {
	mu sync.Mutex
	d  map[string]time.Duration
	n  map[string]int
}

func newTimings() *timings {
	return &timings{d: map[string]time.Duration{}, n: map[string]int{}}
}

func (t *timings) time(name string, start time.Time) {
	d := time.Since(start)
	t.mu.Lock()
	t.d[name] += d
	t.n[name]++
	t.mu.Unlock()
}

// callStat is the calls of one kind: how many, and their wall time in all.
type callStat struct {
	N       int     `json:"n"`
	Seconds float64 `json:"seconds"`
}

// meanMS is the mean wall time of a call, in milliseconds.
func (c callStat) meanMS() float64 {
	if c.N == 0 {
		return 0
	}
	return c.Seconds * 1000 / float64(c.N)
}

// stats returns the calls by name.
func (t *timings) stats() map[string]callStat {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]callStat, len(t.d))
	for k, d := range t.d {
		out[k] = callStat{N: t.n[k], Seconds: d.Seconds()}
	}
	return out
}

// summary lists the calls by total time, with their count and mean.
func (t *timings) summary(total time.Duration) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.d))
	for k := range t.d {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return t.d[names[i]] > t.d[names[j]] })
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %.0f%% (%d× %.1f ms)", k, 100*t.d[k].Seconds()/total.Seconds(), t.n[k],
			t.d[k].Seconds()*1000/float64(t.n[k])))
	}
	return strings.Join(parts, ", ")
}

type timedSource struct {
	microbatch.Source
	t *timings
}

func (s timedSource) Cut(ctx context.Context, after []microbatch.Range) ([]microbatch.Range, error) {
	defer s.t.time("source.Cut", time.Now())
	return s.Source.Cut(ctx, after)
}

func (s timedSource) Read(ctx context.Context, ranges []microbatch.Range, emit func(microbatch.Record)) error {
	defer s.t.time("source.Read", time.Now())
	return s.Source.Read(ctx, ranges, emit)
}

// AppendRecords keeps the Kafka source's chunked read, which the engine
// uses for Records inputs.
func (s timedSource) AppendRecords(ctx context.Context, ranges []microbatch.Range, dst []microbatch.Record) ([]microbatch.Record, error) {
	defer s.t.time("source.Read", time.Now())
	return s.Source.(microbatch.RecordAppender).AppendRecords(ctx, ranges, dst)
}

// timedSink keeps the sink transactional: the engine treats a
// TransactionalSink differently.
type timedSink struct {
	sink interface {
		microbatch.TransactionalSink
	}
	t *timings
}

func (s timedSink) WriteBatch(ctx context.Context, b microbatch.BatchInfo, msgs []microbatch.Message) error {
	return s.WriteBatches(ctx, []microbatch.BatchInfo{b}, [][]microbatch.Message{msgs})
}

func (s timedSink) WriteBatches(ctx context.Context, batches []microbatch.BatchInfo, msgs [][]microbatch.Message) error {
	defer s.t.time("sink.WriteBatches", time.Now())
	return s.sink.WriteBatches(ctx, batches, msgs)
}

func (s timedSink) Committed(ctx context.Context, after uint64) ([]microbatch.BatchInfo, error) {
	defer s.t.time("sink.Committed", time.Now())
	return s.sink.Committed(ctx, after)
}

type timedStore struct {
	microbatch.Store
	t *timings
}

func (s timedStore) RecordPlan(ctx context.Context, plans ...microbatch.Plan) error {
	defer s.t.time("store.RecordPlan", time.Now())
	return s.Store.RecordPlan(ctx, plans...)
}

func (s timedStore) Prepare(ctx context.Context, batch uint64, deltas []microbatch.Delta) error {
	defer s.t.time("store.Prepare", time.Now())
	return s.Store.Prepare(ctx, batch, deltas)
}

func (s timedStore) Commit(ctx context.Context, c microbatch.Checkpoint) error {
	defer s.t.time("store.Commit", time.Now())
	return s.Store.Commit(ctx, c)
}

func (s timedStore) Acquire(ctx context.Context) (microbatch.Meta, error) {
	defer s.t.time("store.Acquire", time.Now())
	return s.Store.Acquire(ctx)
}

func (s timedStore) Plans(ctx context.Context, from, to uint64) ([]microbatch.Plan, error) {
	defer s.t.time("store.Plans", time.Now())
	return s.Store.Plans(ctx, from, to)
}

func (s timedStore) LoadState(ctx context.Context, op string, fn func(microbatch.StatePart) error) error {
	defer s.t.time("store.LoadState", time.Now())
	return s.Store.LoadState(ctx, op, fn)
}

func (s timedStore) Renew(ctx context.Context) error {
	defer s.t.time("store.Renew", time.Now())
	return s.Store.Renew(ctx)
}
