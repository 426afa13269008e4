package microbatch

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestViewStateAndStats checks lookups and state statistics of both kinds
// of keyed state against counts made here, with the window in both its
// forms: incremental (a table) and recomputed at every slide (its result).
func TestViewStateAndStats(t *testing.T) {
	for _, incremental := range []bool{false, true} {
		t.Run(fmt.Sprintf("incremental window %v", incremental), func(t *testing.T) { testViewStateAndStats(t, incremental) })
	}
}

func testViewStateAndStats(t *testing.T, incremental bool) {
	batches := [][]string{{"a", "b", "a"}, {"a", "c"}, {"c"}}
	j := NewJob(time.Second, WithClock(NewVirtualClock(epoch)), WithBatchLimit(uint64(len(batches))))
	j.incrementalWindows = incremental
	j.Checkpoint(NewMemoryStore())
	ones := Map(QueueStream(j, batches), func(s string) Pair[string, int64] { return KV(s, int64(1)) })
	totals := UpdateStateByKey(ones, func(vs []int64, s int64, _ bool) (int64, bool) {
		for _, v := range vs {
			s += v
		}
		return s, true
	})
	window := ReduceByKeyAndWindow(ones, addInt64, subInt64, 2*time.Second, time.Second, func(p Pair[string, int64]) bool { return p.Value > 0 })
	totals.Pprint(10)
	window.Pprint(10)
	if _, err := ViewState(Map(totals, func(p Pair[string, int64]) Pair[string, int64] { return p })); err == nil {
		t.Error("ViewState of a stateless stream: no error")
	}
	tv, err := ViewState(totals)
	if err != nil {
		t.Fatal(err)
	}
	wv, err := ViewState(window)
	if err != nil {
		t.Fatal(err)
	}
	j.stdout = discardWriter{}
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		view      *StateView[string, int64]
		key       string
		want      int64
		wantFound bool
	}{
		{tv, "a", 3, true}, {tv, "b", 1, true}, {tv, "c", 2, true}, {tv, "z", 0, false},
		{wv, "a", 1, true}, {wv, "c", 2, true}, {wv, "b", 0, false},
	} {
		got, ok, batch := test.view.Get(test.key)
		if got != test.want || ok != test.wantFound || batch != 3 {
			t.Errorf("Get(%q) = %d, %v, batch %d; want %d, %v, batch 3", test.key, got, ok, batch, test.want, test.wantFound)
		}
	}
	stats := j.StateStats()
	if len(stats) != 2 || stats[0].Keys != 3 || stats[1].Keys != 2 || tv.Len() != 3 || wv.Len() != 2 {
		t.Fatalf("StateStats = %+v, lens %d %d; want 3 and 2 keys", stats, tv.Len(), wv.Len())
	}
	for _, s := range stats {
		if s.Bytes <= 0 || s.Batch != 3 || s.Operator == "" {
			t.Errorf("StateStats entry %+v: want bytes > 0, batch 3 and a name", s)
		}
	}
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
