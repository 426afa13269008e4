package topips

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dstream-io/dstream/microbatch"
)

// TestRankingMatchesAFullSort compares the selection with sorting the whole
// batch by count descending, then IP ascending.
func TestRankingMatchesAFullSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var batch []microbatch.Pair[string, int64]
		for i := range rng.IntN(50) {
			batch = append(batch, microbatch.KV("10.0.0."+strconv.Itoa(i), int64(rng.IntN(5))))
		}
		rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		n := 1 + rng.IntN(5)
		want := slices.Clone(batch)
		slices.SortFunc(want, func(a, b microbatch.Pair[string, int64]) int {
			if c := cmp.Compare(b.Value, a.Value); c != 0 {
				return c
			}
			return strings.Compare(a.Key, b.Key)
		})
		want = want[:min(n, len(want))]
		if got := ranking(batch, n); !slices.Equal(got, want) {
			t.Fatalf("round %d, n=%d: ranking = %v, want %v", round, n, got, want)
		}
	}
}
