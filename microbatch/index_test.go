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
