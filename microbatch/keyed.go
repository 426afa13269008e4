package microbatch

import (
	"fmt"
	"hash/maphash"
	"reflect"
	"sync"
	"unsafe"
)

// parallelMin is the batch size from which keyed operations and Map split
// their work across goroutines; below it the hand-off costs more than it saves.
const parallelMin = 1 << 14

// chunkCount is how many chunks parallelChunks splits n elements into.
func (j *Job) chunkCount(n int) int {
	if j.parallelism <= 1 || n < parallelMin {
		return 1
	}
	return j.parallelism
}

// parallelChunks calls f on contiguous chunks of [0, n), in parallel when n is
// large: chunk c of chunkCount(n) is [n·c/chunks, n·(c+1)/chunks).
func (j *Job) parallelChunks(n int, f func(c, lo, hi int)) {
	p := j.chunkCount(n)
	if p == 1 {
		f(0, 0, n)
		return
	}
	var wg sync.WaitGroup
	for c := range p {
		lo, hi := n*c/p, n*(c+1)/p
		wg.Go(func() { f(c, lo, hi) })
	}
	wg.Wait()
}

// folder folds the values of each key of a batch into a combiner, keeping the
// keys in the order of their first occurrence in the batch. That order, unlike
// a map's, is the same on every run and for every parallelism, which keeps
// outputs byte-identical. Values are folded in batch order on every path, so
// the parallel fold gives exactly what the sequential one gives.
type folder[K comparable, V, C any] struct {
	create func(V) C
	merge  func(C, V) C
	// identity: create returns its value (a reduce's folder, where V is
	// C), so a key's first value is its combiner without a call: folds
	// of a million keys make a million of them.
	identity bool
	seed     maphash.Seed
	// The scratch space is reused from batch to batch, so that
	// steady-state batches do not grow maps from scratch.
	scratch map[K]int32
	shardOf []uint8
	shards  []map[K]int32
	// keys is how many keys each path folded last time: the next batch's
	// output starts at that capacity.
	keys      int
	shardKeys []int
	// foldRadix's scratch space. When keys, values or combiners may point
	// to memory (a string key shares its record's), it is cleared after
	// each fold, so as not to keep a batch's records alive until the next.
	scratchHoldsMemory bool
	hashes             []uint64
	sorted             radixPart[K, V]
	counts             []int32
	radix              []radixWorker[K, V, C]
	refined            []radixElem[K, V] // refine's, reused
	// bucketOrder makes foldParts list keys bucket by bucket, each
	// bucket's in the order of their first occurrence, instead of all in
	// that order: no key is then stored at a random position. The hash is
	// then wordHash, a fixed function of the key, so that the order is the
	// same in every process (orderByBucket).
	bucketOrder bool
	// keep, if set, is a filter foldParts applies to the keys it folded:
	// a recomputed window's.
	keep func(Pair[K, C]) bool
}

func newFolder[K comparable, V, C any](create func(V) C, merge func(C, V) C) *folder[K, V, C] {
	return &folder[K, V, C]{create: create, merge: merge, seed: maphash.MakeSeed(),
		scratchHoldsMemory: !plainBytes(reflect.TypeFor[K]()) || !plainBytes(reflect.TypeFor[V]()) || !plainBytes(reflect.TypeFor[C]())}
}

// newReducer returns the folder of a reduce by f.
func newReducer[K comparable, V any](f func(a, b V) V) *folder[K, V, V] {
	fd := newFolder[K](func(v V) V { return v }, f)
	fd.identity = true
	return fd
}

// first is the combiner of a key's first value.
func (f *folder[K, V, C]) first(v V) C {
	if f.identity {
		return *(*C)(unsafe.Pointer(&v)) // V is C
	}
	return f.create(v)
}

// orderByBucket makes f's foldParts list keys in bucket order, if K is an
// integer (the keys a fixed hash of their value serves; others keep the
// order of first occurrence), and reports whether it did.
func (f *folder[K, V, C]) orderByBucket() bool {
	switch reflect.TypeFor[K]().Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		f.bucketOrder = true
	}
	return f.bucketOrder
}

// hash is k's hash in f's radix folds: maphash's, seeded per folder, or in
// bucket order wordHash, which every process computes alike.
func (f *folder[K, V, C]) hash(k K) uint64 {
	if f.bucketOrder {
		return wordHash(k)
	}
	return maphash.Comparable(f.seed, k)
}

// wordHash hashes an integer key by its value (splitmix64's finalizer: a
// bijection whose top bits, the buckets', depend on every bit of the key).
// It is fixed, as Spark's hash partitioning is by hashCode: keys an attacker
// chooses to share a bucket make that bucket's table large, not the fold
// quadratic (a bijection: distinct keys never share a whole hash).
func wordHash[K comparable](k K) uint64 {
	var x uint64
	switch unsafe.Sizeof(k) {
	case 1:
		x = uint64(*(*uint8)(unsafe.Pointer(&k)))
	case 2:
		x = uint64(*(*uint16)(unsafe.Pointer(&k)))
	case 4:
		x = uint64(*(*uint32)(unsafe.Pointer(&k)))
	default:
		x = *(*uint64)(unsafe.Pointer(&k))
	}
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// alloc returns an empty slice with room for n from buf, or a new one when
// buf is nil.
func alloc[T any](buf func(n int) []T, n int) []T {
	if buf == nil {
		return make([]T, 0, n)
	}
	return buf(n)
}

// shardEntry is a combiner with the batch index of its key's first occurrence.
type shardEntry[K comparable, C any] struct {
	key   K
	val   C
	first int
}

// maxShards bounds the shards of a parallel fold (a shard number is a byte).
const maxShards = 256

// foldWorkers is how many goroutines a fold of j runs on.
func (j *Job) foldWorkers() int { return max(1, min(j.parallelism, maxShards)) }

// fold folds in; buf, if not nil, gives the memory of the output.
func (f *folder[K, V, C]) fold(j *Job, in []Pair[K, V], buf func(n int) []Pair[K, C]) []Pair[K, C] {
	p := j.foldWorkers()
	if f.keys == 0 && len(in) >= parallelMin {
		f.keys = f.sampleKeys(in)
	}
	if f.keys >= radixMin && len(in) >= parallelMin {
		return f.foldRadix(p, in, buf)
	}
	if p <= 1 || len(in) < parallelMin {
		return f.foldSequential(in, buf)
	}
	return f.foldParallel(p, in, buf)
}

// sampleKeys guesses the distinct keys of in, a batch folded without a
// previous batch to go by (the job's first), from its first radixMin
// elements: as many as they hold when they repeat keys much (few keys, all
// seen), else that many scaled to the batch. A first batch of 200k
// distinct keys folded by maps took 90 ms, by buckets 20; a batch of few
// keys stays on maps.
func (f *folder[K, V, C]) sampleKeys(in []Pair[K, V]) int {
	sample := in[:min(len(in), radixMin)]
	seen := make(map[K]struct{}, len(sample))
	for _, kv := range sample {
		seen[kv.Key] = struct{}{}
	}
	if 2*len(seen) < len(sample) {
		return len(seen)
	}
	return len(seen) * len(in) / len(sample)
}

func (f *folder[K, V, C]) foldSequential(in []Pair[K, V], buf func(n int) []Pair[K, C]) []Pair[K, C] {
	if f.scratch == nil {
		f.scratch = make(map[K]int32)
	}
	idx := f.scratch
	defer clear(idx)
	out := alloc(buf, min(len(in), max(f.keys, 1024)))
	defer func() { f.keys = len(out) }()
	for _, kv := range in {
		if i, ok := idx[kv.Key]; ok {
			out[i].Value = f.merge(out[i].Value, kv.Value)
			continue
		}
		idx[kv.Key] = int32(len(out))
		out = append(out, Pair[K, C]{kv.Key, f.first(kv.Value)})
	}
	return out
}

// combine makes each pair's combiner, for input whose keys are distinct.
func (f *folder[K, V, C]) combine(in []Pair[K, V], buf func(n int) []Pair[K, C]) []Pair[K, C] {
	out := alloc(buf, len(in))
	for _, kv := range in {
		out = append(out, Pair[K, C]{kv.Key, f.first(kv.Value)})
	}
	return out
}

// foldParallel folds in two phases: p workers hash the keys of contiguous
// chunks to p shards; then worker s folds, in batch order, the elements of
// shard s, so every key is folded by one worker exactly as the sequential
// fold would. A k-way merge on first occurrence restores the sequential
// order of the keys.
func (f *folder[K, V, C]) foldParallel(p int, in []Pair[K, V], buf func(n int) []Pair[K, C]) []Pair[K, C] {
	f.shardOf = resize(f.shardOf, len(in))
	shardOf := f.shardOf
	var wg sync.WaitGroup
	for c := range p {
		lo, hi := len(in)*c/p, len(in)*(c+1)/p
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				shardOf[i] = uint8(maphash.Comparable(f.seed, in[i].Key) % uint64(p))
			}
		})
	}
	wg.Wait()
	if len(f.shards) != p {
		f.shards = make([]map[K]int32, p)
		for s := range f.shards {
			f.shards[s] = make(map[K]int32)
		}
		f.shardKeys = make([]int, p)
	}
	merged := make([][]shardEntry[K, C], p)
	for s := range p {
		wg.Go(func() {
			idx := f.shards[s]
			defer clear(idx)
			out := make([]shardEntry[K, C], 0, f.shardKeys[s])
			defer func() { f.shardKeys[s] = len(out) }()
			for i, sh := range shardOf {
				if int(sh) != s {
					continue
				}
				kv := &in[i]
				if e, ok := idx[kv.Key]; ok {
					out[e].val = f.merge(out[e].val, kv.Value)
					continue
				}
				idx[kv.Key] = int32(len(out))
				out = append(out, shardEntry[K, C]{kv.Key, f.first(kv.Value), i})
			}
			merged[s] = out
		})
	}
	wg.Wait()
	n := 0
	for _, m := range merged {
		n += len(m)
	}
	f.keys = n
	out := alloc(buf, n)
	heads := make([]int, p)
	for len(out) < n {
		best := -1
		for s := range p {
			if heads[s] < len(merged[s]) && (best < 0 || merged[s][heads[s]].first < merged[best][heads[best]].first) {
				best = s
			}
		}
		e := merged[best][heads[best]]
		heads[best]++
		out = append(out, Pair[K, C]{e.key, e.val})
	}
	return out
}

// ReduceByKey combines the values of each key of a batch with the associative
// function f. Keys appear in the order of their first occurrence.
func ReduceByKey[K comparable, V any](s *Stream[Pair[K, V]], f func(a, b V) V) *Stream[Pair[K, V]] {
	return byKey(s, "reduceByKey", newReducer[K](f))
}

// CombineByKey folds the values of each key of a batch into a combiner:
// create makes one from a key's first value, merge adds a value, combine
// joins two partial combiners. Values are folded in batch order, even in
// parallel, so combine is never needed: it is accepted for Spark programs.
func CombineByKey[K comparable, V, C any](s *Stream[Pair[K, V]], create func(V) C, merge func(C, V) C, combine func(C, C) C) *Stream[Pair[K, C]] {
	return byKey(s, "combineByKey", newFolder[K](create, merge))
}

// byKey is the stream of fd's fold of every batch of s, whose keys are
// distinct. A batch of s whose keys are already distinct (the output of an
// earlier fold) is not folded again: each pair becomes its combiner, which
// is what folding gives, without a hash lookup per key. Jobs that reduce
// before an exchange and again after it, or before a window, fold once.
func byKey[K comparable, V, C any](s *Stream[Pair[K, V]], op string, fd *folder[K, V, C]) *Stream[Pair[K, C]] {
	var out *Stream[Pair[K, C]]
	out = deriveOwned(s, op, func(r *batchRun, in []Pair[K, V], buf func(int) []Pair[K, C]) []Pair[K, C] {
		out.distinct = true
		if s.distinct {
			return fd.combine(in, buf)
		}
		return fd.fold(r.job, in, buf)
	})
	return out
}

// GroupByKey collects the values of each key of a batch, in input order.
func GroupByKey[K comparable, V any](s *Stream[Pair[K, V]]) *Stream[Pair[K, []V]] {
	return CombineByKey(s,
		func(v V) []V { return []V{v} },
		func(c []V, v V) []V { return append(c, v) },
		func(a, b []V) []V { return append(a, b...) })
}

// CountByValue counts the occurrences of each distinct element of a batch.
func CountByValue[T comparable](s *Stream[T]) *Stream[Pair[T, int64]] {
	return ReduceByKey(Map(s, func(v T) Pair[T, int64] { return Pair[T, int64]{v, 1} }), addInt64)
}

func addInt64(a, b int64) int64 { return a + b }
func subInt64(a, b int64) int64 { return a - b }

// Optional is a value that may be absent: the missing side of an outer join.
// pprint prints an absent value as None.
type Optional[T any] struct {
	Value T
	Ok    bool
}

// Some returns a present Optional.
func Some[T any](v T) Optional[T] { return Optional[T]{Value: v, Ok: true} }

// cogroup groups two keyed batches by key; keys appear in first-occurrence
// order of a, then the keys only b has in first-occurrence order of b.
func cogroup[K comparable, V, W any](a []Pair[K, V], b []Pair[K, W]) []Pair[K, Pair[[]V, []W]] {
	return group(a, b, true)
}

// joinGroups is cogroup restricted to the keys a has, which is all that
// Join and LeftOuterJoin use: b's other keys are neither indexed nor
// grouped, so joining a small batch with a large one (a ranking with every
// running total) costs one lookup per element of the large one.
func joinGroups[K comparable, V, W any](a []Pair[K, V], b []Pair[K, W]) []Pair[K, Pair[[]V, []W]] {
	return group(a, b, false)
}

// keyedView is keyed state that can be looked up: the table behind a
// stateful stream.
type keyedView[K comparable, W any] interface {
	get(k K) (W, bool)
}

// lookupGroups is joinGroups with b's batch given as the state it lists:
// b's value of each key of a is looked up, in one step per key of a.
func lookupGroups[K comparable, V, W any](a []Pair[K, V], b keyedView[K, W]) []Pair[K, Pair[[]V, []W]] {
	groups := group(a, []Pair[K, W](nil), false)
	for i := range groups {
		if w, ok := b.get(groups[i].Key); ok {
			groups[i].Value.Value = []W{w}
		}
	}
	return groups
}

// group groups a and b by key, with the keys only b has when bOnly is set.
func group[K comparable, V, W any](a []Pair[K, V], b []Pair[K, W], bOnly bool) []Pair[K, Pair[[]V, []W]] {
	idx := make(map[K]int32, len(a))
	var out []Pair[K, Pair[[]V, []W]]
	at := func(k K, add bool) (int32, bool) {
		i, ok := idx[k]
		if !ok && add {
			i, ok = int32(len(out)), true
			idx[k] = i
			out = append(out, Pair[K, Pair[[]V, []W]]{Key: k})
		}
		return i, ok
	}
	for _, kv := range a {
		i, _ := at(kv.Key, true)
		out[i].Value.Key = append(out[i].Value.Key, kv.Value)
	}
	for _, kw := range b {
		if i, ok := at(kw.Key, bOnly); ok {
			out[i].Value.Value = append(out[i].Value.Value, kw.Value)
		}
	}
	return out
}

// pairwise builds a stream from two keyed streams of equal slide.
func pairwise[K comparable, V, W, U any](op string, a *Stream[Pair[K, V]], b *Stream[Pair[K, W]], f func(groups []Pair[K, Pair[[]V, []W]]) []U) *Stream[U] {
	return pairwiseBy(op, a, b, false, cogroup[K, V, W], f)
}

// pairwiseBy is pairwise with the grouping of the two batches chosen. A
// grouping that looks keys up in b's state (lookup) needs b to have
// computed every batch a computes, so b's slide must divide a's; one that
// reads both batches needs equal slides.
func pairwiseBy[K comparable, V, W, U any](op string, a *Stream[Pair[K, V]], b *Stream[Pair[K, W]], lookup bool,
	group func([]Pair[K, V], []Pair[K, W]) []Pair[K, Pair[[]V, []W]], f func(groups []Pair[K, Pair[[]V, []W]]) []U) *Stream[U] {
	if a.slide != b.slide && !(lookup && a.slide%b.slide == 0) {
		a.job.fail(op, fmt.Errorf("streams slide every %v and %v: %s needs equal slides",
			a.SlideDuration(), b.SlideDuration(), op))
	}
	s := newStream[U](a.job, op, a.slide, a, b)
	s.compute = func(*batchRun) ([]U, bool) {
		if !a.has || !b.has {
			return nil, false
		}
		return f(group(a.out, b.out)), true
	}
	return s
}

// joinBy builds a join of a with b. When b is keyed state (running totals)
// the join looks a's keys up in it instead of reading b's batch, which
// lists every key: joining a top-3 with a million totals costs three
// lookups, and the totals are not listed at all if nothing else reads them.
func joinBy[K comparable, V, W, U any](op string, a *Stream[Pair[K, V]], b *Stream[Pair[K, W]], f func(groups []Pair[K, Pair[[]V, []W]]) []U) *Stream[U] {
	view, ok := b.view.(keyedView[K, W])
	if !ok || a.slide%b.slide != 0 {
		return pairwiseBy(op, a, b, false, joinGroups[K, V, W], f)
	}
	s := pairwiseBy(op, a, b, true, func(av []Pair[K, V], _ []Pair[K, W]) []Pair[K, Pair[[]V, []W]] {
		return lookupGroups(av, view)
	}, f)
	s.lookupOf = b
	return s
}

// Cogroup groups the values of both streams by key.
func Cogroup[K comparable, V, W any](a *Stream[Pair[K, V]], b *Stream[Pair[K, W]]) *Stream[Pair[K, Pair[[]V, []W]]] {
	return pairwise("cogroup", a, b, func(g []Pair[K, Pair[[]V, []W]]) []Pair[K, Pair[[]V, []W]] { return g })
}

// Join pairs every value of a key in a with every value of that key in b;
// keys missing on either side are dropped.
func Join[K comparable, V, W any](a *Stream[Pair[K, V]], b *Stream[Pair[K, W]]) *Stream[Pair[K, Pair[V, W]]] {
	return joinBy("join", a, b, func(groups []Pair[K, Pair[[]V, []W]]) []Pair[K, Pair[V, W]] {
		var out []Pair[K, Pair[V, W]]
		for _, g := range groups {
			for _, v := range g.Value.Key {
				for _, w := range g.Value.Value {
					out = append(out, Pair[K, Pair[V, W]]{g.Key, Pair[V, W]{v, w}})
				}
			}
		}
		return out
	})
}

// LeftOuterJoin is Join that keeps keys only a has, with an absent right side.
func LeftOuterJoin[K comparable, V, W any](a *Stream[Pair[K, V]], b *Stream[Pair[K, W]]) *Stream[Pair[K, Pair[V, Optional[W]]]] {
	return joinBy("leftOuterJoin", a, b, func(groups []Pair[K, Pair[[]V, []W]]) []Pair[K, Pair[V, Optional[W]]] {
		var out []Pair[K, Pair[V, Optional[W]]]
		for _, g := range groups {
			for _, v := range g.Value.Key {
				if len(g.Value.Value) == 0 {
					out = append(out, Pair[K, Pair[V, Optional[W]]]{g.Key, Pair[V, Optional[W]]{Key: v}})
				}
				for _, w := range g.Value.Value {
					out = append(out, Pair[K, Pair[V, Optional[W]]]{g.Key, Pair[V, Optional[W]]{v, Some(w)}})
				}
			}
		}
		return out
	})
}

// RightOuterJoin is Join that keeps keys only b has, with an absent left side.
// Like Join, it pairs values left-major: (v1, w1), (v1, w2), (v2, w1) ….
func RightOuterJoin[K comparable, V, W any](a *Stream[Pair[K, V]], b *Stream[Pair[K, W]]) *Stream[Pair[K, Pair[Optional[V], W]]] {
	return pairwise("rightOuterJoin", a, b, func(groups []Pair[K, Pair[[]V, []W]]) []Pair[K, Pair[Optional[V], W]] {
		var out []Pair[K, Pair[Optional[V], W]]
		for _, g := range groups {
			if len(g.Value.Key) == 0 {
				for _, w := range g.Value.Value {
					out = append(out, Pair[K, Pair[Optional[V], W]]{g.Key, Pair[Optional[V], W]{Value: w}})
				}
				continue
			}
			for _, v := range g.Value.Key {
				for _, w := range g.Value.Value {
					out = append(out, Pair[K, Pair[Optional[V], W]]{g.Key, Pair[Optional[V], W]{Some(v), w}})
				}
			}
		}
		return out
	})
}

// FullOuterJoin is Join that keeps the keys of either side.
func FullOuterJoin[K comparable, V, W any](a *Stream[Pair[K, V]], b *Stream[Pair[K, W]]) *Stream[Pair[K, Pair[Optional[V], Optional[W]]]] {
	return pairwise("fullOuterJoin", a, b, func(groups []Pair[K, Pair[[]V, []W]]) []Pair[K, Pair[Optional[V], Optional[W]]] {
		var out []Pair[K, Pair[Optional[V], Optional[W]]]
		for _, g := range groups {
			vs, ws := g.Value.Key, g.Value.Value
			switch {
			case len(ws) == 0:
				for _, v := range vs {
					out = append(out, Pair[K, Pair[Optional[V], Optional[W]]]{g.Key, Pair[Optional[V], Optional[W]]{Key: Some(v)}})
				}
			case len(vs) == 0:
				for _, w := range ws {
					out = append(out, Pair[K, Pair[Optional[V], Optional[W]]]{g.Key, Pair[Optional[V], Optional[W]]{Value: Some(w)}})
				}
			default:
				for _, v := range vs {
					for _, w := range ws {
						out = append(out, Pair[K, Pair[Optional[V], Optional[W]]]{g.Key, Pair[Optional[V], Optional[W]]{Some(v), Some(w)}})
					}
				}
			}
		}
		return out
	})
}
