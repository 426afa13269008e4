package microbatch

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestIndexMatchesAMap applies random adds and removes to an index and to a
// Go map, over few keys (so that probe runs are long, wrap around the slot
// array and are cut by removals), and checks that both always find the same.
func TestIndexMatchesAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var keys []uint64 // the entries: position → key
	at := func(pos int32) uint64 { return keys[pos] }
	x := newIndex[uint64]()
	model := map[uint64]int32{}
	for op := range 200_000 {
		k := rng.Uint64N(300)
		pos, ok := x.find(k, at)
		wantPos, wantOK := model[k]
		if ok != wantOK || (ok && pos != wantPos) {
			t.Fatalf("op %d: find(%d) = %d, %v; want %d, %v", op, k, pos, ok, wantPos, wantOK)
		}
		switch {
		case !ok:
			keys = append(keys, k)
			x.add(k, int32(len(keys)-1))
			model[k] = int32(len(keys) - 1)
		case rng.IntN(2) == 0:
			x.remove(k, pos)
			delete(model, k)
		}
		if x.len() != len(model) {
			t.Fatalf("op %d: len %d, want %d", op, x.len(), len(model))
		}
		if op%100 == 50 {
			// removeGroup drops distinct keys whose runs may overlap.
			var group []uint64
			var pos []int32
			for k := range 300 {
				if p, ok := model[uint64(k)]; ok && rng.IntN(3) == 0 && len(group) < lookupGroup {
					group, pos = append(group, uint64(k)), append(pos, p)
					delete(model, uint64(k))
				}
			}
			x.removeGroup(group, pos)
			if x.len() != len(model) {
				t.Fatalf("op %d: removed %d keys in a group: len %d, want %d", op, len(group), x.len(), len(model))
			}
		}
		if op%100 == 25 {
			// addGroup adds distinct absent keys whose runs may overlap.
			var group []uint64
			var pos []int32
			for k := range uint64(300) {
				if _, ok := model[k]; !ok && rng.IntN(3) == 0 && len(group) < lookupGroup {
					keys = append(keys, k)
					group, pos = append(group, k), append(pos, int32(len(keys)-1))
					model[k] = int32(len(keys) - 1)
				}
			}
			x.addGroup(group, pos)
			if x.len() != len(model) {
				t.Fatalf("op %d: added %d keys in a group: len %d, want %d", op, len(group), x.len(), len(model))
			}
		}
		if op%100 == 0 {
			// findGroup agrees with find, present and absent keys mixed.
			group := make([]uint64, 1+rng.IntN(lookupGroup))
			for i := range group {
				group[i] = rng.Uint64N(300)
			}
			pos := make([]int32, len(group))
			x.findGroup(group, at, pos)
			for i, k := range group {
				want, ok := model[k]
				if !ok {
					want = -1
				}
				if pos[i] != want {
					t.Fatalf("op %d: findGroup of %d = %d; want %d", op, k, pos[i], want)
				}
			}
		}
		if op%1000 == 0 {
			for k, want := range model {
				if got, ok := x.find(k, at); !ok || got != want {
					t.Fatalf("op %d: key %d lost after removals: %d, %v; want %d", op, k, got, ok, want)
				}
			}
		}
	}
}

// TestFindGroupSkipsOtherKeysWithTheSameHashBits gives two keys the same
// hash bits (a collision of the low 32 bits, rare with real keys) and checks
// that findGroup does not take one for the other.
func TestFindGroupSkipsOtherKeysWithTheSameHashBits(t *testing.T) {
	keys := []uint64{10, 20, 30} // 30 is never indexed
	at := func(pos int32) uint64 { return keys[pos] }
	x := newIndex[uint64]()
	x.reserve(4)
	h := x.hash(20)
	x.place(slot(h, 0)) // key 10, indexed under 20's hash bits
	x.place(slot(h, 1))
	x.n = 2
	pos := make([]int32, 3)
	x.findGroup([]uint64{20, 30, 10}, at, pos)
	// 10 is not under its own hash bits: not found, as find would say.
	if want := []int32{1, -1, -1}; !reflect.DeepEqual(pos, want) {
		t.Fatalf("findGroup = %v; want %v", pos, want)
	}
	if _, ok := x.find(10, at); ok {
		t.Fatal("find(10) found it under another key's hash bits")
	}
}

// TestTableCompactionKeepsKeysFindable removes most keys of a table, which
// compacts its entries, and checks every remaining key and value.
func TestTableCompactionKeepsKeysFindable(t *testing.T) {
	tb := newTable[string, int]("t")
	for i := range 10_000 {
		tb.put(string(rune('a'+i%26))+string(rune(i)), i, 0)
	}
	tb.committed()
	removed := 0
	tb.each(func(k string, v int, _ int64) {
		if v%10 != 0 {
			tb.remove(k)
			removed++
		}
	})
	tb.committed() // compacts: more than half the entries are dead
	if len(tb.entries) != 1000 || tb.len() != 1000 {
		t.Fatalf("after removing %d: %d entries, %d keys; want 1000 of each", removed, len(tb.entries), tb.len())
	}
	for i := range 10_000 {
		v, ok := tb.get(string(rune('a'+i%26)) + string(rune(i)))
		if ok != (i%10 == 0) || (ok && v != i) {
			t.Fatalf("key %d: %d, %v", i, v, ok)
		}
	}
}

// TestIndexFill builds indexes with fill, from none to many keys (so that
// regions overflow into the next and the last wraps around), and checks
// that every key is found at its position, that absent keys are not, and
// that the index then takes adds and removes like one built by adds.
func TestIndexFill(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 11, 12, 13, 1000, 3 << 12, 100_000} {
		keys := make([]uint64, n)
		seen := map[uint64]bool{}
		for i := range keys {
			for {
				keys[i] = rng.Uint64()
				if !seen[keys[i]] {
					break
				}
			}
			seen[keys[i]] = true
		}
		at := func(pos int32) uint64 { return keys[pos] }
		x := newIndex[uint64]()
		x.add(42, 0) // fill replaces what the index held
		x.fill(n, at)
		if x.len() != n {
			t.Fatalf("n=%d: len %d", n, x.len())
		}
		for i, k := range keys {
			if pos, ok := x.find(k, at); !ok || pos != int32(i) {
				t.Fatalf("n=%d: find(key %d) = %d, %v", n, i, pos, ok)
			}
		}
		for range 1000 {
			if k := rng.Uint64(); !seen[k] {
				if _, ok := x.find(k, at); ok {
					t.Fatalf("n=%d: found absent key %d", n, k)
				}
			}
		}
		for i := 0; i < n; i += 2 {
			x.remove(keys[i], int32(i))
		}
		keys = append(keys, 1, 2, 3)
		for i := n; i < len(keys); i++ {
			x.add(keys[i], int32(i))
		}
		for i, k := range keys {
			pos, ok := x.find(k, at)
			if want := i >= n || i%2 == 1; ok != want || (ok && pos != int32(i)) {
				t.Fatalf("n=%d: after removes and adds, find(key %d) = %d, %v; want found %v", n, i, pos, ok, want)
			}
		}
	}
}

// TestTableWritesOnlyChangedStates checks that setting a key's state to an
// equal value does not mark it changed, and that any other value does,
// for the kinds of state types the comparison sees as bytes.
func TestTableWritesOnlyChangedStates(t *testing.T) {
	type pair struct {
		A int32
		B string
	}
	check := func(name string, changed int, want int) {
		t.Helper()
		if changed != want {
			t.Errorf("%s: %d keys changed, want %d", name, changed, want)
		}
	}
	ints := newTable[string, int64]("ints")
	ints.put("a", 1000, 0)
	ints.put("b", -5, 0)
	ints.committed()
	ints.put("a", 1000, 0)
	ints.put("b", -5, 0)
	check("int64 set to the same values", ints.changed(), 0)
	ints.put("b", 5, 0)
	check("int64 set to another value", ints.changed(), 1)

	structs := newTable[string, pair]("structs")
	structs.put("a", pair{1, "x"}, 0)
	structs.committed()
	structs.put("a", pair{1, "x"}, 0) // the same string: its bytes are its pointer and length
	check("struct set to the same value", structs.changed(), 0)
	structs.put("a", pair{1, "y"}, 0)
	check("struct set to another string", structs.changed(), 1)
	structs.committed()
	structs.put("a", pair{2, "y"}, 0)
	check("struct set to another number", structs.changed(), 1)

	type plain struct{ A, B int64 } // compared as bytes
	plains := newTable[string, plain]("plains")
	plains.put("a", plain{1, 2}, 0)
	plains.committed()
	plains.put("a", plain{1, 2}, 0)
	check("padding-free struct set to the same value", plains.changed(), 0)
	plains.put("a", plain{1, 3}, 0)
	check("padding-free struct set to another value", plains.changed(), 1)
	for typ, want := range map[reflect.Type]bool{
		reflect.TypeFor[int64]():     true,
		reflect.TypeFor[plain]():     true,
		reflect.TypeFor[[3]uint16](): true,
		reflect.TypeFor[pair]():      false, // a string, and padding
		reflect.TypeFor[struct {
			A int8
			B int64
		}](): false, // padding
		reflect.TypeFor[*int](): false,
	} {
		if got := plainBytes(typ); got != want {
			t.Errorf("plainBytes(%v) = %v, want %v", typ, got, want)
		}
	}

	slices := newTable[string, []int]("slices") // not comparable: always written
	v := []int{1}
	slices.put("a", v, 0)
	slices.committed()
	slices.put("a", v, 0)
	check("slice set to the same slice", slices.changed(), 1)
}

// BenchmarkIndexFind looks up random keys of a table of 1M entries, larger
// than the CPU's caches, one at a time and in groups (findGroup).
func BenchmarkIndexFind(b *testing.B) {
	const n = 1 << 20
	tb := newTable[uint64, int64]("t")
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = rng.Uint64()
		tb.put(keys[i], int64(i), 0)
	}
	probe := make([]uint64, n)
	for i := range probe {
		probe[i] = keys[rng.IntN(n)]
		if i%4 == 0 {
			probe[i] = rng.Uint64() // absent
		}
	}
	b.Run("one", func(b *testing.B) {
		found := 0
		for i := range b.N {
			if _, ok := tb.find(probe[i%n]); ok {
				found++
			}
		}
		if b.N >= n && found < n/2 {
			b.Fatalf("found %d of %d", found, b.N)
		}
	})
	b.Run("group", func(b *testing.B) {
		var pos [lookupGroup]int32
		found := 0
		for i := 0; i < b.N; i += lookupGroup {
			lo := i % n
			ks := probe[lo:min(lo+lookupGroup, n, lo+b.N-i)]
			tb.index.findGroup(ks, tb.keyAt, pos[:len(ks)])
			for _, p := range pos[:len(ks)] {
				if p >= 0 {
					found++
				}
			}
		}
		if b.N >= n && found < n/2 {
			b.Fatalf("found %d of %d", found, b.N)
		}
	})
}
