package microbatch

import "hash/maphash"

// index maps the keys of a table to their entries' positions. It is an
// open-addressing hash table (linear probing) of positions only: the keys
// stay in the entries, where a Go map would hold every key a second time.
// That is about 6 bytes a key against a map's 25-30 for a word-sized key,
// and state can hold millions of keys.
type index[K comparable] struct {
	seed  maphash.Seed
	slots []int32 // entry position + 1; 0 marks an empty slot
	n     int
}

// keyAt returns the key of the entry at a position.
type keyAt[K comparable] func(pos int32) K

func newIndex[K comparable]() index[K] { return index[K]{seed: maphash.MakeSeed()} }

func (x *index[K]) len() int { return x.n }

// bytes is the memory of the index's slots.
func (x *index[K]) bytes() int64 { return int64(cap(x.slots)) * 4 }

func (x *index[K]) home(k K) int {
	return int(maphash.Comparable(x.seed, k) & uint64(len(x.slots)-1))
}

// find returns the position of k's entry.
func (x *index[K]) find(k K, at keyAt[K]) (int32, bool) {
	if x.n == 0 {
		return 0, false
	}
	mask := len(x.slots) - 1
	for i := x.home(k); ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return 0, false
		}
		if at(s-1) == k {
			return s - 1, true
		}
	}
}

// add records that k, which is not in the index, is at pos.
func (x *index[K]) add(k K, pos int32, at keyAt[K]) {
	// Grown at 3/4 full: probe sequences stay short.
	if 4*(x.n+1) > 3*len(x.slots) {
		x.grow(at)
	}
	mask := len(x.slots) - 1
	i := x.home(k)
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = pos + 1
	x.n++
}

func (x *index[K]) grow(at keyAt[K]) {
	old := x.slots
	x.slots = make([]int32, max(16, 2*len(old)))
	mask := len(x.slots) - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := x.home(at(s - 1))
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = s
	}
}

// remove drops k, which at still finds, from the index.
func (x *index[K]) remove(k K, at keyAt[K]) {
	if x.n == 0 {
		return
	}
	mask := len(x.slots) - 1
	i := x.home(k)
	for {
		s := x.slots[i]
		if s == 0 {
			return
		}
		if at(s-1) == k {
			break
		}
		i = (i + 1) & mask
	}
	x.n--
	// Backward-shift deletion: move later entries of the probe run into
	// the hole when that brings them no further from home, so that no
	// tombstones are needed and lookups stop at the first empty slot.
	hole := i
	for j := (i + 1) & mask; x.slots[j] != 0; j = (j + 1) & mask {
		h := x.home(at(x.slots[j] - 1))
		// The entry at j may fill the hole if its home is not in (hole, j].
		if (j-h)&mask >= (j-hole)&mask {
			x.slots[hole] = x.slots[j]
			hole = j
		}
	}
	x.slots[hole] = 0
}

// reset empties the index, keeping its memory when keep is set.
func (x *index[K]) reset(keep bool) {
	if keep {
		clear(x.slots)
	} else {
		x.slots = nil
	}
	x.n = 0
}
