package microbatch

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// emitted is one batch a stream emitted.
type emitted[T any] struct {
	id    uint64
	batch []T
}

// record appends every batch of s to out.
func record[T any](s *Stream[T], out *[]emitted[T]) {
	s.ForeachBatch(func(_ context.Context, b BatchInfo, batch []T) error {
		*out = append(*out, emitted[T]{b.ID, slices.Clone(batch)})
		return nil
	})
}

// TestWindowsAgainstModel compares the windowed operators with a direct model
// on random input: a window at batch e (a multiple of the slide) holds the
// batches in (e − length, e]. The incremental forms (with an inverse) must
// give the same values as recomputing every window, apart from the keys they
// keep at zero. With a filter, windows of up to recomputedSlides slides are
// reduced from their batches (listing keys in the order of their first
// occurrence in the window), longer ones incrementally; both forms are
// checked at every shape.
func TestWindowsAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, shape := range []struct{ length, slide uint64 }{
		{1, 1}, {3, 1}, {3, 3}, {4, 2}, {6, 2}, {6, 3}, {2, 3}, {1, 4}, {5, 5}, {7, 3}, {5, 1}, {9, 2},
	} {
		for round := range 4 {
			const batches = 14
			input := randomBatches(rng, batches-3) // the last batches are empty
			t.Run(fmt.Sprintf("length %d slide %d round %d", shape.length, shape.slide, round), func(t *testing.T) {
				length, slide := time.Duration(shape.length)*time.Second, time.Duration(shape.slide)*time.Second
				j := newTestJob(batches)
				s := QueueStream(j, input)
				var window, plain, inverse, filtered, filteredIncremental []emitted[Pair[string, int]]
				var reduced, reducedInv []emitted[int]
				record(s.Window(length, slide), &window)
				record(ReduceByKeyAndWindow(s, add, nil, length, slide, nil), &plain)
				record(ReduceByKeyAndWindow(s, add, sub, length, slide, nil), &inverse)
				nonZero := func(p Pair[string, int]) bool { return p.Value != 0 }
				auto := ReduceByKeyAndWindow(s, add, sub, length, slide, nonZero)
				record(auto, &filtered)
				j.incrementalWindows = true
				incremental := ReduceByKeyAndWindow(s, add, sub, length, slide, nonZero)
				record(incremental, &filteredIncremental)
				j.incrementalWindows = false
				recomputed := shape.length <= recomputedSlides*shape.slide
				if form := func(w *Stream[Pair[string, int]]) bool { return w.state.(*table[string, int]).recomputed != nil }; form(auto) != recomputed || form(incremental) {
					t.Fatalf("recomputed forms: %v and %v, want %v and false", form(auto), form(incremental), recomputed)
				}
				values := Map(s, func(p Pair[string, int]) int { return p.Value })
				record(ReduceByWindow(values, add, nil, length, slide), &reduced)
				record(ReduceByWindow(values, add, sub, length, slide), &reducedInv)
				runJob(t, j)

				var emissions []uint64
				for e := shape.slide; e <= batches; e += shape.slide {
					emissions = append(emissions, e)
				}
				for _, got := range [][]uint64{ids(window), ids(plain), ids(inverse), ids(filtered), ids(filteredIncremental), ids(reduced), ids(reducedInv)} {
					if !slices.Equal(got, emissions) {
						t.Fatalf("emitted at batches %v, want %v", got, emissions)
					}
				}
				seen := map[string]bool{} // keys the inverse forms have state for
				for i, e := range emissions {
					var w []Pair[string, int]
					for id := e - min(e, shape.length) + 1; id <= e; id++ {
						if id <= uint64(len(input)) {
							w = append(w, input[id-1]...)
						}
					}
					if got := window[i].batch; !slices.Equal(got, w) {
						t.Errorf("window at %d = %v, want %v", e, got, w)
					}
					sums := sumInOrder(w)
					if got := plain[i].batch; !slices.Equal(got, sums) {
						t.Errorf("reduceByKeyAndWindow at %d = %v, want %v", e, got, sums)
					}
					// The batches entering at successive slides cover every
					// batch so far, even those a window shorter than its
					// slide skips: their keys stay at zero.
					for id := uint64(1); id <= min(e, uint64(len(input))); id++ {
						for _, p := range input[id-1] {
							seen[p.Key] = true
						}
					}
					want := map[string]int{}
					for k := range seen {
						want[k] = 0
					}
					total := 0
					for _, p := range sums {
						want[p.Key] = p.Value
						total += p.Value
					}
					if got := asMap(t, inverse[i].batch); !maps.Equal(got, want) {
						t.Errorf("reduceByKeyAndWindow with inverse at %d = %v, want %v", e, got, want)
					}
					if got := asMap(t, filteredIncremental[i].batch); !maps.Equal(got, asMap(t, sums)) {
						t.Errorf("reduceByKeyAndWindow with inverse and filter, incremental, at %d = %v, want %v", e, got, sums)
					}
					// Values are 1–3: no sum is zero, and the recomputed
					// form lists the window's keys as the plain one does.
					if got := filtered[i].batch; recomputed && !slices.Equal(got, sums) || !recomputed && !maps.Equal(asMap(t, got), asMap(t, sums)) {
						t.Errorf("reduceByKeyAndWindow with inverse and filter (recomputed: %v) at %d = %v, want %v", recomputed, e, got, sums)
					}
					var wantReduced []int
					if len(w) > 0 {
						wantReduced = []int{total}
					}
					if got := reduced[i].batch; !slices.Equal(got, wantReduced) {
						t.Errorf("reduceByWindow at %d = %v, want %v", e, got, wantReduced)
					}
					if len(seen) > 0 { // the inverse form keeps its total at 0
						wantReduced = []int{total}
					}
					if got := reducedInv[i].batch; !slices.Equal(got, wantReduced) {
						t.Errorf("reduceByWindow with inverse at %d = %v, want %v", e, got, wantReduced)
					}
				}
			})
		}
	}
}

func ids[T any](batches []emitted[T]) []uint64 {
	var out []uint64
	for _, b := range batches {
		out = append(out, b.id)
	}
	return out
}

// randomBatches returns n batches of 0–6 pairs over the keys a–e with values
// 1–3; about one batch in four is empty.
func randomBatches(rng *rand.Rand, n int) [][]Pair[string, int] {
	out := make([][]Pair[string, int], n)
	for i := range out {
		if rng.IntN(4) == 0 {
			continue
		}
		for range rng.IntN(7) {
			out[i] = append(out[i], KV(string(rune('a'+rng.IntN(5))), 1+rng.IntN(3)))
		}
	}
	return out
}

// sumInOrder sums values per key, keys in first-occurrence order.
func sumInOrder(in []Pair[string, int]) []Pair[string, int] {
	idx := map[string]int{}
	var out []Pair[string, int]
	for _, p := range in {
		i, ok := idx[p.Key]
		if !ok {
			i = len(out)
			idx[p.Key] = i
			out = append(out, KV(p.Key, 0))
		}
		out[i].Value += p.Value
	}
	return out
}

// asMap converts a batch of pairs to a map, failing on a duplicate key.
func asMap(t *testing.T, batch []Pair[string, int]) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, p := range batch {
		if _, dup := m[p.Key]; dup {
			t.Errorf("key %s twice in %v", p.Key, batch)
		}
		m[p.Key] = p.Value
	}
	return m
}
