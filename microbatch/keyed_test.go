package microbatch

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestFoldParallelIsSequential checks that the parallel fold gives exactly
// the sequential fold's result, keys in first-occurrence order, values folded
// in batch order, even for a merge that is neither commutative nor
// associative.
func TestFoldParallelIsSequential(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	merge := func(c []int, v int) []int { return append(c, v) }
	weird := func(c, v int) int { return (c*31 + v) % 1000003 }
	for _, distinct := range []int{1, 300, 40000} {
		in := make([]Pair[int, int], parallelMin+rng.IntN(parallelMin))
		for i := range in {
			in[i] = KV(rng.IntN(distinct), i)
		}
		seqGroups := newFolder[int](func(v int) []int { return []int{v} }, merge).foldSequential(in, nil)
		seqWeird := newFolder[int](func(v int) int { return v }, weird).foldSequential(in, nil)
		for _, p := range []int{2, 3, 8, 300} { // 300 exceeds maxShards
			if p > maxShards && distinct != 300 {
				continue
			}
			j := &Job{parallelism: p}
			groups := newFolder[int](func(v int) []int { return []int{v} }, merge)
			if got := groups.fold(j, in, nil); !slices.EqualFunc(got, seqGroups, func(a, b Pair[int, []int]) bool {
				return a.Key == b.Key && slices.Equal(a.Value, b.Value)
			}) {
				t.Fatalf("%d keys, parallelism %d: grouped values differ from the sequential fold", distinct, p)
			}
			f := newFolder[int](func(v int) int { return v }, weird)
			for round := range 2 { // the second round reuses the scratch space
				if got := f.fold(j, in, nil); !slices.Equal(got, seqWeird) {
					t.Fatalf("%d keys, parallelism %d, round %d: folded values differ from the sequential fold", distinct, p, round)
				}
			}
		}
	}
}

// TestFoldRadixIsSequential checks that the fold by hash buckets gives
// exactly the sequential fold's result, for any number of workers, with
// buckets of many more keys than expected (a table that grows) and of a
// key hot enough to fill a bucket alone.
func TestFoldRadixIsSequential(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	merge := func(c []int, v int) []int { return append(c, v) }
	weird := func(c, v int) int { return (c*31 + v) % 1000003 }
	for _, tc := range []struct {
		distinct, expected int // keys in the batch, keys the last batch had
	}{{1, radixMin}, {50, radixMin}, {40000, radixMin}, {40000, 40000}, {300000, radixMin}} {
		in := make([]Pair[int, int], 2*parallelMin+rng.IntN(parallelMin))
		for i := range in {
			in[i] = KV(rng.IntN(tc.distinct), i)
			if i%3 == 0 {
				in[i].Key = 7 // hot
			}
		}
		seqGroups := newFolder[int](func(v int) []int { return []int{v} }, merge).foldSequential(in, nil)
		seqWeird := newFolder[int](func(v int) int { return v }, weird).foldSequential(in, nil)
		for _, p := range []int{1, 2, 3, 8} {
			groups := newFolder[int](func(v int) []int { return []int{v} }, merge)
			groups.keys = tc.expected
			if got := groups.foldRadix(p, in, nil); !slices.EqualFunc(got, seqGroups, func(a, b Pair[int, []int]) bool {
				return a.Key == b.Key && slices.Equal(a.Value, b.Value)
			}) {
				t.Fatalf("%d keys (expected %d), %d workers: grouped values differ from the sequential fold", tc.distinct, tc.expected, p)
			}
			f := newFolder[int](func(v int) int { return v }, weird)
			for round := range 2 { // the second round reuses the scratch space
				f.keys = tc.expected
				if got := f.foldRadix(p, in, nil); !slices.Equal(got, seqWeird) {
					t.Fatalf("%d keys (expected %d), %d workers, round %d: folded values differ from the sequential fold", tc.distinct, tc.expected, p, round)
				}
			}
		}
	}
}

// foldPartsCases are batches folded together: of several sizes, one empty,
// sorted by different bits, with many keys or few.
var foldPartsCases = []foldPartsCase{
	{[]int{3 * parallelMin, 2 * parallelMin, 4 * parallelMin}, []int{6, 6, 6}, 100_000},
	{[]int{3 * parallelMin, 0, 4 * parallelMin, parallelMin}, []int{7, 3, 1, 5}, 50_000},
	{[]int{100, 200, 50}, []int{1, 2, 1}, 120},
	{[]int{2 * parallelMin}, []int{9}, 3},
}

type foldPartsCase struct {
	sizes, widths []int // of each batch, and the bits it is sorted by
	distinct      int   // keys, from the first one
}

// batches makes the case's batches of random keys from first on; each
// value is its element's index in all, the batches one after the other.
func (tc foldPartsCase) batches(rng *rand.Rand, first int) (ins [][]Pair[int, int], all []Pair[int, int]) {
	for _, n := range tc.sizes {
		in := make([]Pair[int, int], n)
		for i := range in {
			in[i] = KV(first+rng.IntN(tc.distinct), len(all)+i)
		}
		ins = append(ins, in)
		all = append(all, in...)
	}
	return ins, all
}

// TestFoldPartsIsSequential checks that folding batches sorted by bucket
// one by one (as a recomputed window's batches are, each as it enters)
// gives exactly the sequential fold of the batches one after the other:
// parts sorted with different numbers of bits (refined to the finest), an
// empty part, keys in several parts and repeated within one, any number of
// workers.
func TestFoldPartsIsSequential(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	weird := func(c, v int) int { return (c*31 + v) % 1000003 }
	odd := func(kv Pair[int, int]) bool { return kv.Value%2 == 1 }
	for _, tc := range foldPartsCases {
		ins, all := tc.batches(rng, 0)
		want := newFolder[int](func(v int) int { return v }, weird).foldSequential(all, nil)
		// The same batches in the other order: other first occurrences.
		var reversed []Pair[int, int]
		for k := len(ins) - 1; k >= 0; k-- {
			reversed = append(reversed, ins[k]...)
		}
		wantReversed := newFolder[int](func(v int) int { return v }, weird).foldSequential(reversed, nil)
		// One folder for every number of workers, fewer after more: the
		// workers a fold does not use keep an earlier fold's scratch.
		f := newFolder[int](func(v int) int { return v }, weird)
		parts := make([]*radixPart[int, int], len(ins))
		for k := range parts {
			parts[k] = &radixPart[int, int]{}
		}
		for _, p := range []int{3, 1, 2} {
			for k, in := range ins {
				f.sort(p, in, tc.widths[k], parts[k])
			}
			backward := slices.Clone(parts)
			slices.Reverse(backward)
			for _, c := range []struct {
				parts []*radixPart[int, int]
				want  []Pair[int, int]
			}{{parts, want}, {backward, wantReversed}, {parts, want}} {
				if got := f.foldParts(p, c.parts, nil); !slices.Equal(got, c.want) {
					t.Fatalf("parts of %v sorted by %v bits, %d workers: the fold differs from the sequential fold", tc.sizes, tc.widths, p)
				}
				if f.keys != len(c.want) {
					t.Fatalf("keys folded: %d, want %d", f.keys, len(c.want))
				}
				// Filtered as folded: the sequential fold's kept keys.
				f.keep = odd
				got := f.foldParts(p, c.parts, nil)
				f.keep = nil
				if kept := slices.DeleteFunc(slices.Clone(c.want), func(kv Pair[int, int]) bool { return !odd(kv) }); !slices.Equal(got, kept) {
					t.Fatalf("parts of %v sorted by %v bits, %d workers, filtered: %d keys, want the sequential fold's %d kept", tc.sizes, tc.widths, p, len(got), len(kept))
				}
			}
		}
	}
}

// TestFoldPartsInBucketOrder checks a recomputed window's fold of integer
// keys: the sequential fold's keys and values, listed bucket by bucket
// (the top bits of wordHash, at the finest of the parts' sorts), each
// bucket's in the order of their first occurrence; whatever the workers,
// the bits each part was sorted by, or the folder (a restarted process
// has another), since the order must survive a restart.
func TestFoldPartsInBucketOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	weird := func(c, v int) int { return (c*31 + v) % 1000003 }
	odd := func(kv Pair[int, int]) bool { return kv.Value%2 == 1 }
	byBucket := func(f *folder[int, int, int]) {
		if !f.orderByBucket() {
			t.Fatal("int keys are not folded in bucket order")
		}
	}
	for _, tc := range foldPartsCases {
		ins, all := tc.batches(rng, -tc.distinct/2) // negative keys too
		width := slices.Max(tc.widths)
		want := newFolder[int](func(v int) int { return v }, weird).foldSequential(all, nil)
		slices.SortStableFunc(want, func(a, b Pair[int, int]) int {
			return cmp.Compare(wordHash(a.Key)>>(64-width), wordHash(b.Key)>>(64-width))
		})
		sorter := newFolder[int](func(v int) int { return v }, weird)
		byBucket(sorter)
		f := newFolder[int](func(v int) int { return v }, weird)
		byBucket(f)
		for _, p := range []int{3, 1, 2} {
			parts := make([]*radixPart[int, int], len(ins))
			for k, in := range ins {
				parts[k] = &radixPart[int, int]{}
				sorter.sort(p, in, tc.widths[k], parts[k])
			}
			for range 2 { // the second fold finds every part refined
				if got := f.foldParts(p, parts, nil); !slices.Equal(got, want) {
					t.Fatalf("parts of %v sorted by %v bits, %d workers: not the sequential fold in bucket order", tc.sizes, tc.widths, p)
				}
			}
			f.keep = odd
			got := f.foldParts(p, parts, nil)
			f.keep = nil
			if kept := slices.DeleteFunc(slices.Clone(want), func(kv Pair[int, int]) bool { return !odd(kv) }); !slices.Equal(got, kept) {
				t.Fatalf("parts of %v sorted by %v bits, %d workers, filtered: %d keys, want the %d kept", tc.sizes, tc.widths, p, len(got), len(kept))
			}
		}
	}
}

// TestFirstFoldGuessesItsKeys checks that a folder's first batch, with no
// previous one to size its keys by, is folded by buckets when its keys are
// many (all distinct) and by maps when they are few, and right either way.
func TestFirstFoldGuessesItsKeys(t *testing.T) {
	for _, tc := range []struct {
		distinct  int
		byBuckets bool
	}{{200_000, true}, {1000, false}} {
		in := make([]Pair[int, int], 200_000)
		for i := range in {
			in[i] = KV(i%tc.distinct, i)
		}
		want := newFolder[int](func(v int) int { return v }, addInt).foldSequential(in, nil)
		f := newFolder[int](func(v int) int { return v }, addInt)
		if got := f.fold(&Job{parallelism: 2}, in, nil); !slices.Equal(got, want) {
			t.Fatalf("%d keys: the first fold differs from the sequential fold", tc.distinct)
		}
		if byBuckets := f.radix != nil; byBuckets != tc.byBuckets {
			t.Errorf("%d distinct keys: folded by buckets %v, want %v", tc.distinct, byBuckets, tc.byBuckets)
		}
	}
}

func addInt(a, b int) int { return a + b }

// BenchmarkFold folds 1M elements over 10k skewed or 1M uniform keys.
func BenchmarkFold(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, distinct := range []int{10_000, 1_000_000} {
		keys := make([]string, distinct)
		for i := range keys {
			keys[i] = fmt.Sprintf("key-%07d", i)
		}
		zipf := rand.NewZipf(rng, 1.1, 8, uint64(distinct-1))
		in := make([]Pair[string, int64], 1_000_000)
		for i := range in {
			k := rng.IntN(distinct)
			if distinct <= 10_000 {
				k = int(zipf.Uint64())
			}
			in[i] = KV(keys[k], int64(1))
		}
		for _, p := range []int{1, 2, 8} {
			b.Run(fmt.Sprintf("keys=%d/parallelism=%d", distinct, p), func(b *testing.B) {
				j := &Job{parallelism: p}
				f := newFolder[string](func(v int64) int64 { return v }, addInt64)
				b.ReportAllocs()
				for b.Loop() {
					f.fold(j, in, nil)
				}
			})
		}
	}
}

// BenchmarkFoldWords folds a batch of 200k word-sized keys (IPs), as the
// reference job's per-batch count does: cycling through 1k and 10k keys
// (each seen 200 and 20 times; from the 10k, after the first batch, by
// hash buckets: foldRadix) and all distinct (a state of millions of keys);
// and the 600k distinct keys of a window of three such batches, which a
// recomputed window folds at every slide.
func BenchmarkFoldWords(b *testing.B) {
	for _, c := range []struct{ pairs, distinct int }{{200_000, 1000}, {200_000, 10_000}, {200_000, 200_000}, {600_000, 600_000}} {
		in := make([]Pair[uint64, int64], c.pairs)
		distinct := c.distinct
		for i := range in {
			in[i] = KV(uint64(i%distinct)*0x9e3779b9+1, int64(1))
		}
		b.Run(fmt.Sprintf("pairs=%d/keys=%d", c.pairs, distinct), func(b *testing.B) {
			j := &Job{parallelism: 2}
			f := newFolder[uint64](func(v int64) int64 { return v }, addInt64)
			for b.Loop() {
				if out := f.fold(j, in, nil); len(out) != distinct {
					b.Fatalf("%d keys, want %d", len(out), distinct)
				}
			}
		})
	}
}

// BenchmarkFoldWindow folds a recomputed window of three batches of 200k
// distinct word-sized keys (the reference job's at 1M cycling IPs), each
// sorted by bucket once as it entered: the work of one slide, listing the
// keys in the order of their first occurrence and in bucket order (the
// recomputed window's for integer keys).
func BenchmarkFoldWindow(b *testing.B) {
	const batch, batches = 200_000, 3
	for _, order := range []string{"first", "bucket"} {
		b.Run("order="+order, func(b *testing.B) {
			f := newFolder[uint64](func(v int64) int64 { return v }, addInt64)
			if order == "bucket" {
				f.orderByBucket()
			}
			parts := make([]*radixPart[uint64, int64], batches)
			for k := range parts {
				in := make([]Pair[uint64, int64], batch)
				for i := range in {
					in[i] = KV(uint64(k*batch+i)*0x9e3779b9+1, int64(1))
				}
				parts[k] = &radixPart[uint64, int64]{}
				f.sort(2, in, radixBits(batch*batches), parts[k])
			}
			var out []Pair[uint64, int64]
			for b.Loop() {
				out = f.foldParts(2, parts, func(n int) []Pair[uint64, int64] { return resize(out, n)[:0] })
				if len(out) != batch*batches {
					b.Fatalf("%d keys, want %d", len(out), batch*batches)
				}
			}
		})
	}
}
