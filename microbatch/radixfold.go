package microbatch

import (
	"math/bits"
	"sync"
)

// A batch with many distinct keys (hundreds of thousands of IPs) folds into
// maps larger than the CPU's caches, where every element is a cache miss.
// foldRadix first sorts the batch's elements by the top bits of their key's
// hash into buckets of about radixBucketKeys keys (a counting sort, which
// reads and writes sequentially), then folds each bucket in a table small
// enough to stay in the cache.
const (
	// radixMin is the distinct keys of the last batch from which fold sorts
	// by hash first; below it a map per shard stays in the cache anyway.
	radixMin = 1 << 13
	// radixBucketKeys is the keys a bucket is meant to hold: its table
	// (8 bytes a slot, at most half full) and entries fit in a core's L2.
	radixBucketKeys = 1 << 10
)

// radixBits is how many top bits of a hash number the buckets of a fold
// into about keys keys.
func radixBits(keys int) int {
	return max(1, bits.Len(uint(keys/radixBucketKeys)))
}

// radixPart is a batch sorted by bucket: the elements of bucket b, in batch
// order, are elems[starts[b]:starts[b+1]], where a bucket holds the keys
// whose hashes share their top bits bits. Buckets nest: bucket b of a
// coarser sort, with fewer bits, is the run of this sort's buckets that
// start with b's bits, so a part sorted with fewer bits than the others is
// sorted again by theirs in one pass (refine) before they fold together.
type radixPart[K comparable, V any] struct {
	elems  []radixElem[K, V]
	starts []int32
	bits   int
}

// radixElem is an element of a batch in its bucket: sorted so, the fold
// of a bucket reads its elements in sequence.
type radixElem[K comparable, V any] struct {
	kv Pair[K, V]
	h  uint64
	i  int32 // its index in the batch
}

// bucket returns the range of part's elements in bucket b of a sort by the
// top width bits (at most part.bits).
func (part *radixPart[K, V]) bucket(b, width int) []radixElem[K, V] {
	d := part.bits - width
	return part.elems[part.starts[b<<d]:part.starts[(b+1)<<d]]
}

// radixWorker is the scratch space of one worker of foldParts, reused from
// batch to batch.
type radixWorker[K comparable, V, C any] struct {
	// slots is the table of the bucket being folded: the low 32 bits of a
	// key's hash and its entry's index+1 in ents (0: empty).
	slots []uint64
	ents  []shardEntry[K, C]
	// firsts marks, by index in the parts folded together, the first
	// occurrence of every key the worker folded.
	firsts []uint64
	runs   [][]radixElem[K, V]
}

// foldRadix folds in, with p workers, after sorting it by bucket.
func (f *folder[K, V, C]) foldRadix(p int, in []Pair[K, V], buf func(n int) []Pair[K, C]) []Pair[K, C] {
	f.sort(p, in, radixBits(f.keys), &f.sorted)
	out := f.foldParts(p, []*radixPart[K, V]{&f.sorted}, buf)
	if f.scratchHoldsMemory {
		clear(f.sorted.elems)
	}
	return out
}

// sort sorts in into part by the top width bits of its keys' hashes, with p
// workers: each hashes a contiguous chunk and counts its elements by
// bucket; a prefix sum over (bucket, chunk) places every element in its
// bucket in batch order.
func (f *folder[K, V, C]) sort(p int, in []Pair[K, V], width int, part *radixPart[K, V]) {
	n := len(in)
	if n < parallelMin {
		p = 1
	}
	shift := 64 - width
	buckets := 1 << width
	part.bits = width
	part.elems = resize(part.elems, n)
	part.starts = resize(part.starts, buckets+1)
	f.hashes = resize(f.hashes, n)
	f.counts = resize(f.counts, p*buckets)
	clear(f.counts)
	hashes, sorted, counts := f.hashes, part.elems, f.counts
	chunk := func(c int) (lo, hi int) { return n * c / p, n * (c + 1) / p }
	var wg sync.WaitGroup
	for c := range p {
		wg.Go(func() {
			lo, hi := chunk(c)
			mine := counts[c*buckets : (c+1)*buckets]
			for i := lo; i < hi; i++ {
				h := f.hash(in[i].Key)
				hashes[i] = h
				mine[h>>shift]++
			}
		})
	}
	wg.Wait()
	// counts becomes where each chunk's elements of each bucket go: bucket
	// by bucket, and within a bucket chunk by chunk, which is batch order.
	next := int32(0)
	for b := range buckets {
		part.starts[b] = next
		for c := range p {
			k := c*buckets + b
			counts[k], next = next, next+counts[k]
		}
	}
	part.starts[buckets] = next
	for c := range p {
		wg.Go(func() {
			lo, hi := chunk(c)
			at := counts[c*buckets : (c+1)*buckets]
			for i := lo; i < hi; i++ {
				h := hashes[i]
				sorted[at[h>>shift]] = radixElem[K, V]{in[i], h, int32(i)}
				at[h>>shift]++
			}
		})
	}
	wg.Wait()
}

// refine sorts part again by width bits, more than it was sorted by. A
// bucket of part is a run of the finer buckets, so each finer bucket's
// elements, taken from it in order, stay in batch order.
func (f *folder[K, V, C]) refine(part *radixPart[K, V], width int) {
	shift, buckets := 64-width, 1<<width
	f.counts = resize(f.counts, buckets+1)
	clear(f.counts)
	for _, e := range part.elems {
		f.counts[e.h>>shift+1]++
	}
	for b := range buckets {
		f.counts[b+1] += f.counts[b]
	}
	part.starts = append(part.starts[:0], f.counts...)
	f.refined = resize(f.refined, len(part.elems))
	for _, e := range part.elems {
		f.refined[f.counts[e.h>>shift]] = e
		f.counts[e.h>>shift]++
	}
	part.elems, f.refined = f.refined, part.elems
	if f.scratchHoldsMemory {
		clear(f.refined) // its elements are part's now
	}
	part.bits = width
}

// foldParts folds parts, in order, as one batch of their elements one
// after the other, with p workers: each folds a range of buckets, one at a
// time, every part's run of a bucket in order. The keys come out in the
// order of their first occurrence, like the other folds' (placeByFirst),
// or in bucket order if f.bucketOrder (placeByBucket).
func (f *folder[K, V, C]) foldParts(p int, parts []*radixPart[K, V], buf func(n int) []Pair[K, C]) []Pair[K, C] {
	n, width := 0, 0
	for _, part := range parts {
		n += len(part.elems)
		width = max(width, part.bits)
	}
	if n == 0 {
		f.keys = 0
		return alloc(buf, 0)
	}
	// Parts sorted by fewer bits (smaller batches) are sorted again by the
	// finest parts' bits, so that every bucket's table stays small.
	for _, part := range parts {
		if part.bits < width {
			f.refine(part, width)
		}
	}
	if n < parallelMin {
		p = 1
	}
	buckets := 1 << width
	// ends[b] is the elements of the buckets before b+1, to split the
	// buckets between workers: worker w folds the buckets [from[w],
	// from[w+1]), about n/p elements.
	f.counts = resize(f.counts, buckets)
	ends := f.counts
	total := int32(0)
	for b := range buckets {
		for _, part := range parts {
			total += int32(len(part.bucket(b, width)))
		}
		ends[b] = total
	}
	from := make([]int, p+1)
	for w, b := 1, 0; w < p; w++ {
		for b < buckets && int(ends[b]) <= n*w/p {
			b++
		}
		from[w] = b
	}
	from[p] = buckets
	offsets := make([]int32, len(parts))
	for k := 1; k < len(parts); k++ {
		offsets[k] = offsets[k-1] + int32(len(parts[k-1].elems))
	}
	// Workers' scratch space only grows: a fold of a small window runs on
	// one worker, and the next, larger one finds every worker's still.
	if len(f.radix) < p {
		f.radix = append(f.radix, make([]radixWorker[K, V, C], p-len(f.radix))...)
	}
	words := (n + 63) / 64
	var wg sync.WaitGroup
	for w := range p {
		wg.Go(func() {
			f.foldBuckets(&f.radix[w], parts, offsets, width, from[w], from[w+1], words)
		})
	}
	wg.Wait()
	var out []Pair[K, C]
	if f.bucketOrder {
		out = f.placeByBucket(p, buf)
	} else {
		out = f.placeByFirst(p, words, buf)
	}
	if f.scratchHoldsMemory {
		for w := range f.radix {
			clear(f.radix[w].ents)
			clear(f.radix[w].runs)
		}
	}
	f.keys = len(out)
	return out
}

// placeByBucket lists the keys the p workers folded in bucket order: each
// worker's in turn, as they folded ranges of buckets in order.
func (f *folder[K, V, C]) placeByBucket(p int, buf func(n int) []Pair[K, C]) []Pair[K, C] {
	keys := 0
	for w := range p {
		keys += len(f.radix[w].ents)
	}
	out := alloc(buf, keys)[:keys]
	var wg sync.WaitGroup
	at := 0
	for w := range p {
		mine := out[at : at+len(f.radix[w].ents)]
		at += len(mine)
		wg.Go(func() {
			for i, e := range f.radix[w].ents {
				mine[i] = Pair[K, C]{e.key, e.val}
			}
		})
	}
	wg.Wait()
	return out
}

// placeByFirst lists the keys the p workers folded in the order of their
// first occurrence: a key's position is the number of first occurrences
// marked before its own.
func (f *folder[K, V, C]) placeByFirst(p, words int, buf func(n int) []Pair[K, C]) []Pair[K, C] {
	// rank[k] is the first occurrences in words before k.
	marks := f.radix[0].firsts
	for w := 1; w < p; w++ {
		for k, m := range f.radix[w].firsts {
			marks[k] |= m
		}
	}
	rank := make([]int32, words)
	keys := int32(0)
	for k, m := range marks {
		rank[k] = keys
		keys += int32(bits.OnesCount64(m))
	}
	out := alloc(buf, int(keys))[:keys]
	var wg sync.WaitGroup
	for w := range p {
		wg.Go(func() {
			for _, e := range f.radix[w].ents {
				k := e.first >> 6
				pos := rank[k] + int32(bits.OnesCount64(marks[k]&(1<<(e.first&63)-1)))
				out[pos] = Pair[K, C]{e.key, e.val}
			}
		})
	}
	wg.Wait()
	return out
}

// foldBuckets folds the buckets [from, to) of parts, sorted by width bits,
// into w.ents, marking first occurrences in w.firsts: part k's elements
// are numbered from offsets[k].
func (f *folder[K, V, C]) foldBuckets(w *radixWorker[K, V, C], parts []*radixPart[K, V], offsets []int32, width, from, to, words int) {
	w.ents = w.ents[:0]
	if !f.bucketOrder {
		w.firsts = resize(w.firsts, words)
		clear(w.firsts)
	}
	for b := from; b < to; b++ {
		w.runs = w.runs[:0]
		elems := 0
		for _, part := range parts {
			run := part.bucket(b, width)
			w.runs = append(w.runs, run)
			elems += len(run)
		}
		if elems == 0 {
			continue
		}
		// At most half full, for as many keys as elements, up to twice a
		// bucket's expected keys; grown if the bucket holds more.
		size := 1 << bits.Len(uint(2*min(elems, 2*radixBucketKeys)-1))
		w.slots = resize(w.slots, size)
		clear(w.slots)
		base, mask := len(w.ents), size-1
		for k, run := range w.runs {
			offset := offsets[k]
			for e := range run {
				el := &run[e]
				h := el.h & 0xffff_ffff
				j := int(h) & mask
				for {
					s := w.slots[j]
					if s == 0 {
						first := offset + el.i
						w.slots[j] = h<<32 | uint64(len(w.ents)-base+1)
						w.ents = append(w.ents, shardEntry[K, C]{el.kv.Key, f.first(el.kv.Value), int(first)})
						if !f.bucketOrder {
							w.firsts[first>>6] |= 1 << (first & 63)
						}
						if 2*(len(w.ents)-base) > size {
							size, mask = 2*size, 2*size-1
							w.slots = f.rehash(w.slots, size, w.ents[base:])
						}
						break
					}
					if s>>32 == h {
						if e := &w.ents[base+int(uint32(s))-1]; e.key == el.kv.Key {
							e.val = f.merge(e.val, el.kv.Value)
							break
						}
					}
					j = (j + 1) & mask
				}
			}
		}
		if f.keep != nil {
			f.dropRejected(w, base)
		}
	}
}

// dropRejected removes from w.ents[base:], a bucket just folded, the keys
// f.keep rejects, unmarking their first occurrences: filtered while the
// bucket is in the cache, not in a pass over the whole output.
func (f *folder[K, V, C]) dropRejected(w *radixWorker[K, V, C], base int) {
	kept := base
	for _, e := range w.ents[base:] {
		if f.keep(Pair[K, C]{e.key, e.val}) {
			w.ents[kept] = e
			kept++
		} else if !f.bucketOrder {
			w.firsts[e.first>>6] &^= 1 << (e.first & 63)
		}
	}
	clear(w.ents[kept:])
	w.ents = w.ents[:kept]
}

// rehash makes slots a table of size for ents.
func (f *folder[K, V, C]) rehash(slots []uint64, size int, ents []shardEntry[K, C]) []uint64 {
	slots = resize(slots, size)
	clear(slots)
	mask := size - 1
	for e := range ents {
		h := f.hash(ents[e].key) & 0xffff_ffff
		j := int(h) & mask
		for slots[j] != 0 {
			j = (j + 1) & mask
		}
		slots[j] = h<<32 | uint64(e+1)
	}
	return slots
}

// resize returns s with length n, reusing its memory when it can (the
// contents are not kept).
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
