package microbatch

import (
	"bytes"
	"context"
	"fmt"
	"maps"
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

// TestStateWalkDoesNotDependOnParallelism runs updateStateByKey over more
// keys than parallelMin, so that its walk over every key runs in chunks on
// several goroutines: keys that get values change, some are dropped by the
// function, the others stay as they are. The printed state and the bytes
// the Store holds (segments and every batch's delta) must be those of the
// sequential walk: the changed entries are marked, and the dropped ones
// removed, in the order a single walk meets them.
func TestStateWalkDoesNotDependOnParallelism(t *testing.T) {
	const keys = 3 * parallelMin
	var batches [][]int
	for b := range 4 {
		var batch []int
		for k := b * keys / 4; k < b*keys/4+keys/2; k++ {
			batch = append(batch, k, k+b) // k+b: some keys twice
		}
		batches = append(batches, batch)
	}
	type run struct {
		printed string
		store   map[string][]byte
	}
	var runs []run
	for _, p := range []int{1, 4} {
		var buf bytes.Buffer
		store := NewMemoryStore()
		prepared := &preparedDeltas{Store: store, deltas: map[string][]byte{}}
		j := NewJob(time.Second, WithClock(NewVirtualClock(epoch)), WithBatchLimit(uint64(len(batches))),
			WithParallelism(p), WithStdout(&buf), WithCommitGroup(1))
		j.Checkpoint(prepared)
		ones := Map(QueueStream(j, batches), func(k int) Pair[int, int] { return KV(k, 1) })
		UpdateStateByKeyAndTime(ones, func(bt time.Time, k int, vs []int, total int, _ bool) (int, bool) {
			for _, v := range vs {
				total += v
			}
			// Dropped: every 13th key once the second batch is done.
			return total, k%13 != 0 || bt.Unix() < epoch.Unix()+2
		}).Pprint(1 << 20)
		runJob(t, j)
		parts := map[string][]byte{}
		store.mu.Lock()
		for op, st := range store.mu.state {
			for i, b := range st.segments {
				parts[fmt.Sprintf("%s s%d", op, i)] = b
			}
			for i, b := range st.deltas {
				parts[fmt.Sprintf("%s d%d", op, i)] = b
			}
		}
		store.mu.Unlock()
		maps.Copy(parts, prepared.deltas)
		runs = append(runs, run{buf.String(), parts})
	}
	if runs[0].printed != runs[1].printed {
		t.Fatalf("parallelism 1 and 4 print different state:\n%s", lineDiff(runs[1].printed, runs[0].printed))
	}
	if len(runs[0].store) == 0 || !maps.EqualFunc(runs[0].store, runs[1].store, bytes.Equal) {
		t.Errorf("parallelism 1 and 4 store different state: %d and %d parts", len(runs[0].store), len(runs[1].store))
	}
	// Key 13 came twice in batch 1 and was dropped from batch 2 on; 14 stays.
	if !strings.Contains(runs[0].printed, "(13, 2)\n") || strings.Count(runs[0].printed, "(13, ") != 1 || strings.Count(runs[0].printed, "(14, ") != len(batches) {
		t.Errorf("key 13 should be printed once, with 2, and key 14 in every batch")
	}
}

// preparedDeltas keeps a copy of every delta prepared in its Store: the
// Store itself drops them once segments are rewritten.
type preparedDeltas struct {
	Store
	deltas map[string][]byte
}

func (p *preparedDeltas) Prepare(ctx context.Context, batch uint64, deltas []Delta) error {
	for _, d := range deltas {
		p.deltas[fmt.Sprintf("%s prepared %d", d.Op, d.Batch)] = bytes.Clone(d.Data)
	}
	return p.Store.Prepare(ctx, batch, deltas)
}
