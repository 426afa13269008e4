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
		if op%1000 == 0 {
			for k, want := range model {
				if got, ok := x.find(k, at); !ok || got != want {
					t.Fatalf("op %d: key %d lost after removals: %d, %v; want %d", op, k, got, ok, want)
				}
			}
		}
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
