package microbatch

import (
	"fmt"
	"reflect"
	"slices"
	"time"
)

// node is the type-erased view of a Stream the engine drives.
type node interface {
	base() *nodeBase
	// step computes the node's output for the batch of r, if the batch
	// time is valid for it.
	step(r *batchRun)
	// reset drops the output of the last batch.
	reset()
}

type nodeBase struct {
	job     *Job
	id      int
	op      string // the operator's kind: "map", "window" …
	name    string // given by Named; a stateful operator's state is stored under it
	slide   uint64 // in batch intervals
	parents []node

	// What the operator declares when it is built; compile derives the
	// rest from these.
	output outputKind
	// keepsInputs: the operator keeps its parents' outputs past their
	// batch (a window's buffer).
	keepsInputs bool
	// windowSpan is how many past batches a windowed operator buffers, and
	// windowLength its window's length, both in batches.
	windowSpan, windowLength uint64
	// lookupOf is the parent whose output this node never reads: it looks
	// keys up in the parent's state instead (a join with running totals).
	lookupOf node
	// state is the table of a stateful operator (nil for others), and
	// guard its lock, held while the node computes a batch.
	state any
	guard guard
	// exch is the exchange an exchange node is (nil for others).
	exch exchanger

	// derived is set by compile, once, and never changed after.
	derived derivedFlags
}

// outputKind says whose memory an operator's output is.
type outputKind uint8

const (
	// outFresh: a new slice every batch.
	outFresh outputKind = iota
	// outReused: memory of the operator's own, which later batches reuse
	// unless a consumer keeps it.
	outReused
	// outPassThrough: possibly its parents' outputs, or part of them
	// (Transform may return its input).
	outPassThrough
)

// derivedFlags are what compile derives for a node from the declarations.
type derivedFlags struct {
	// rebuild: the node's output feeds a window, so it runs while windows
	// are rebuilt from recorded plans after a restart.
	rebuild bool
	// retained: a consumer may keep the node's output past its batch (a
	// window's buffer, a ForeachBatch function, or a pass-through node
	// whose output is retained), so its memory is never reused.
	retained bool
	// readers counts the consumers that read the node's output; a
	// stateful node nobody reads does not list its state every batch.
	readers int
}

func (b *nodeBase) base() *nodeBase { return b }

// Stream is a discretized stream (Spark's DStream) of elements of type T: one
// slice of elements per batch time that is a multiple of its slide.
type Stream[T any] struct {
	nodeBase
	compute func(r *batchRun) ([]T, bool)
	out     []T
	has     bool
	// distinct: out is keyed and holds each key once (a fold's output, or
	// a filter or pass-through of one), so that a fold of it need not
	// look its keys up.
	distinct bool
	// view is the keyed state behind a stateful stream's output, for
	// consumers that look keys up rather than read every pair.
	view any
	// spare is the memory of the last batch's output, for the next batch:
	// allocating and zeroing a fresh slice per stage and batch costs more
	// than the stage's own work for cheap per-element functions.
	spare []T
	// plain: T's values are numbers (plainBytes), which keep no memory
	// alive, so a spare need not be cleared.
	plain bool
}

func (s *Stream[T]) step(r *batchRun) {
	s.distinct = false
	if r.rebuild && !s.derived.rebuild && s.windowSpan == 0 {
		s.out, s.has = nil, false
		return
	}
	if s.guard != nil {
		b := r.id
		if r.rebuild {
			b = 0 // a rebuild refills buffers; the state stays the committed one
		}
		s.guard.lockFor(b)
		defer s.guard.unlock()
	}
	s.out, s.has = s.compute(r)
}

func (s *Stream[T]) reset() {
	if s.output == outReused && !s.derived.retained && cap(s.out) > 0 {
		if invariants {
			// Whoever kept it reads garbage; the next batch gets new memory.
			poison(s.out)
		} else {
			// Cleared so that the spare keeps nothing of this batch alive,
			// unless nothing in it can (numbers: 10 MB a batch at 600k
			// window keys).
			if !s.plain {
				clear(s.out)
			}
			s.spare = s.out[:0]
		}
	}
	s.out, s.has, s.distinct = nil, false, false
}

// buffer returns an empty slice with room for n elements for this batch's
// output: the last batch's memory if it is free and large enough.
func (s *Stream[T]) buffer(n int) []T {
	b := s.spare
	s.spare = nil
	if cap(b) < n {
		return make([]T, 0, n)
	}
	return b[:0]
}

// Job returns the job the stream belongs to.
func (s *Stream[T]) Job() *Job { return s.job }

// SlideDuration is the interval at which the stream produces batches.
func (s *Stream[T]) SlideDuration() time.Duration {
	return time.Duration(s.slide) * s.job.interval
}

func newStream[T any](j *Job, op string, slide uint64, parents ...node) *Stream[T] {
	s := &Stream[T]{nodeBase: nodeBase{job: j, id: len(j.nodes), op: op, slide: slide, parents: parents},
		plain: plainBytes(reflect.TypeFor[T]())}
	j.nodes = append(j.nodes, s)
	return s
}

// derive builds a stream with the parent's slide that maps each batch of the
// parent with f.
func derive[T, U any](parent *Stream[T], op string, f func(r *batchRun, in []T) []U) *Stream[U] {
	s := newStream[U](parent.job, op, parent.slide, parent)
	s.compute = func(r *batchRun) ([]U, bool) {
		if !parent.has {
			return nil, false
		}
		return f(r, parent.out), true
	}
	return s
}

// deriveOwned is derive for operators whose output is memory of their own:
// f appends it to buf, free memory of an earlier batch when there is some.
func deriveOwned[T, U any](parent *Stream[T], op string, f func(r *batchRun, in []T, buf func(n int) []U) []U) *Stream[U] {
	s := newStream[U](parent.job, op, parent.slide, parent)
	s.output = outReused
	s.compute = func(r *batchRun) ([]U, bool) {
		if !parent.has {
			return nil, false
		}
		return f(r, parent.out, s.buffer), true
	}
	return s
}

// Map returns a stream of f applied to every element.
func Map[T, U any](s *Stream[T], f func(T) U) *Stream[U] {
	return deriveOwned(s, "map", func(r *batchRun, in []T, buf func(int) []U) []U {
		out := buf(len(in))[:len(in)]
		r.job.parallelChunks(len(in), func(_, lo, hi int) {
			for i := lo; i < hi; i++ {
				out[i] = f(in[i])
			}
		})
		return out
	})
}

// Failure is an element that TryMap's function rejected, with its error.
type Failure[T any] struct {
	Elem T
	Err  error
}

// TryMap applies the fallible f to every element. The results of the
// elements f accepts form the first stream, in order; the elements it
// rejects, each with f's error, form the second: parsing with a dead-letter
// branch in one pass, without copying the good elements through a filter.
func TryMap[T, U any](s *Stream[T], f func(T) (U, error)) (ok *Stream[U], failed *Stream[Failure[T]]) {
	var (
		failures [][]Failure[T] // by chunk, reused
		ends     []int
	)
	var rejected []Failure[T]
	ok = deriveOwned(s, "tryMap", func(r *batchRun, in []T, buf func(int) []U) []U {
		out := buf(len(in))[:len(in)]
		chunks := r.job.chunkCount(len(in))
		if len(failures) < chunks {
			failures, ends = make([][]Failure[T], chunks), make([]int, chunks)
		}
		r.job.parallelChunks(len(in), func(c, lo, hi int) {
			fails, w := failures[c][:0], lo
			for i := lo; i < hi; i++ {
				u, err := f(in[i])
				if err != nil {
					fails = append(fails, Failure[T]{in[i], err})
					continue
				}
				out[w] = u
				w++
			}
			failures[c], ends[c] = fails, w
		})
		// Close the gaps the rejected elements left at the chunks' ends.
		n := 0
		rejected = nil
		for c := range chunks {
			lo := len(in) * c / chunks
			n += copy(out[n:], out[lo:ends[c]])
			rejected = append(rejected, failures[c]...)
			clear(failures[c])
		}
		clear(out[n:])
		return out[:n]
	})
	failed = newStream[Failure[T]](s.job, "tryMapFailures", s.slide, ok)
	failed.compute = func(*batchRun) ([]Failure[T], bool) {
		if !ok.has {
			return nil, false
		}
		return rejected, true
	}
	return ok, failed
}

// FlatMap returns a stream of all elements f returns for every element.
func FlatMap[T, U any](s *Stream[T], f func(T) []U) *Stream[U] {
	return derive(s, "flatMap", func(_ *batchRun, in []T) []U {
		var out []U
		for _, v := range in {
			out = append(out, f(v)...)
		}
		return out
	})
}

// Filter returns a stream of the elements for which keep is true.
func (s *Stream[T]) Filter(keep func(T) bool) *Stream[T] {
	// The output is sized to what passes, found in a first pass: a filter
	// that keeps few elements (dead letters) must not allocate room for the
	// whole batch. The mask is reused: a stream computes one batch at a time.
	var mask []bool
	var filtered *Stream[T]
	filtered = deriveOwned(s, "filter", func(_ *batchRun, in []T, buf func(int) []T) []T {
		filtered.distinct = s.distinct
		mask = slices.Grow(mask[:0], len(in))[:len(in)]
		n := 0
		for i := range in {
			mask[i] = keep(in[i])
			if mask[i] {
				n++
			}
		}
		out := buf(n)
		for i := range in {
			if mask[i] {
				out = append(out, in[i])
			}
		}
		return out
	})
	return filtered
}

// MapValues maps the value of every pair, keeping its key.
func MapValues[K, V, W any](s *Stream[Pair[K, V]], f func(V) W) *Stream[Pair[K, W]] {
	return Map(s, func(p Pair[K, V]) Pair[K, W] { return Pair[K, W]{p.Key, f(p.Value)} })
}

// FlatMapValues maps the value of every pair to any number of values, each
// paired with the original key.
func FlatMapValues[K, V, W any](s *Stream[Pair[K, V]], f func(V) []W) *Stream[Pair[K, W]] {
	return derive(s, "flatMapValues", func(_ *batchRun, in []Pair[K, V]) []Pair[K, W] {
		var out []Pair[K, W]
		for _, p := range in {
			for _, w := range f(p.Value) {
				out = append(out, Pair[K, W]{p.Key, w})
			}
		}
		return out
	})
}

// Union returns the elements of s followed by those of every other stream.
// All streams must have the same slide.
func (s *Stream[T]) Union(others ...*Stream[T]) *Stream[T] {
	parents := []node{s}
	for _, o := range others {
		parents = append(parents, o)
		if o.slide != s.slide {
			s.job.fail("union", fmt.Errorf("streams slide every %v and %v: union needs equal slides",
				s.SlideDuration(), o.SlideDuration()))
		}
	}
	u := newStream[T](s.job, "union", s.slide, parents...)
	u.compute = func(*batchRun) ([]T, bool) {
		if !s.has {
			return nil, false
		}
		n := len(s.out)
		for _, o := range others {
			n += len(o.out)
		}
		out := make([]T, 0, n)
		out = append(out, s.out...)
		for _, o := range others {
			out = append(out, o.out...)
		}
		return out, true
	}
	return u
}

// Repartition is accepted for compatibility with Spark programs. Batches are
// processed in one process here, so it returns the elements unchanged.
func (s *Stream[T]) Repartition(int) *Stream[T] {
	r := derive(s, "repartition", func(_ *batchRun, in []T) []T { return in })
	r.output = outPassThrough
	return r
}

// Count returns a stream with one element per batch: the number of elements.
func (s *Stream[T]) Count() *Stream[int64] {
	return derive(s, "count", func(_ *batchRun, in []T) []int64 { return []int64{int64(len(in))} })
}

// Reduce returns a stream with at most one element per batch: all elements
// combined with the associative function f (none for an empty batch).
func (s *Stream[T]) Reduce(f func(a, b T) T) *Stream[T] {
	return derive(s, "reduce", func(_ *batchRun, in []T) []T {
		if len(in) == 0 {
			return nil
		}
		acc := in[0]
		for _, v := range in[1:] {
			acc = f(acc, v)
		}
		return []T{acc}
	})
}

// Transform applies f to every batch: arbitrary batch (RDD) operations, such
// as those of package rdd.
func Transform[T, U any](s *Stream[T], f func(batch []T) []U) *Stream[U] {
	t := derive(s, "transform", func(_ *batchRun, in []T) []U { return f(in) })
	t.output = outPassThrough
	return t
}

// TransformTime is Transform with the batch time passed to f.
func TransformTime[T, U any](s *Stream[T], f func(t time.Time, batch []T) []U) *Stream[U] {
	t := derive(s, "transform", func(r *batchRun, in []T) []U { return f(r.plan.Time, in) })
	t.output = outPassThrough
	return t
}

// TransformWith combines the batches of two streams of equal slide with f.
func TransformWith[T, U, V any](a *Stream[T], b *Stream[U], f func(x []T, y []U) []V) *Stream[V] {
	if a.slide != b.slide {
		a.job.fail("transformWith", fmt.Errorf("streams slide every %v and %v: needs equal slides",
			a.SlideDuration(), b.SlideDuration()))
	}
	s := newStream[V](a.job, "transformWith", a.slide, a, b)
	s.output = outPassThrough
	s.compute = func(*batchRun) ([]V, bool) {
		if !a.has || !b.has {
			return nil, false
		}
		return f(a.out, b.out), true
	}
	return s
}
