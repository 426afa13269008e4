package microbatch

import (
	"fmt"
	"slices"
	"time"
	"unsafe"
)

// batches converts a duration to whole batch intervals, recording a build
// error if it is not a positive multiple of unit.
func (j *Job) batches(op, what string, d, unit time.Duration) uint64 {
	if d <= 0 || unit <= 0 || d%unit != 0 {
		j.fail(op, fmt.Errorf("%s %v must be a positive multiple of %v", what, d, unit))
		return 1
	}
	return uint64(d / j.interval)
}

// windowBuffer keeps what a windowed operator holds of each of the batches
// of the last span batch intervals: their outputs, or a copy of its own.
type windowBuffer[T any] struct {
	span    uint64
	entries []windowEntry[T]
}

type windowEntry[T any] struct {
	id  uint64
	out T
}

// push adds batch id's value and returns those of the batches that left
// the span, for their memory to be reused.
func (w *windowBuffer[T]) push(id uint64, out T) (left []T) {
	drop := 0
	for drop < len(w.entries) && w.entries[drop].id+w.span <= id {
		left = append(left, w.entries[drop].out)
		drop++
	}
	w.entries = append(w.entries[:0], w.entries[drop:]...)
	clear(w.entries[len(w.entries) : len(w.entries)+drop])
	w.entries = append(w.entries, windowEntry[T]{id, out})
	return left
}

// between returns the batches with lo < id ≤ hi.
func (w *windowBuffer[T]) between(lo, hi uint64) []T {
	var out []T
	for _, e := range w.entries {
		if e.id > lo && e.id <= hi {
			out = append(out, e.out)
		}
	}
	return out
}

func (j *Job) windowed(op string, parent node, length, slide time.Duration) (lengthB, slideB uint64) {
	pslide := time.Duration(parent.base().slide) * j.interval
	lengthB = j.batches(op, "window length", length, pslide)
	slideB = j.batches(op, "slide", slide, pslide)
	return lengthB, slideB
}

// Window returns a stream whose batch at time t holds all elements of s in
// the window (t − length, t]; it produces a batch every slide. length and
// slide must be multiples of s's slide. Windows right after start cover the
// batches there are.
func (s *Stream[T]) Window(length, slide time.Duration) *Stream[T] {
	lengthB, slideB := s.job.windowed("window", s, length, slide)
	if lengthB == 1 && slideB == 1 {
		// A window of one batch is the batch itself: nothing to buffer.
		w := derive(s, "window", func(_ *batchRun, in []T) []T { return in })
		w.output = outPassThrough
		return w
	}
	if dependsOnState(s) {
		return checkpointedWindow(s, lengthB, slideB)
	}
	buf := &windowBuffer[[]T]{span: lengthB}
	w := newStream[T](s.job, "window", slideB, s)
	w.output, w.keepsInputs, w.windowSpan, w.windowLength = outReused, true, lengthB, lengthB
	w.compute = func(r *batchRun) ([]T, bool) {
		if s.has {
			buf.push(r.id, s.out)
		}
		if r.id%slideB != 0 || (r.rebuild && !w.derived.rebuild) {
			return nil, false
		}
		parts := buf.between(r.id-min(r.id, lengthB), r.id)
		n := 0
		for _, p := range parts {
			n += len(p)
		}
		out := w.buffer(n)
		for _, p := range parts {
			out = append(out, p...)
		}
		return out, true
	}
	return w
}

// dependsOnState reports whether n's output comes from a stateful operator's.
func dependsOnState(n node) bool {
	b := n.base()
	if b.state != nil {
		return true
	}
	for _, p := range b.parents {
		if dependsOnState(p) {
			return true
		}
	}
	return false
}

// checkpointedWindow is a window over the output of a stateful operator,
// which Spark allows by checkpointing the batches it spans. Those outputs
// cannot be recomputed from recorded plans after a restart (the state they
// came from has moved on), so the window keeps its batches as checkpointed
// state of its own: one entry per batch, keyed by batch id, dropped when it
// leaves the window. Its batches must be storable (DefaultCodec of []T).
func checkpointedWindow[T any](s *Stream[T], lengthB, slideB uint64) *Stream[T] {
	st := newStateful[uint64, []T, T](s.job, "window", slideB, s)
	st.output, st.keepsInputs, st.windowLength = outReused, true, lengthB
	var leaving []uint64
	st.compute = func(r *batchRun) ([]T, bool) {
		if s.has {
			st.put(r.id, s.out, 0)
		}
		leaving = leaving[:0]
		n := 0
		st.each(func(id uint64, part []T, _ int64) {
			if id+lengthB <= r.id {
				leaving = append(leaving, id)
			} else {
				n += len(part)
			}
		})
		for _, id := range leaving {
			st.remove(id)
		}
		if r.id%slideB != 0 {
			return nil, false
		}
		out := st.buffer(n)
		st.each(func(_ uint64, part []T, _ int64) { out = append(out, part...) })
		return out, true
	}
	return st.Stream
}

// CountByWindow counts the elements in each window.
func (s *Stream[T]) CountByWindow(length, slide time.Duration) *Stream[int64] {
	return ReduceByWindow(s.Count(), addInt64, subInt64, length, slide)
}

// ReduceByWindow reduces all elements of each window with f. With the
// inverse invF (nil for none) the result is updated incrementally: the
// batches that entered the window are added and those that left are
// subtracted.
func ReduceByWindow[T any](s *Stream[T], f, invF func(a, b T) T, length, slide time.Duration) *Stream[T] {
	one := Map(s.Reduce(f), func(v T) Pair[struct{}, T] { return Pair[struct{}, T]{Value: v} })
	return Map(ReduceByKeyAndWindow(one, f, invF, length, slide, nil),
		func(p Pair[struct{}, T]) T { return p.Value })
}

// ReduceByKeyAndWindow reduces the values of each key over each window with
// f. Without an inverse (invF nil) each window is recomputed from its batches.
// With one, the window's result is kept as checkpointed state and updated
// incrementally: values of batches entering the window are added with f,
// those of batches leaving it removed with invF. Keys stay with their
// reduced value (0 for counts) unless keep (nil keeps all) rejects them.
//
// With an inverse and a keep, a window of at most recomputedSlides slides
// is reduced from its batches at every slide instead, which costs less
// (docs/windows.md). The values are the same whenever invF undoes f and
// keep rejects the keys whose values all left the window: Spark's contract
// for both. Only the order in which keys are listed differs: the order of
// their first occurrence in the window's batches.
func ReduceByKeyAndWindow[K comparable, V any](s *Stream[Pair[K, V]], f, invF func(a, b V) V, length, slide time.Duration, keep func(Pair[K, V]) bool) *Stream[Pair[K, V]] {
	perBatch := ReduceByKey(s, f)
	// The inverse only saves work. Over a stateful operator's output the
	// window is checkpointed, and recomputed from its batches.
	if invF == nil || dependsOnState(s) {
		w := ReduceByKey(perBatch.Window(length, slide), f)
		if keep != nil {
			w = w.Filter(keep)
		}
		return w
	}
	lengthB, slideB := s.job.windowed("reduceByKeyAndWindow", perBatch, length, slide)
	st := newStateful[K, V, Pair[K, V]](s.job, "reduceByKeyAndWindow", slideB, perBatch)
	if keep != nil && lengthB <= recomputedSlides*slideB && !s.job.incrementalWindows {
		return recomputedWindow(st, perBatch, f, keep, lengthB, slideB)
	}
	buf := &windowBuffer[[]Pair[K, V]]{span: lengthB + slideB}
	// It runs during rebuilds to refill its buffer, never to update its state.
	st.keepsInputs, st.windowSpan, st.windowLength = true, lengthB+slideB, lengthB
	sub := newReducer[K](f)
	// A batch's part holds each key once (perBatch reduced it), as
	// updateEach needs.
	add := func(part []Pair[K, V]) {
		st.updateEach(len(part), func(i int) K { return part[i].Key }, func(i int, pos int32) bool {
			st.set(pos, f(st.entries[pos].val, part[i].Value), 0)
			return false
		}, func(i int) (V, bool) { return part[i].Value, true })
	}
	// visit calls each for every live key of the window, then removes the
	// keys keep rejects.
	visit := func(each func(kv Pair[K, V])) {
		var drop []int32
		for i := range st.entries {
			e := &st.entries[i]
			if !e.live() {
				continue
			}
			kv := Pair[K, V]{e.key, e.val}
			if keep != nil && !keep(kv) {
				drop = append(drop, int32(i))
				continue
			}
			each(kv)
		}
		st.removeAll(drop)
	}
	// After a restart whose window or slide changed (or that added the
	// operator), the state is what the next update expects to find: the
	// batches of the window that ended at the last slide at or before the
	// committed batch, from the buffer the recorded plans refilled.
	st.recompute = func(committed uint64) {
		last := committed - committed%slideB
		for _, part := range buf.between(last-min(last, lengthB), last) {
			add(part)
		}
		visit(func(Pair[K, V]) {})
	}
	st.compute = func(r *batchRun) ([]Pair[K, V], bool) {
		if perBatch.has {
			buf.push(r.id, perBatch.out)
		}
		if r.rebuild || r.id%slideB != 0 {
			return nil, false
		}
		prev := r.id - min(r.id, slideB)
		for _, part := range buf.between(prev, r.id) {
			add(part)
		}
		if r.id > lengthB {
			parts := buf.between(prev-min(prev, lengthB), r.id-lengthB)
			// One part leaving needs no fold.
			var leaving []Pair[K, V]
			if len(parts) == 1 {
				leaving = parts[0]
			} else {
				for _, part := range parts {
					leaving = append(leaving, part...)
				}
				leaving = sub.fold(r.job, leaving, nil)
			}
			// A key that keep rejects now goes at once, while its slot is
			// in the cache from the lookup; visit, which applies keep to
			// every key, would otherwise look it up again to remove it.
			st.updateEach(len(leaving), func(i int) K { return leaving[i].Key }, func(i int, pos int32) bool {
				v := invF(st.entries[pos].val, leaving[i].Value)
				st.set(pos, v, 0)
				return keep != nil && !keep(Pair[K, V]{leaving[i].Key, v})
			}, nil)
		}
		out := make([]Pair[K, V], 0, st.len())
		visit(func(kv Pair[K, V]) { out = append(out, kv) })
		return out, true
	}
	return st.Stream
}

// recomputedSlides is the longest window, in slides, that
// ReduceByKeyAndWindow reduces from its batches at every slide rather than
// incrementally. Each slide the incremental update looks up, in a table of
// the whole window, every key of the batches that entered and left it, and
// checkpoints every change; recomputing folds the window's batches, by
// buckets of hashes that stay in the CPU's caches (foldRadix), and stores
// nothing. With millions of keys a lookup and its checkpoint cost several
// times a folded pair, so recomputing is cheaper up to windows of several
// slides; with few keys both are cheap. Longer windows are kept
// incrementally: recomputing costs their length at every slide.
const recomputedSlides = 4

// recomputedWindow makes st, a ReduceByKeyAndWindow of a window of at most
// recomputedSlides slides, reduce each window from its batches: perBatch's
// outputs, which a restart reads again from their recorded plans, as for
// any window. Each batch is sorted by hash bucket once, as it enters the
// window (a copy, so perBatch's memory is not kept); every slide then folds
// the window's batches bucket by bucket (foldParts) without sorting them
// again. It stores no state; its table stays empty, and its last result is
// what StateView sees. Keys are listed in the order of their first
// occurrence in the window's batches, so a window's output depends on its
// batches only, never on the job's history or a restart.
func recomputedWindow[K comparable, V any](st *statefulStream[K, V, Pair[K, V]], perBatch *Stream[Pair[K, V]], f func(a, b V) V,
	keep func(Pair[K, V]) bool, lengthB, slideB uint64) *Stream[Pair[K, V]] {
	st.output, st.windowSpan, st.windowLength = outReused, lengthB, lengthB
	whole := newReducer[K](f)
	st.recomputed = &recomputedView[K, V]{fold: whole}
	// Integer keys (the reference job's IPs) are listed in bucket order:
	// a window of a million keys then folds in half the time (no key goes
	// to a random position). The buckets are a function of the window's
	// batches alone (wordHash, widths from the batches' sizes), so the
	// order is the same after a restart (docs/windows.md).
	whole.orderByBucket()
	whole.keep = keep // each bucket filtered as it is folded
	batchesPerWindow := int(lengthB / perBatch.slide)
	buf := &windowBuffer[*radixPart[K, V]]{span: lengthB}
	var spare []*radixPart[K, V] // copies of batches that left the window
	st.compute = func(r *batchRun) ([]Pair[K, V], bool) {
		workers := r.job.foldWorkers()
		if perBatch.has {
			// A batch's copy that left the window is reused, unless the
			// last result, which views read until the next, still holds it
			// (a window that slides every few batches).
			part := &radixPart[K, V]{}
			for k := len(spare) - 1; k >= 0; k-- {
				if !slices.Contains(st.recomputed.parts, spare[k]) {
					part = spare[k]
					spare = slices.Delete(spare, k, k+1)
					break
				}
			}
			// Buckets for the whole window's keys, as if its batches were
			// this one's size and all distinct: from the batch alone, so
			// that a restart sorts it alike.
			in := perBatch.out
			whole.sort(workers, in, radixBits(len(in)*batchesPerWindow), part)
			for _, left := range buf.push(r.id, part) {
				if whole.scratchHoldsMemory && !slices.Contains(st.recomputed.parts, left) {
					clear(left.elems) // keys that share records' memory
				}
				spare = append(spare, left)
			}
		}
		if r.rebuild || r.id%slideB != 0 {
			return nil, false
		}
		parts := buf.between(r.id-min(r.id, lengthB), r.id)
		kept := whole.foldParts(workers, parts, st.buffer)
		st.recomputed.show(parts, len(kept))
		return kept, true
	}
	return st.Stream
}

// recomputedView is what a recomputed window (which keeps no entries)
// shows StateView: its last result, looked up in the sorted batches it was
// folded from, which the window keeps until its next result. A lookup reads
// the key's bucket in each (a few thousand elements at 600k keys, where
// copying every result for lookups cost a 10 MB copy a slide).
type recomputedView[K comparable, S any] struct {
	fold  *folder[K, S, S]
	keys  int
	parts []*radixPart[K, S]
}

// show makes the result folded from parts, of keys keys, the one views see.
func (v *recomputedView[K, S]) show(parts []*radixPart[K, S], keys int) {
	v.parts, v.keys = parts, keys
}

// get folds key's values in the last result's batches, in order, as the
// window's fold did, and applies its filter.
func (v *recomputedView[K, S]) get(key K) (S, bool) {
	var c S
	found := false
	h := v.fold.hash(key)
	for _, part := range v.parts {
		for _, e := range part.bucket(int(h>>(64-part.bits)), part.bits) {
			if e.kv.Key != key {
				continue
			}
			if found {
				c = v.fold.merge(c, e.kv.Value)
			} else {
				c, found = v.fold.first(e.kv.Value), true
			}
		}
	}
	if !found || v.fold.keep != nil && !v.fold.keep(Pair[K, S]{key, c}) {
		var zero S
		return zero, false
	}
	return c, true
}

// bytes is the memory of the last result's batches.
func (v *recomputedView[K, S]) bytes() int64 {
	var e radixElem[K, S]
	n := int64(0)
	for _, part := range v.parts {
		n += int64(cap(part.elems))*int64(unsafe.Sizeof(e)) + int64(cap(part.starts))*4
	}
	return n
}

// CountByValueAndWindow counts each distinct element over each window, as
// ReduceByKeyAndWindow with an inverse does (incrementally, or from the
// window's batches for a window of a few slides); elements whose count
// drops to zero are removed.
func CountByValueAndWindow[T comparable](s *Stream[T], length, slide time.Duration) *Stream[Pair[T, int64]] {
	ones := Map(s, func(v T) Pair[T, int64] { return Pair[T, int64]{v, 1} })
	return ReduceByKeyAndWindow(ones, addInt64, subInt64, length, slide,
		func(p Pair[T, int64]) bool { return p.Value > 0 })
}

// GroupByKeyAndWindow collects the values of each key over each window.
func GroupByKeyAndWindow[K comparable, V any](s *Stream[Pair[K, V]], length, slide time.Duration) *Stream[Pair[K, []V]] {
	return GroupByKey(s.Window(length, slide))
}
