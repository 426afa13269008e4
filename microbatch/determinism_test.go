package microbatch

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// firstLast is an associative, non-commutative reduction: it keeps the first
// and the last value it saw, so any reordering of a key's values shows.
func firstLast(a, b Pair[int, int]) Pair[int, int] { return KV(a.Key, b.Value) }

// determinismGraph prints the results of every keyed operator, all elements,
// for batches of lines "ip i".
func determinismGraph(j *Job) {
	const s = time.Second
	lines := QueueStream(j, determinismInput())
	pos := Map(lines, func(l string) Pair[string, Pair[int, int]] {
		ip, i, _ := strings.Cut(l, " ")
		n, _ := strconv.Atoi(i)
		return KV(ip, KV(n, n))
	})
	ones := MapValues(pos, func(Pair[int, int]) int { return 1 })
	const all = 1 << 20
	ReduceByKey(pos, firstLast).Pprint(all)
	GroupByKey(MapValues(pos, func(p Pair[int, int]) int { return p.Key })).Pprint(all)
	CombineByKey(pos, func(v Pair[int, int]) int { return 1 },
		func(c int, v Pair[int, int]) int { return c + 1 },
		func(a, b int) int { return a + b }).Pprint(all)
	CountByValue(Map(pos, func(p Pair[string, Pair[int, int]]) string { return p.Key })).Pprint(all)
	ReduceByKeyAndWindow(pos, firstLast, nil, 2*s, s, nil).Pprint(all)
	ReduceByKeyAndWindow(ones, add, sub, 2*s, s, nil).Pprint(all)
	UpdateStateByKey(pos, func(vs []Pair[int, int], st []int, _ bool) ([]int, bool) {
		for _, v := range vs {
			st = append(st, v.Key)
		}
		return st[max(0, len(st)-3):], true
	}).Pprint(all)
	Join(ReduceByKey(ones, add), ReduceByKey(pos, firstLast)).Pprint(all)
}

// determinismInput is three batches above parallelMin records, over a few
// thousand skewed keys, the last one a repeat of the first.
var determinismInput = sync.OnceValue(func() [][]string {
	rng := rand.New(rand.NewPCG(5, 8))
	zipf := rand.NewZipf(rng, 1.2, 1, 4000)
	var out [][]string
	for b := range 2 {
		batch := make([]string, parallelMin+parallelMin/4+b*1000)
		for i := range batch {
			batch[i] = fmt.Sprintf("10.0.%d.%d %d", zipf.Uint64()/256, zipf.Uint64()%256, i)
		}
		out = append(out, batch)
	}
	return append(out, out[0])
})

// TestOutputDoesNotDependOnParallelism checks that batches large enough for
// the parallel paths print byte for byte what the sequential paths print.
func TestOutputDoesNotDependOnParallelism(t *testing.T) {
	var outputs []string
	for _, p := range []int{1, 8} {
		var buf bytes.Buffer
		j := newTestJob(uint64(len(determinismInput())), WithParallelism(p), WithStdout(&buf))
		determinismGraph(j)
		runJob(t, j)
		outputs = append(outputs, buf.String())
	}
	if outputs[0] != outputs[1] {
		t.Fatalf("parallelism 1 and 8 print different output:\n%s", lineDiff(outputs[1], outputs[0]))
	}
	// The sequential output itself follows the model: keys in the order of
	// their first occurrence, each with its first and last position.
	type span struct{ first, last int }
	seen := map[string]*span{}
	var order []string
	for i, l := range determinismInput()[0] {
		ip, _, _ := strings.Cut(l, " ")
		if sp, ok := seen[ip]; ok {
			sp.last = i
			continue
		}
		seen[ip] = &span{i, i}
		order = append(order, ip)
	}
	var want strings.Builder
	want.WriteString("-------------------------------------------\nTime: 1970-01-01 00:00:01\n-------------------------------------------\n")
	for _, ip := range order {
		fmt.Fprintf(&want, "('%s', (%d, %d))\n", ip, seen[ip].first, seen[ip].last)
	}
	if !strings.HasPrefix(outputs[0], want.String()) {
		t.Errorf("reduceByKey of batch 1 is not in first-occurrence order with first and last positions:\n%s",
			lineDiff(outputs[0][:min(len(outputs[0]), want.Len())], want.String()))
	}
	if len(order) < 1000 {
		t.Errorf("only %d distinct keys: too few to exercise the shards", len(order))
	}
}
