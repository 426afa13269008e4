package microbatch

import "hash/maphash"

// index maps the keys of a table to their entries' positions. It is an
// open-addressing hash table (linear probing) of positions only: the keys
// stay in the entries, where a Go map would hold every key a second time.
//
// A slot holds the entry's position and the low 32 bits of its key's hash.
// State can hold millions of keys, so its entries do not fit in the CPU's
// caches: reading an entry's key is a cache miss. The hash bits let a probe
// skip the slots of other keys without reading their entries (a key's
// entry is read once, when the bits match), and let growing and removal
// find a slot's home without reading any entry. That is 8 bytes a slot:
// 11–21 bytes a key, against a Go map's 25–30 plus the key again.
type index[K comparable] struct {
	seed  maphash.Seed
	slots []uint64 // hash<<32 | entry position + 1; 0 marks an empty slot
	n     int
}

// keyAt returns the key of the entry at a position.
type keyAt[K comparable] func(pos int32) K

func newIndex[K comparable]() index[K] { return index[K]{seed: maphash.MakeSeed()} }

func (x *index[K]) len() int { return x.n }

// bytes is the memory of the index's slots.
func (x *index[K]) bytes() int64 { return int64(cap(x.slots)) * 8 }

// hash is the low 32 bits of k's hash: enough to choose a home in any
// table an int32 position can fill.
func (x *index[K]) hash(k K) uint64 { return maphash.Comparable(x.seed, k) & 0xffff_ffff }

func slot(hash uint64, pos int32) uint64 { return hash<<32 | uint64(pos+1) }

func slotPos(s uint64) int32 { return int32(uint32(s)) - 1 }

func (x *index[K]) home(s uint64) int { return int(s>>32) & (len(x.slots) - 1) }

// find returns the position of k's entry.
func (x *index[K]) find(k K, at keyAt[K]) (int32, bool) {
	if x.n == 0 {
		return 0, false
	}
	return x.findHashed(k, x.hash(k), at)
}

// findHashed is find of a key whose hash is h.
func (x *index[K]) findHashed(k K, h uint64, at keyAt[K]) (int32, bool) {
	mask := len(x.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return 0, false
		}
		if s>>32 == h && at(slotPos(s)) == k {
			return slotPos(s), true
		}
	}
}

// add records that k, which is not in the index, is at pos.
func (x *index[K]) add(k K, pos int32) {
	// Grown at 3/4 full: probe sequences stay short.
	if 4*(x.n+1) > 3*len(x.slots) {
		x.grow()
	}
	x.place(slot(x.hash(k), pos))
	x.n++
}

// place puts s in the first free slot from its home.
func (x *index[K]) place(s uint64) {
	mask := len(x.slots) - 1
	i := x.home(s)
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = s
}

// reserve sizes an empty index for n keys, so that adding them does not
// grow it step by step.
func (x *index[K]) reserve(n int) {
	size := 16
	for 4*n > 3*size {
		size *= 2
	}
	if len(x.slots) < size {
		x.slots = make([]uint64, size)
	}
}

// fill makes the index that of the n keys at positions 0 … n-1. Adding
// them one by one writes slots at random: with millions of keys (a restart
// loading its state) each write is a cache miss. fill sorts the slots by
// the region of the array their home is in first (a counting sort), then
// places them region by region, so that its writes sweep the array once.
func (x *index[K]) fill(n int, at keyAt[K]) {
	x.reset(true)
	x.reserve(n)
	if n == 0 {
		return
	}
	const regionSlots = 4096 // 32 KiB of slots: a region's writes stay in the cache
	regions := max(1, len(x.slots)/regionSlots)
	regionOf := func(s uint64) int { return x.home(s) * regions / len(x.slots) }
	starts := make([]int, regions+1)
	byPos := make([]uint64, n)
	for i := range byPos {
		byPos[i] = slot(x.hash(at(int32(i))), int32(i))
		starts[regionOf(byPos[i])+1]++
	}
	for r := range regions {
		starts[r+1] += starts[r]
	}
	byRegion := make([]uint64, n)
	for _, s := range byPos {
		r := regionOf(s)
		byRegion[starts[r]] = s
		starts[r]++
	}
	for _, s := range byRegion {
		x.place(s)
	}
	x.n = n
}

func (x *index[K]) grow() { x.growTo(max(16, 2*len(x.slots))) }

// ensure grows the index, once, to hold n keys: each step of growing moves
// every slot, so a batch adding many keys grows it before adding them.
func (x *index[K]) ensure(n int) {
	size := max(16, len(x.slots))
	for 4*n > 3*size {
		size *= 2
	}
	if size > len(x.slots) {
		x.growTo(size)
	}
}

func (x *index[K]) growTo(size int) {
	old := x.slots
	x.slots = make([]uint64, size)
	for _, s := range old {
		if s != 0 {
			x.place(s)
		}
	}
}

// addGroup is add of up to lookupGroup keys, none of them in the index,
// at positions pos: their free slots are looked up first, all of them, so
// that the cache misses overlap (as in findGroup).
func (x *index[K]) addGroup(keys []K, pos []int32) {
	x.ensure(x.n + len(keys))
	var (
		hashes, homes [lookupGroup]uint64
		free          [lookupGroup]int
	)
	mask := len(x.slots) - 1
	for i, k := range keys {
		hashes[i] = x.hash(k)
	}
	for i := range keys {
		homes[i] = x.slots[int(hashes[i])&mask] // no branch on the loads (findGroup)
	}
	for i := range keys {
		j := int(hashes[i]) & mask
		for s := homes[i]; s != 0; s = x.slots[j] {
			j = (j + 1) & mask
		}
		free[i] = j
	}
	for i := range keys {
		// The slots from the home to free[i] were taken and stay so; if a
		// key before it took free[i] too, the next free one is its place.
		j := free[i]
		for x.slots[j] != 0 {
			j = (j + 1) & mask
		}
		x.slots[j] = slot(hashes[i], pos[i])
	}
	x.n += len(keys)
}

// remove drops k, whose entry is at pos, from the index.
func (x *index[K]) remove(k K, pos int32) {
	if x.n == 0 {
		return
	}
	if i := x.slotOf(slot(x.hash(k), pos)); i >= 0 {
		x.removeSlot(i)
	}
}

// removeGroup is remove of up to lookupGroup keys, whose slots it looks up
// first, all of them, so that their cache misses overlap (as findGroup).
func (x *index[K]) removeGroup(keys []K, pos []int32) {
	if x.n == 0 {
		return
	}
	var (
		want [lookupGroup]uint64
		at   [lookupGroup]int
	)
	for i, k := range keys {
		want[i] = slot(x.hash(k), pos[i])
	}
	for i := range keys {
		at[i] = x.slotOf(want[i])
	}
	for i := range keys {
		// Removing the keys before it may have shifted its slot back.
		if at[i] < 0 || x.slots[at[i]] != want[i] {
			at[i] = x.slotOf(want[i])
		}
		if at[i] >= 0 {
			x.removeSlot(at[i])
		}
	}
}

// slotOf returns the index of slot s, or -1 when no slot holds it.
func (x *index[K]) slotOf(s uint64) int {
	mask := len(x.slots) - 1
	for i := x.home(s); x.slots[i] != 0; i = (i + 1) & mask {
		if x.slots[i] == s {
			return i
		}
	}
	return -1
}

// removeSlot empties slot i.
func (x *index[K]) removeSlot(i int) {
	mask := len(x.slots) - 1
	x.n--
	// Backward-shift deletion: move later entries of the probe run into
	// the hole when that brings them no further from home, so that no
	// tombstones are needed and lookups stop at the first empty slot.
	hole := i
	for j := (i + 1) & mask; x.slots[j] != 0; j = (j + 1) & mask {
		h := x.home(x.slots[j])
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

// lookupGroup is how many keys findGroup looks up at once: enough misses in
// flight to cover DRAM's latency, few enough that their lines stay cached
// until the caller uses them.
const lookupGroup = 16

// findGroup finds the entries of up to lookupGroup keys: pos[i] is the
// position of keys[i]'s entry, or -1. Found one at a time, every lookup in
// a table larger than the CPU's caches waits for its slot, then for its
// entry, and only then starts the next key's. findGroup hashes all the keys
// first, then probes all their slots, then compares all their candidate
// entries: within each loop no load depends on another key's, so the CPU
// has the misses of the whole group in flight at once.
func (x *index[K]) findGroup(keys []K, at keyAt[K], pos []int32) {
	n := len(keys)
	if x.n == 0 {
		for i := range n {
			pos[i] = -1
		}
		return
	}
	var hashes, homes [lookupGroup]uint64
	for i := range n {
		hashes[i] = x.hash(keys[i])
	}
	// Every key's home slot, loaded with no branch on what was loaded: a
	// branch on a value still in flight from memory is mispredicted about
	// as often as not, and each misprediction waits for its load, which
	// serialised the group's misses (BenchmarkIndexFind, grouped: about 6%
	// fewer ns a lookup, alternating the two builds).
	mask := len(x.slots) - 1
	for i := range n {
		homes[i] = x.slots[int(hashes[i])&mask]
	}
	// The first slot of each key's run with its hash bits (mostly the home
	// slot, or in its line).
	for i := range n {
		h := hashes[i]
		pos[i] = -1
		for j, s := int(h)&mask, homes[i]; s != 0; s = x.slots[j] {
			if s>>32 == h {
				pos[i] = slotPos(s)
				break
			}
			j = (j + 1) & mask
		}
	}
	// A candidate that is another key with the same hash bits (rare): the
	// key is looked up again in full.
	for i := range n {
		if p := pos[i]; p >= 0 && at(p) != keys[i] {
			pos[i] = -1
			if p, ok := x.findHashed(keys[i], hashes[i], at); ok {
				pos[i] = p
			}
		}
	}
}
