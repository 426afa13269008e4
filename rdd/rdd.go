package rdd

import (
	"cmp"
	"slices"

	"github.com/dstream-io/dstream/microbatch"
)

// Map returns f applied to every element.
func Map[T, U any](batch []T, f func(T) U) []U {
	out := make([]U, len(batch))
	for i, v := range batch {
		out[i] = f(v)
	}
	return out
}

// Filter returns the elements for which keep is true.
func Filter[T any](batch []T, keep func(T) bool) []T {
	out := make([]T, 0, len(batch))
	for _, v := range batch {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

// SortBy returns the elements ordered by key, ascending or descending; the
// sort is stable.
func SortBy[T any, O cmp.Ordered](batch []T, key func(T) O, ascending bool) []T {
	out := slices.Clone(batch)
	slices.SortStableFunc(out, func(a, b T) int {
		if ascending {
			return cmp.Compare(key(a), key(b))
		}
		return cmp.Compare(key(b), key(a))
	})
	return out
}

// ZipWithIndex pairs every element with its position in the batch.
func ZipWithIndex[T any](batch []T) []microbatch.Pair[T, int64] {
	out := make([]microbatch.Pair[T, int64], len(batch))
	for i, v := range batch {
		out[i] = microbatch.KV(v, int64(i))
	}
	return out
}

// Take returns the first n elements (none for n ≤ 0, as Spark's take).
func Take[T any](batch []T, n int) []T {
	return slices.Clone(batch[:max(0, min(n, len(batch)))])
}

// Top returns the n largest elements by key, largest first; ties keep their
// batch order. It costs O(len × log n), not a full sort.
func Top[T any, O cmp.Ordered](batch []T, n int, key func(T) O) []T {
	if n <= 0 {
		return nil
	}
	// best is kept sorted, largest first; a new element goes after every
	// element not smaller than it, which keeps ties in batch order.
	best := make([]T, 0, n+1)
	for _, v := range batch {
		k := key(v)
		if len(best) == n && cmp.Compare(k, key(best[n-1])) <= 0 {
			continue
		}
		i, _ := slices.BinarySearchFunc(best, k, func(e T, k O) int {
			if cmp.Compare(key(e), k) >= 0 {
				return -1
			}
			return 1
		})
		best = slices.Insert(best, i, v)
		if len(best) > n {
			best = best[:n]
		}
	}
	return best
}

// Table is a static keyed dataset to join batches with, such as the
// lecture's countries.csv. Build it once; it is read-only afterwards.
type Table[K comparable, W any] struct {
	index map[K][]W
}

// NewTable builds a Table from pairs; a key may have several values.
func NewTable[K comparable, W any](pairs []microbatch.Pair[K, W]) *Table[K, W] {
	t := &Table[K, W]{index: make(map[K][]W, len(pairs))}
	for _, p := range pairs {
		t.index[p.Key] = append(t.index[p.Key], p.Value)
	}
	return t
}

// Get returns the first value of k.
func (t *Table[K, W]) Get(k K) (W, bool) {
	vs := t.index[k]
	if len(vs) == 0 {
		var zero W
		return zero, false
	}
	return vs[0], true
}

// Len returns the number of distinct keys.
func (t *Table[K, W]) Len() int { return len(t.index) }

// Join pairs every element with every table value of its key, as Spark's
// rdd.join(table): elements whose key the table lacks are dropped.
func Join[K comparable, V, W any](batch []microbatch.Pair[K, V], t *Table[K, W]) []microbatch.Pair[K, microbatch.Pair[V, W]] {
	var out []microbatch.Pair[K, microbatch.Pair[V, W]]
	for _, kv := range batch {
		for _, w := range t.index[kv.Key] {
			out = append(out, microbatch.KV(kv.Key, microbatch.KV(kv.Value, w)))
		}
	}
	return out
}

// LeftOuterJoin is Join that keeps elements the table lacks, with an absent
// table value.
func LeftOuterJoin[K comparable, V, W any](batch []microbatch.Pair[K, V], t *Table[K, W]) []microbatch.Pair[K, microbatch.Pair[V, microbatch.Optional[W]]] {
	var out []microbatch.Pair[K, microbatch.Pair[V, microbatch.Optional[W]]]
	for _, kv := range batch {
		ws := t.index[kv.Key]
		if len(ws) == 0 {
			out = append(out, microbatch.KV(kv.Key, microbatch.KV(kv.Value, microbatch.Optional[W]{})))
		}
		for _, w := range ws {
			out = append(out, microbatch.KV(kv.Key, microbatch.KV(kv.Value, microbatch.Some(w))))
		}
	}
	return out
}
