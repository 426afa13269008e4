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
// batch n+ahead to compute (up to the last batch), so that a job computing
// while it commits shows it whatever the machine's speed.
type loggingStore struct {
	*MemoryStore
	log   *eventLog
	last  uint64
	ahead uint64
}

func (s loggingStore) RecordPlan(ctx context.Context, plans ...Plan) error {
	for _, p := range plans {
		s.log.add("plan %d", p.ID)
	}
	return s.MemoryStore.RecordPlan(ctx, plans...)
}

func (s loggingStore) Prepare(ctx context.Context, batch uint64, deltas []Delta) error {
	s.log.add("prepare %d", batch)
	return s.MemoryStore.Prepare(ctx, batch, deltas)
}

func (s loggingStore) Commit(ctx context.Context, c Checkpoint) error {
	if c.Batch+s.ahead <= s.last {
		s.log.waitFor(fmt.Sprintf("compute %d", c.Batch+s.ahead))
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
	return s.WriteBatches(ctx, []BatchInfo{b}, [][]Message{msgs})
}

func (s loggingSink) WriteBatches(ctx context.Context, batches []BatchInfo, msgs [][]Message) error {
	for _, b := range batches {
		s.log.add("write %d", b.ID)
	}
	return s.MemorySink.WriteBatches(ctx, batches, msgs)
}

// TestBatchesComputeWhileTheOneBeforeCommits checks the order the pipelined
// loop keeps, for a graph whose outputs only write to a sink (batches that
// wait for a commit then commit together) and for one with a ForeachBatch
// (batch by batch): every batch of a group has its plan recorded before
// the group's state is prepared, its outputs written after that and
// before the group's checkpoint commits, and all of it only after the
// group before committed; while a group commits, the next batch computes.
func TestBatchesComputeWhileTheOneBeforeCommits(t *testing.T) {
	const batches = 9
	for _, test := range []struct {
		name      string
		foreach   bool
		wantGroup bool
	}{
		{"writes only: batches group", false, true},
		{"with ForeachBatch: batch by batch", true, false},
	} {
		t.Run(test.name, func(t *testing.T) {
			log := &eventLog{}
			// A commit that waits for the second batch after it to compute
			// keeps the batch between waiting, if the loop groups: then
			// groups form whatever the machine's speed. The barrier of a
			// ForeachBatch waits for the commit before a batch's outputs
			// run, so there the commit waits for the next batch only.
			ahead := uint64(2)
			if test.foreach {
				ahead = 1
			}
			store := loggingStore{NewMemoryStore(), log, batches, ahead}
			sink := loggingSink{NewMemorySink(), log}
			var stats []BatchStats
			j := NewJob(time.Second, WithClock(NewVirtualClock(epoch)), WithBatchLimit(batches),
				WithListener(func(b BatchStats) { stats = append(stats, b) }))
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
			if test.foreach {
				computed.ForeachBatch(func(context.Context, BatchInfo, []Pair[string, int]) error { return nil })
			}
			runJob(t, j)

			// The groups, from the commits: a commit names a group's last batch.
			var groups [][2]int
			first := 1
			for n := 1; n <= batches; n++ {
				if log.at(fmt.Sprintf("commit %d", n)) >= 0 {
					groups = append(groups, [2]int{first, n})
					first = n + 1
				}
			}
			if first != batches+1 {
				t.Fatalf("batches %d-%d never committed: %v", first, batches, log.events)
			}
			overlapped, grouped := 0, false
			for gi, g := range groups {
				f, m := g[0], g[1]
				grouped = grouped || m > f
				prepare, commit := fmt.Sprintf("prepare %d", m), fmt.Sprintf("commit %d", m)
				for n := f; n <= m; n++ {
					order := []string{fmt.Sprintf("compute %d", n), fmt.Sprintf("plan %d", n), prepare, fmt.Sprintf("write %d", n), commit}
					if gi > 0 {
						order[0] = fmt.Sprintf("commit %d", f-1)
					}
					for i := 1; i < len(order); i++ {
						a, b := log.at(order[i-1]), log.at(order[i])
						if a < 0 || b < 0 || a > b {
							t.Fatalf("batch %d of group %d-%d: %q (at %d) not before %q (at %d): %v", n, f, m, order[i-1], a, order[i], b, log.events)
						}
					}
				}
				if gi > 0 && log.at(fmt.Sprintf("compute %d", f)) < log.at(fmt.Sprintf("commit %d", f-1)) {
					overlapped++
				}
			}
			if overlapped == 0 {
				t.Errorf("no batch computed while the one before committed: %v", log.events)
			}
			if grouped != test.wantGroup {
				t.Errorf("groups %v, want batches grouped: %v: %v", groups, test.wantGroup, log.events)
			}
			if len(stats) != batches {
				t.Fatalf("%d batches reported, want %d", len(stats), batches)
			}
			for i, st := range stats {
				g := groups[slices.IndexFunc(groups, func(g [2]int) bool { return g[1] >= i+1 })]
				if st.ID != uint64(i+1) || st.Group != g[1]-g[0]+1 || st.LastInGroup != (i+1 == g[1]) {
					t.Errorf("reported batch %d of %d in a group of %d (last: %v), want batch %d in group %v", st.ID, i+1, st.Group, st.LastInGroup, i+1, g)
				}
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
		})
	}
}
