package microbatch

import (
	"hash/maphash"
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

// radixWorker is the scratch space of one worker of foldRadix, reused from
// batch to batch.
type radixWorker[K comparable, C any] struct {
	// slots is the table of the bucket being folded: the low 32 bits of a
	// key's hash and its entry's index+1 in ents (0: empty).
	slots []uint64
	ents  []shardEntry[K, C]
	// firsts marks, by batch index, the first occurrence of every key the
	// worker folded.
	firsts []uint64
}

// foldRadix folds in with p workers: each hashes a contiguous chunk and
// counts its elements by bucket; a prefix sum over (bucket, chunk) places
// every element in its bucket in batch order; then each worker folds a
// range of buckets, one at a time, in batch order. The keys come out in the
// order of their first occurrence, like the other folds': a key's output
// position is the number of first occurrences before its own, counted on a
// bitmap of them.
func (f *folder[K, V, C]) foldRadix(p int, in []Pair[K, V], buf func(n int) []Pair[K, C]) []Pair[K, C] {
	n := len(in)
	shift := 64 - max(1, bits.Len(uint(f.keys/radixBucketKeys)))
	buckets := 1 << (64 - shift)
	f.hashes = resize(f.hashes, n)
	f.sorted = resize(f.sorted, n)
	f.counts = resize(f.counts, p*buckets)
	clear(f.counts)
	hashes, sorted, counts := f.hashes, f.sorted, f.counts
	chunk := func(c int) (lo, hi int) { return n * c / p, n * (c + 1) / p }
	var wg sync.WaitGroup
	for c := range p {
		wg.Go(func() {
			lo, hi := chunk(c)
			mine := counts[c*buckets : (c+1)*buckets]
			for i := lo; i < hi; i++ {
				h := maphash.Comparable(f.seed, in[i].Key)
				hashes[i] = h
				mine[h>>shift]++
			}
		})
	}
	wg.Wait()
	// counts becomes where each chunk's elements of each bucket go: bucket
	// by bucket, and within a bucket chunk by chunk, which is batch order.
	bucketStart := make([]int32, buckets+1)
	next := int32(0)
	for b := range buckets {
		bucketStart[b] = next
		for c := range p {
			k := c*buckets + b
			counts[k], next = next, next+counts[k]
		}
	}
	bucketStart[buckets] = next
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
	if len(f.radix) != p {
		f.radix = make([]radixWorker[K, C], p)
	}
	words := (n + 63) / 64
	// Worker w folds the buckets [from[w], from[w+1]), about n/p elements.
	from := make([]int, p+1)
	for w, b := 1, 0; w < p; w++ {
		for b < buckets && int(bucketStart[b]) < n*w/p {
			b++
		}
		from[w] = b
	}
	from[p] = buckets
	for w := range p {
		wg.Go(func() {
			f.foldBuckets(&f.radix[w], sorted, bucketStart[from[w]:from[w+1]+1], words)
		})
	}
	wg.Wait()
	// rank[k] is the first occurrences in words before k.
	marks := f.radix[0].firsts
	for w := 1; w < p; w++ {
		for k, m := range f.radix[w].firsts {
			marks[k] |= m
		}
	}
	rank := make([]int32, words)
	total := int32(0)
	for k, m := range marks {
		rank[k] = total
		total += int32(bits.OnesCount64(m))
	}
	out := alloc(buf, int(total))[:total]
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
	if f.scratchHoldsMemory {
		clear(sorted)
		for w := range f.radix {
			clear(f.radix[w].ents)
		}
	}
	f.keys = int(total)
	return out
}

// radixElem is an element of a batch in its bucket: sorted so, the fold
// of a bucket reads its elements in sequence.
type radixElem[K comparable, V any] struct {
	kv Pair[K, V]
	h  uint64
	i  int32 // its index in the batch
}

// foldBuckets folds the buckets sorted[starts[0]:starts[1]],
// sorted[starts[1]:starts[2]] …, into w.ents, marking first occurrences in
// w.firsts.
func (f *folder[K, V, C]) foldBuckets(w *radixWorker[K, C], sorted []radixElem[K, V], starts []int32, words int) {
	w.ents = w.ents[:0]
	w.firsts = resize(w.firsts, words)
	clear(w.firsts)
	for b := 0; b+1 < len(starts); b++ {
		elems := sorted[starts[b]:starts[b+1]]
		if len(elems) == 0 {
			continue
		}
		// At most half full, for as many keys as elements, up to twice a
		// bucket's expected keys; grown if the bucket holds more.
		size := 1 << bits.Len(uint(2*min(len(elems), 2*radixBucketKeys)-1))
		w.slots = resize(w.slots, size)
		clear(w.slots)
		base, mask := len(w.ents), size-1
		for k := range elems {
			el := &elems[k]
			h := el.h & 0xffff_ffff
			j := int(h) & mask
			for {
				s := w.slots[j]
				if s == 0 {
					w.slots[j] = h<<32 | uint64(len(w.ents)-base+1)
					w.ents = append(w.ents, shardEntry[K, C]{el.kv.Key, f.create(el.kv.Value), int(el.i)})
					w.firsts[el.i>>6] |= 1 << (el.i & 63)
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
}

// rehash makes slots a table of size for ents.
func (f *folder[K, V, C]) rehash(slots []uint64, size int, ents []shardEntry[K, C]) []uint64 {
	slots = resize(slots, size)
	clear(slots)
	mask := size - 1
	for e := range ents {
		h := maphash.Comparable(f.seed, ents[e].key) & 0xffff_ffff
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
