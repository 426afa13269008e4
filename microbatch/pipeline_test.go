package microbatch

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// eventLog records, in order, what a job does to its Store and sink, and
// when its operators compute a batch.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf(format, args...))
}

func (l *eventLog) at(event string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Index(l.events, event)
}

// waitFor waits until event is logged, for up to a few seconds: a job
// that does not compute ahead never logs it while the caller waits.
func (l *eventLog) waitFor(event string) {
	for deadline := time.Now().Add(3 * time.Second); l.at(event) < 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// loggingStore logs the job's Store calls. Its commit of batch n waits for
// batch n+1 to compute (up to the last batch), so that a job computing
// while it commits shows it whatever the machine's speed.
type loggingStore struct {
	*MemoryStore
	log  *eventLog
	last uint64
}

func (s loggingStore) RecordPlan(ctx context.Context, p Plan) error {
	s.log.add("plan %d", p.ID)
	return s.MemoryStore.RecordPlan(ctx, p)
}

func (s loggingStore) Prepare(ctx context.Context, batch uint64, deltas []Delta) error {
	s.log.add("prepare %d", batch)
	return s.MemoryStore.Prepare(ctx, batch, deltas)
}

func (s loggingStore) Commit(ctx context.Context, c Checkpoint) error {
	if c.Batch < s.last {
		s.log.waitFor(fmt.Sprintf("compute %d", c.Batch+1))
	}
	err := s.MemoryStore.Commit(ctx, c)
	s.log.add("commit %d", c.Batch)
	return err
}

type loggingSink struct {
	*MemorySink
	log *eventLog
}

func (s loggingSink) WriteBatch(ctx context.Context, b BatchInfo, msgs []Message) error {
	s.log.add("write %d", b.ID)
	return s.MemorySink.WriteBatch(ctx, b, msgs)
}

// TestBatchesComputeWhileTheOneBeforeCommits checks the order the pipelined
// loop keeps: a batch's plan is recorded, its state prepared, its outputs
// written and its checkpoint committed in that order, and only after the
// batch before committed; while the batch before commits, the next one
// computes.
func TestBatchesComputeWhileTheOneBeforeCommits(t *testing.T) {
	const batches = 8
	log := &eventLog{}
	store := loggingStore{NewMemoryStore(), log, batches}
	sink := loggingSink{NewMemorySink(), log}
	j := NewJob(time.Second, WithClock(NewVirtualClock(epoch)), WithBatchLimit(batches))
	j.Checkpoint(store)
	var q [][]Pair[string, int]
	for i := range batches {
		q = append(q, []Pair[string, int]{KV("a", i), KV("b", 1)})
	}
	totals := UpdateStateByKey(QueueStream(j, q), func(vs []int, s int, _ bool) (int, bool) {
		for _, v := range vs {
			s += v
		}
		return s, true
	})
	computed := TransformTime(totals, func(bt time.Time, b []Pair[string, int]) []Pair[string, int] {
		log.add("compute %d", bt.Sub(epoch)/time.Second)
		return b
	})
	Write(computed, sink, func(_ BatchInfo, p Pair[string, int]) Message {
		return Message{Key: []byte(p.Key), Value: fmt.Append(nil, p.Value)}
	})
	runJob(t, j)

	overlapped := 0
	for n := 1; n <= batches; n++ {
		order := []string{fmt.Sprintf("compute %d", n), fmt.Sprintf("plan %d", n), fmt.Sprintf("prepare %d", n),
			fmt.Sprintf("write %d", n), fmt.Sprintf("commit %d", n)}
		if n > 1 {
			order = append([]string{fmt.Sprintf("commit %d", n-1)}, order[1:]...)
		}
		for i := 1; i < len(order); i++ {
			a, b := log.at(order[i-1]), log.at(order[i])
			if a < 0 || b < 0 || a > b {
				t.Fatalf("batch %d: %q (at %d) not before %q (at %d): %v", n, order[i-1], a, order[i], b, log.events)
			}
		}
		if n > 1 && log.at(fmt.Sprintf("compute %d", n)) < log.at(fmt.Sprintf("commit %d", n-1)) {
			overlapped++
		}
	}
	if overlapped == 0 {
		t.Errorf("no batch computed while the one before committed: %v", log.events)
	}
	var got []string
	for _, b := range sink.Batches() {
		for _, m := range sink.Messages(b.ID) {
			got = append(got, string(m.Key)+"="+string(m.Value))
		}
	}
	want := []string{}
	a := 0
	for i := range batches {
		a += i
		want = append(want, fmt.Sprintf("a=%d", a), fmt.Sprintf("b=%d", i+1))
	}
	if !slices.Equal(got, want) {
		t.Errorf("written %v, want %v", got, want)
	}
}
