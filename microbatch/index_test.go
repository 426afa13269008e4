package microbatch

import (
	"math/rand/v2"
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
