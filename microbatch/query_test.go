package microbatch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
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

// TestRecomputedViewShowsTheLastResult looks up a recomputed window that
// slides every 3 batches while the job runs, against the window computed
// here: between slides the view shows the last slide's result although
// the window's batches moved on; keys whose values cancel out are not
// found (the filter); integer and string keys (bucket order and first
// occurrence) alike.
func TestRecomputedViewShowsTheLastResult(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	batches := make([][]Pair[int, int64], 20)
	for b := range batches {
		for range rng.IntN(40) {
			batches[b] = append(batches[b], KV(rng.IntN(12)*1000003, int64(rng.IntN(3)-1)))
		}
	}
	// want is the window's value of every key as of batch id's result:
	// the last slide's (ids 3, 6, …), over the 6 batches up to it.
	want := func(id uint64) map[int]int64 {
		slide := id - id%3
		sums, seen := map[int]int64{}, map[int]bool{}
		for b := max(slide, 6) - 6; b < slide; b++ {
			for _, kv := range batches[b] {
				sums[kv.Key] += kv.Value
				seen[kv.Key] = true
			}
		}
		for k := range seen {
			if sums[k] <= 0 {
				delete(sums, k) // the filter's
			}
		}
		return sums
	}
	positive := func(p Pair[int, int64]) bool { return p.Value > 0 }
	positiveText := func(p Pair[string, int64]) bool { return p.Value > 0 }
	var check func()
	j := NewJob(time.Second, WithClock(NewVirtualClock(epoch)), WithBatchLimit(uint64(len(batches))),
		WithListener(func(BatchStats) { check() }))
	j.Checkpoint(NewMemoryStore())
	in := QueueStream(j, batches)
	ints := ReduceByKeyAndWindow(in, addInt64, subInt64, 6*time.Second, 3*time.Second, positive)
	texts := ReduceByKeyAndWindow(Map(in, func(p Pair[int, int64]) Pair[string, int64] { return KV(strconv.Itoa(p.Key), p.Value) }),
		addInt64, subInt64, 6*time.Second, 3*time.Second, positiveText)
	ints.Count().Pprint(1)
	texts.Count().Pprint(1)
	j.stdout = discardWriter{}
	iv, err := ViewState(ints)
	if err != nil {
		t.Fatal(err)
	}
	tv, err := ViewState(texts)
	if err != nil {
		t.Fatal(err)
	}
	check = func() {
		for k := range 12 {
			key := k * 1000003
			got, ok, id := iv.Get(key)
			gotText, okText, idText := tv.Get(strconv.Itoa(key))
			w, wok := want(id)[key]
			if got != w || ok != wok {
				t.Errorf("batch %d, key %d: %d, %v; want %d, %v", id, key, got, ok, w, wok)
			}
			if w, wok := want(idText)[key]; gotText != w || okText != wok {
				t.Errorf("batch %d, key %q: %d, %v; want %d, %v", idText, strconv.Itoa(key), gotText, okText, w, wok)
			}
		}
	}
	// Lookups while the job runs (the race detector watches them), and
	// after every batch.
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				check()
			}
		}
	})
	err = j.Run(context.Background())
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	check()
	if n := iv.Len(); n != len(want(uint64(len(batches)))) {
		t.Errorf("Len = %d, want %d", n, len(want(uint64(len(batches)))))
	}
}
