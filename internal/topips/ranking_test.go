package topips

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/microbatch"
)

// TestRankingMatchesAFullSort compares the selection with sorting the whole
// batch by count descending, then IP text ascending (so 10.0.0.10 comes
// before 9.0.0.1, and IPv6 texts sort among them as strings do).
func TestRankingMatchesAFullSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	prefixes := []string{"10.0.0.", "9.1.1.", "2001:db8::", "192.168.0."}
	for round := range 200 {
		var batch []microbatch.Pair[weblog.IP, microbatch.Pair[int64, int64]]
		size := rng.IntN(50)
		if round%100 == 0 {
			size = 2*rankChunk + rng.IntN(rankChunk) // ranked in chunks
		}
		for i := range size {
			text := prefixes[i%len(prefixes)] + strconv.Itoa(i)
			if size > 50 { // distinct IPs, v4 and v6
				text = fmt.Sprintf("%d.%d.%d.%d", 9+i%2, i>>16, i>>8&0xff, i&0xff)
				if i%5 == 0 {
					text = fmt.Sprintf("2001:db8::%x:%x", i>>16, i&0xffff)
				}
			}
			ip, err := weblog.ParseIP(text)
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, microbatch.KV(ip, microbatch.KV(int64(rng.IntN(5)), int64(i))))
		}
		rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		n := 1 + rng.IntN(5)
		texts := make(map[weblog.IP]string, len(batch))
		for _, kv := range batch {
			texts[kv.Key] = kv.Key.String()
		}
		want := slices.Clone(batch)
		slices.SortFunc(want, func(a, b microbatch.Pair[weblog.IP, microbatch.Pair[int64, int64]]) int {
			if c := cmp.Compare(b.Value.Key, a.Value.Key); c != 0 {
				return c
			}
			return strings.Compare(texts[a.Key], texts[b.Key])
		})
		want = want[:min(n, len(want))]
		if got := ranking(batch, n, func(kv microbatch.Pair[weblog.IP, microbatch.Pair[int64, int64]]) int64 { return kv.Value.Key }); !slices.Equal(got, want) {
			t.Fatalf("round %d, n=%d: ranking = %v, want %v", round, n, got, want)
		}
	}
}
