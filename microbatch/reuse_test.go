package microbatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestTryMap checks that accepted results keep their order, with the
// rejected elements, and their errors, in the second stream; at parallelism 1
// and 4 (batches above parallelMin are split into chunks, whose gaps must
// close).
func TestTryMap(t *testing.T) {
	errOdd := errors.New("odd")
	for _, parallelism := range []int{1, 4} {
		for _, n := range []int{0, 5, parallelMin + 3, 3 * parallelMin} {
			batch := make([]int, n)
			for i := range batch {
				batch[i] = i
			}
			// Every third element fails, and the whole last chunk does.
			fails := func(v int) bool { return v%3 == 0 || (v >= n-n/4 && v < n) }
			j := newTestJob(2, WithParallelism(parallelism))
			ok, failed := TryMap(QueueStream(j, [][]int{batch, {1, 3}}), func(v int) (string, error) {
				if fails(v) {
					return "", fmt.Errorf("%d: %w", v, errOdd)
				}
				return strconv.Itoa(v), nil
			})
			var got [][]string
			var gotFailed [][]Failure[int]
			ok.ForeachBatch(func(_ context.Context, _ BatchInfo, b []string) error {
				got = append(got, slices.Clone(b))
				return nil
			})
			failed.ForeachBatch(func(_ context.Context, _ BatchInfo, b []Failure[int]) error {
				gotFailed = append(gotFailed, slices.Clone(b))
				return nil
			})
			if err := j.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			var want []string
			var wantFailed []int
			for _, v := range batch {
				if fails(v) {
					wantFailed = append(wantFailed, v)
				} else {
					want = append(want, strconv.Itoa(v))
				}
			}
			name := fmt.Sprintf("parallelism %d, %d elements", parallelism, n)
			if len(got) != 2 || !slices.Equal(got[0], want) || !slices.Equal(got[1], []string{"1"}) {
				t.Errorf("%s: accepted %d and %v, want %d and [1]", name, len(got[0]), got[1:], len(want))
			}
			if len(gotFailed) != 2 || len(gotFailed[0]) != len(wantFailed) || len(gotFailed[1]) != 1 || gotFailed[1][0].Elem != 3 {
				t.Fatalf("%s: rejected %d, want %d", name, len(gotFailed[0]), len(wantFailed))
			}
			for i, f := range gotFailed[0] {
				if f.Elem != wantFailed[i] || !errors.Is(f.Err, errOdd) || f.Err.Error() != fmt.Sprintf("%d: odd", f.Elem) {
					t.Fatalf("%s: failure %d = %v, %v; want %d", name, i, f.Elem, f.Err, wantFailed[i])
				}
			}
		}
	}
}

// TestOutputMemoryIsReusedOnlyWhenNothingKeepsIt runs a graph in which some
// outputs are kept past their batch (by windows, by ForeachBatch, through a
// Transform that passes its input on) and others are not. Kept batches must
// stay intact while later batches run; outputs nothing keeps must have their
// memory reused.
func TestOutputMemoryIsReusedOnlyWhenNothingKeepsIt(t *testing.T) {
	const s = time.Second
	j := newTestJob(4)
	in := ints(j, []int{1, 2}, []int{3, 4}, []int{5, 6}, []int{7, 8})
	tens := Map(in, func(v int) int { return v * 10 })              // kept: a window buffers it
	hundreds := Map(in, func(v int) int { return v * 100 })         // kept: through a Transform
	thousands := Map(in, func(v int) int { return v * 1000 })       // not kept
	doubled := Map(thousands, func(v int) int { return v * 2 })     // kept by ForeachBatch
	passed := Transform(hundreds, func(b []int) []int { return b }) // aliases its input
	window := tens.Window(2*s, s)                                   // keeps two batches of tens
	var kept, keptPassed, keptWindows [][]int
	doubled.ForeachBatch(func(_ context.Context, _ BatchInfo, b []int) error { kept = append(kept, b); return nil })
	passed.ForeachBatch(func(_ context.Context, _ BatchInfo, b []int) error { keptPassed = append(keptPassed, b); return nil })
	window.ForeachBatch(func(_ context.Context, _ BatchInfo, b []int) error { keptWindows = append(keptWindows, b); return nil })
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := func(scale int, windowed bool) [][]int {
		var out [][]int
		for b := range 4 {
			var batch []int
			if windowed && b > 0 {
				batch = append(batch, scale*(2*b-1), scale*(2*b))
			}
			out = append(out, append(batch, scale*(2*b+1), scale*(2*b+2)))
		}
		return out
	}
	for _, c := range []struct {
		name      string
		got, want [][]int
	}{
		{"ForeachBatch of a map of an unkept map", kept, want(2000, false)},
		{"a Transform passing its input on", keptPassed, want(100, false)},
		{"a window", keptWindows, want(10, true)},
	} {
		if !slices.EqualFunc(c.got, c.want, slices.Equal) {
			t.Errorf("%s: kept batches %v, want %v", c.name, c.got, c.want)
		}
	}
	if invariants {
		return // memory is poisoned there, not reused
	}
	for _, c := range []struct {
		name   string
		s      *Stream[int]
		reused bool
	}{{"input", in, true}, {"unkept map", thousands, true}, {"windowed map", tens, false},
		{"map under a transform", hundreds, false}, {"map under ForeachBatch", doubled, false}} {
		if reused := c.s.spare != nil; reused != c.reused {
			t.Errorf("%s: memory reused = %v, want %v", c.name, reused, c.reused)
		}
	}
}

// TestJoinWithStateLooksKeysUp joins a stream with running totals, once with
// the totals read by nothing else (the join looks keys up in the state and
// the totals are never listed) and once also printed: the joins must agree,
// and only the printed totals may be listed.
func TestJoinWithStateLooksKeysUp(t *testing.T) {
	batches := []string{"a=1 b=2 c=3", "b=1 d=5", "", "a=2 e=1 a=1 d=1"}
	run := func(alsoRead bool) (joined, left []string, listed bool) {
		j := newTestJob(uint64(len(batches)))
		in := pairs(j, batches...)
		totals := UpdateStateByKey(in, func(vs []int, total int, _ bool) (int, bool) {
			for _, v := range vs {
				total += v
			}
			return total, total < 6 // keys leave the state at 6
		})
		probe := pairs(j, "c=0 a=0 x=0", "d=0", "a=0", "a=0 d=0 b=0 e=0")
		collect(Join(probe, totals), &joined)
		collect(LeftOuterJoin(probe, totals), &left)
		if alsoRead {
			var printed []string
			collect(totals, &printed)
		}
		var sawList bool
		totals.compute = wrapCompute(totals.compute, func(out []Pair[string, int]) { sawList = sawList || out != nil })
		if err := j.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return joined, left, sawList
	}
	joined, left, listed := run(false)
	joinedRead, leftRead, listedRead := run(true)
	if !slices.Equal(joined, joinedRead) || !slices.Equal(left, leftRead) {
		t.Errorf("join by lookup %v / %v differs from join of listed totals %v / %v", joined, left, joinedRead, leftRead)
	}
	want := []string{"1:[('c', (0, 3)), ('a', (0, 1))]", "2:[('d', (0, 5))]", "3:[('a', (0, 1))]", "4:[('a', (0, 4)), ('b', (0, 3)), ('e', (0, 1))]"}
	if !slices.Equal(joined, want) {
		t.Errorf("join = %v, want %v", joined, want)
	}
	if wantLeft := "4:[('a', (0, 4)), ('d', (0, None)), ('b', (0, 3)), ('e', (0, 1))]"; left[3] != wantLeft {
		t.Errorf("left outer join of batch 4 = %v, want %v (d left the state)", left[3], wantLeft)
	}
	if listed || !listedRead {
		t.Errorf("totals listed: %v when only joined, %v when also printed; want false, true", listed, listedRead)
	}
}

func wrapCompute[T any](compute func(*batchRun) ([]T, bool), saw func([]T)) func(*batchRun) ([]T, bool) {
	return func(r *batchRun) ([]T, bool) {
		out, ok := compute(r)
		saw(out)
		return out, ok
	}
}
