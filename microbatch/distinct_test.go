package microbatch

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReducedInputIsNotFoldedAgain checks the operators that skip folding a
// batch whose keys are already distinct (a reduced stream, filtered or
// passed through an exchange): each must give what it gives when the same
// pairs come from a stream not known to be distinct (a Map of them), and
// the fast path must be the one taken.
func TestReducedInputIsNotFoldedAgain(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var batches [][]Pair[string, int]
	for range 12 {
		var b []Pair[string, int]
		for range rng.IntN(400) {
			b = append(b, KV(string(rune('a'+rng.IntN(60))), 1+rng.IntN(9)))
		}
		batches = append(batches, b)
	}
	total := func(vs []int, s int, _ bool) (int, bool) {
		for _, v := range vs {
			s += v
		}
		return s, s%7 != 0 // removes some keys
	}
	type outputs struct{ reduced, totals, window, windowWhole, grouped []string }
	// sorted collects each batch's pairs in key order: the window computed
	// whole orders its keys as they come, the incremental one as its state
	// does.
	sorted := func(s *Stream[Pair[string, int]], out *[]string) {
		collect(Transform(s, func(b []Pair[string, int]) []Pair[string, int] {
			return slices.SortedFunc(slices.Values(b), func(x, y Pair[string, int]) int { return strings.Compare(x.Key, y.Key) })
		}), out)
	}
	run := func(distinct bool) outputs {
		j := newTestJob(uint64(len(batches)))
		var o outputs
		reduced := ReduceByKey(QueueStream(j, batches), add)
		in := ExchangeByKey(reduced.Filter(func(p Pair[string, int]) bool { return p.Value != 4 }), "x")
		if !distinct {
			in = Map(in, func(p Pair[string, int]) Pair[string, int] { return p })
		}
		again := ReduceByKey(in, add)
		collect(again, &o.reduced)
		collect(UpdateStateByKey(in, total), &o.totals)
		positive := func(p Pair[string, int]) bool { return p.Value > 0 }
		sorted(ReduceByKeyAndWindow(in, add, sub, 3*time.Second, time.Second, positive), &o.window)
		sorted(ReduceByKeyAndWindow(in, add, nil, 3*time.Second, time.Second, positive), &o.windowWhole)
		collect(GroupByKey(in), &o.grouped)
		sawDistinct := false
		in.ForeachBatch(func(_ context.Context, _ BatchInfo, _ []Pair[string, int]) error {
			sawDistinct = sawDistinct || in.distinct
			return nil
		})
		runJob(t, j)
		if sawDistinct != distinct {
			t.Fatalf("input known distinct: %v, want %v", sawDistinct, distinct)
		}
		return o
	}
	fast, slow := run(true), run(false)
	for _, c := range []struct {
		name       string
		fast, slow []string
	}{{"reduceByKey", fast.reduced, slow.reduced}, {"updateStateByKey", fast.totals, slow.totals},
		{"reduceByKeyAndWindow", fast.window, slow.window}, {"groupByKey", fast.grouped, slow.grouped},
		// The batch leaving the window is one reduced batch: subtracted
		// without a fold.
		{"reduceByKeyAndWindow with an inverse", fast.window, fast.windowWhole}} {
		if len(c.fast) != len(batches) || !slices.Equal(c.fast, c.slow) {
			t.Errorf("%s over distinct input:\n%v\nwant\n%v", c.name, c.fast, c.slow)
		}
	}
}
