package rdd

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dstream-io/dstream/microbatch"
)

type kv = microbatch.Pair[string, int]

func pairs(s ...any) []kv {
	var out []kv
	for i := 0; i < len(s); i += 2 {
		out = append(out, microbatch.KV(s[i].(string), s[i+1].(int)))
	}
	return out
}

func TestMapFilter(t *testing.T) {
	in := []int{3, 1, 4, 1, 5}
	orig := slices.Clone(in)
	if got, want := Map(in, func(v int) string { return fmt.Sprint(v * 2) }), []string{"6", "2", "8", "2", "10"}; !slices.Equal(got, want) {
		t.Errorf("Map = %v, want %v", got, want)
	}
	if got, want := Filter(in, func(v int) bool { return v > 1 }), []int{3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("Filter = %v, want %v", got, want)
	}
	if got := Filter(in, func(int) bool { return false }); len(got) != 0 {
		t.Errorf("Filter of nothing = %v", got)
	}
	if got := Map([]int(nil), func(v int) int { return v }); len(got) != 0 {
		t.Errorf("Map of nil = %v", got)
	}
	if !slices.Equal(in, orig) {
		t.Errorf("the input changed: %v", in)
	}
}

func TestSortBy(t *testing.T) {
	in := pairs("a", 2, "b", 3, "c", 2, "d", 1, "e", 3)
	orig := slices.Clone(in)
	for _, test := range []struct {
		name      string
		ascending bool
		want      []kv
	}{
		{"descending keeps ties in batch order", false, pairs("b", 3, "e", 3, "a", 2, "c", 2, "d", 1)},
		{"ascending keeps ties in batch order", true, pairs("d", 1, "a", 2, "c", 2, "b", 3, "e", 3)},
	} {
		if got := SortBy(in, func(p kv) int { return p.Value }, test.ascending); !slices.Equal(got, test.want) {
			t.Errorf("%s: SortBy = %v, want %v", test.name, got, test.want)
		}
	}
	if got := SortBy(in, func(p kv) string { return p.Key }, false); !slices.Equal(got, pairs("e", 3, "d", 1, "c", 2, "b", 3, "a", 2)) {
		t.Errorf("SortBy string key descending = %v", got)
	}
	if !slices.Equal(in, orig) {
		t.Errorf("the input changed: %v", in)
	}
}

func TestZipWithIndex(t *testing.T) {
	got := ZipWithIndex([]string{"x", "y", "z"})
	want := []microbatch.Pair[string, int64]{{Key: "x", Value: 0}, {Key: "y", Value: 1}, {Key: "z", Value: 2}}
	if !slices.Equal(got, want) {
		t.Errorf("ZipWithIndex = %v, want %v", got, want)
	}
	if got := ZipWithIndex([]string{}); len(got) != 0 {
		t.Errorf("ZipWithIndex of nothing = %v", got)
	}
}

func TestTake(t *testing.T) {
	in := []int{1, 2, 3}
	for _, test := range []struct {
		n    int
		want []int
	}{
		{0, nil}, {2, []int{1, 2}}, {3, []int{1, 2, 3}}, {10, []int{1, 2, 3}}, {-1, nil},
	} {
		got := Take(in, test.n)
		if !slices.Equal(got, test.want) {
			t.Errorf("Take(%d) = %v, want %v", test.n, got, test.want)
		}
		if len(got) > 0 {
			got[0] = 99
			if in[0] != 1 {
				t.Fatalf("Take(%d) shares memory with its input", test.n)
			}
		}
	}
}

func TestTop(t *testing.T) {
	in := pairs("a", 2, "b", 3, "c", 2, "d", 1, "e", 3, "f", 2)
	orig := slices.Clone(in)
	value := func(p kv) int { return p.Value }
	for _, test := range []struct {
		n    int
		want []kv
	}{
		{0, nil},
		{-2, nil},
		{1, pairs("b", 3)},
		{3, pairs("b", 3, "e", 3, "a", 2)},
		{4, pairs("b", 3, "e", 3, "a", 2, "c", 2)},
		{6, pairs("b", 3, "e", 3, "a", 2, "c", 2, "f", 2, "d", 1)},
		{10, pairs("b", 3, "e", 3, "a", 2, "c", 2, "f", 2, "d", 1)},
	} {
		if got := Top(in, test.n, value); !slices.Equal(got, test.want) {
			t.Errorf("Top(%d) = %v, want %v", test.n, got, test.want)
		}
	}
	if !slices.Equal(in, orig) {
		t.Errorf("the input changed: %v", in)
	}
}

// TestTopIsSortThenTake checks Top against the lecture's formulation
// (sortBy descending, zipWithIndex, keep indexes below n) on random input
// with many ties.
func TestTopIsSortThenTake(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	value := func(p kv) int { return p.Value }
	for round := range 200 {
		in := make([]kv, rng.IntN(40))
		for i := range in {
			in[i] = microbatch.KV(fmt.Sprint(i), rng.IntN(6))
		}
		n := rng.IntN(8)
		indexed := Filter(ZipWithIndex(SortBy(in, value, false)), func(p microbatch.Pair[kv, int64]) bool { return p.Value < int64(n) })
		want := Map(indexed, func(p microbatch.Pair[kv, int64]) kv { return p.Key })
		if got := Top(in, n, value); !slices.Equal(got, want) {
			t.Fatalf("round %d: Top(%v, %d) = %v, want %v", round, in, n, got, want)
		}
		if got := Take(SortBy(in, value, false), n); !slices.Equal(got, want) {
			t.Fatalf("round %d: Take(SortBy) = %v, want %v", round, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	tab := NewTable([]microbatch.Pair[string, string]{
		{Key: "1.1.1.1", Value: "AU"}, {Key: "8.8.8.8", Value: "US"}, {Key: "1.1.1.1", Value: "XX"},
	})
	if tab.Len() != 2 {
		t.Errorf("Len = %d, want 2", tab.Len())
	}
	for _, test := range []struct {
		key  string
		want string
		ok   bool
	}{
		{"1.1.1.1", "AU", true}, {"8.8.8.8", "US", true}, {"9.9.9.9", "", false},
	} {
		if got, ok := tab.Get(test.key); got != test.want || ok != test.ok {
			t.Errorf("Get(%s) = %q, %v; want %q, %v", test.key, got, ok, test.want, test.ok)
		}
	}
	if got := NewTable[string, int](nil); got.Len() != 0 {
		t.Errorf("an empty table has %d keys", got.Len())
	}
}

func TestJoin(t *testing.T) {
	tab := NewTable([]microbatch.Pair[string, string]{
		{Key: "a", Value: "x"}, {Key: "b", Value: "y"}, {Key: "a", Value: "z"},
	})
	batch := pairs("c", 1, "a", 2, "b", 3, "c", 4, "a", 5)
	type joined = microbatch.Pair[string, microbatch.Pair[int, string]]
	j := func(k string, v int, w string) joined { return microbatch.KV(k, microbatch.KV(v, w)) }
	if got, want := Join(batch, tab), []joined{
		j("a", 2, "x"), j("a", 2, "z"), j("b", 3, "y"), j("a", 5, "x"), j("a", 5, "z"),
	}; !slices.Equal(got, want) {
		t.Errorf("Join = %v, want %v", got, want)
	}
	if got := Join(pairs("q", 1), tab); len(got) != 0 {
		t.Errorf("Join without a matching key = %v", got)
	}
	if got := Join([]kv(nil), tab); len(got) != 0 {
		t.Errorf("Join of nothing = %v", got)
	}

	type left = microbatch.Pair[string, microbatch.Pair[int, microbatch.Optional[string]]]
	l := func(k string, v int, w ...string) left {
		var o microbatch.Optional[string]
		if len(w) > 0 {
			o = microbatch.Some(w[0])
		}
		return microbatch.KV(k, microbatch.KV(v, o))
	}
	if got, want := LeftOuterJoin(batch, tab), []left{
		l("c", 1), l("a", 2, "x"), l("a", 2, "z"), l("b", 3, "y"), l("c", 4), l("a", 5, "x"), l("a", 5, "z"),
	}; !slices.Equal(got, want) {
		t.Errorf("LeftOuterJoin = %v, want %v", got, want)
	}
}
