package microbatch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOperators runs every operator over queued batches and compares each
// emitted batch, printed as Python would, with the expected one. Batch n runs
// at n s; the key order of keyed results is the order of first occurrence
// (state order for stateful operators), which the engine guarantees.
func TestOperators(t *testing.T) {
	const s = time.Second
	for _, test := range []struct {
		name    string
		batches uint64
		build   func(j *Job, out *[]string)
		want    []string
	}{
		// Stateless operators, each with an empty batch in the middle.
		{"map", 3, func(j *Job, out *[]string) {
			collect(Map(ints(j, []int{1, 2}, nil, []int{3}), func(v int) int { return v * 10 }), out)
		}, []string{"1:[10, 20]", "2:[]", "3:[30]"}},
		{"map changes type", 1, func(j *Job, out *[]string) {
			collect(Map(ints(j, []int{1, 2}), func(v int) string { return fmt.Sprint(v) }), out)
		}, []string{"1:['1', '2']"}},
		{"flatMap", 3, func(j *Job, out *[]string) {
			collect(FlatMap(words(j, "ab c", "", "de"), func(w string) []string { return strings.Split(w, "") }), out)
		}, []string{"1:['a', 'b', 'c']", "2:[]", "3:['d', 'e']"}},
		{"flatMap to nothing", 1, func(j *Job, out *[]string) {
			collect(FlatMap(words(j, "a b"), func(string) []int { return nil }), out)
		}, []string{"1:[]"}},
		{"filter", 3, func(j *Job, out *[]string) {
			collect(ints(j, []int{1, 2, 3, 4}, nil, []int{5}).Filter(func(v int) bool { return v%2 == 0 }), out)
		}, []string{"1:[2, 4]", "2:[]", "3:[]"}},
		{"mapValues", 3, func(j *Job, out *[]string) {
			collect(MapValues(pairs(j, "a=1 b=2", "", "a=3"), func(v int) string { return strings.Repeat("x", v) }), out)
		}, []string{"1:[('a', 'x'), ('b', 'xx')]", "2:[]", "3:[('a', 'xxx')]"}},
		{"flatMapValues", 2, func(j *Job, out *[]string) {
			collect(FlatMapValues(pairs(j, "a=2 b=0 c=1", ""), func(v int) []int {
				if v == 0 {
					return nil
				}
				return []int{v, v * 10}
			}), out)
		}, []string{"1:[('a', 2), ('a', 20), ('c', 1), ('c', 10)]", "2:[]"}},
		{"union", 3, func(j *Job, out *[]string) {
			a, b, c := ints(j, []int{1}, []int{2}), ints(j, []int{10}, nil, []int{30}), ints(j, nil, []int{200})
			collect(a.Union(b, c), out)
		}, []string{"1:[1, 10]", "2:[2, 200]", "3:[30]"}},
		{"union of windows", 4, func(j *Job, out *[]string) {
			a := ints(j, []int{1}, []int{2}, []int{3}, []int{4})
			collect(a.Window(2*s, 2*s).Union(a.Window(s, 2*s)), out)
		}, []string{"2:[1, 2, 2]", "4:[3, 4, 4]"}},
		{"repartition", 2, func(j *Job, out *[]string) {
			collect(ints(j, []int{3, 1, 2}, nil).Repartition(8), out)
		}, []string{"1:[3, 1, 2]", "2:[]"}},
		{"count", 3, func(j *Job, out *[]string) {
			collect(words(j, "a b", "", "c").Count(), out)
		}, []string{"1:[2]", "2:[0]", "3:[1]"}},
		{"countByValue", 3, func(j *Job, out *[]string) {
			collect(CountByValue(words(j, "a b a", "", "b")), out)
		}, []string{"1:[('a', 2), ('b', 1)]", "2:[]", "3:[('b', 1)]"}},
		{"reduce", 3, func(j *Job, out *[]string) {
			collect(ints(j, []int{1, 2, 3}, nil, []int{4}).Reduce(add), out)
		}, []string{"1:[6]", "2:[]", "3:[4]"}},
		{"reduce keeps element order", 1, func(j *Job, out *[]string) {
			collect(words(j, "a b c").Reduce(func(a, b string) string { return a + b }), out)
		}, []string{"1:['abc']"}},
		{"transform runs on empty batches", 3, func(j *Job, out *[]string) {
			collect(Transform(ints(j, []int{1, 2, 3}, nil, []int{4}), func(b []int) []int {
				r := []int{len(b)}
				for i := len(b) - 1; i >= 0; i-- {
					r = append(r, b[i])
				}
				return r
			}), out)
		}, []string{"1:[3, 3, 2, 1]", "2:[0]", "3:[1, 4]"}},
		{"transformTime", 2, func(j *Job, out *[]string) {
			collect(TransformTime(words(j, "a b"), func(t time.Time, b []string) []string {
				return []string{fmt.Sprintf("%s/%d", t.UTC().Format("15:04:05"), len(b))}
			}), out)
		}, []string{"1:['00:00:01/2']", "2:['00:00:02/0']"}},
		{"transformWith", 3, func(j *Job, out *[]string) {
			collect(TransformWith(ints(j, []int{1, 2}, nil, []int{3}), words(j, "x", "y z"),
				func(a []int, b []string) []string { return []string{fmt.Sprint(a, b)} }), out)
		}, []string{"1:['[1 2] [x]']", "2:['[] [y z]']", "3:['[3] []']"}},

		// Keyed operators.
		{"reduceByKey", 3, func(j *Job, out *[]string) {
			collect(ReduceByKey(pairs(j, "a=1 b=2 a=3", "", "b=1"), add), out)
		}, []string{"1:[('a', 4), ('b', 2)]", "2:[]", "3:[('b', 1)]"}},
		{"reduceByKey folds values in order", 1, func(j *Job, out *[]string) {
			collect(ReduceByKey(pairs(j, "a=1 b=2 a=3 a=5"), func(a, b int) int { return a*10 + b }), out)
		}, []string{"1:[('a', 135), ('b', 2)]"}},
		{"groupByKey", 3, func(j *Job, out *[]string) {
			collect(GroupByKey(pairs(j, "a=1 b=2 a=3", "", "b=1")), out)
		}, []string{"1:[('a', [1, 3]), ('b', [2])]", "2:[]", "3:[('b', [1])]"}},
		{"combineByKey", 2, func(j *Job, out *[]string) {
			collect(CombineByKey(pairs(j, "a=1 b=2 a=3", ""),
				func(v int) Pair[int, int] { return KV(v, 1) },
				func(c Pair[int, int], v int) Pair[int, int] { return KV(c.Key+v, c.Value+1) },
				func(a, b Pair[int, int]) Pair[int, int] { return KV(a.Key+b.Key, a.Value+b.Value) }), out)
		}, []string{"1:[('a', (4, 2)), ('b', (2, 1))]", "2:[]"}},

		// Joins: batch 1 has keys on both sides and on one side only; in
		// batch 2 the right side is empty, in batch 3 the left one.
		{"join", 3, func(j *Job, out *[]string) {
			a, b := joinInputs(j)
			collect(Join(a, b), out)
		}, []string{"1:[('a', (1, 10)), ('a', (1, 20)), ('a', (3, 10)), ('a', (3, 20))]", "2:[]", "3:[]"}},
		{"leftOuterJoin", 3, func(j *Job, out *[]string) {
			a, b := joinInputs(j)
			collect(LeftOuterJoin(a, b), out)
		}, []string{"1:[('a', (1, 10)), ('a', (1, 20)), ('a', (3, 10)), ('a', (3, 20)), ('b', (2, None))]",
			"2:[('x', (1, None))]", "3:[]"}},
		{"rightOuterJoin", 3, func(j *Job, out *[]string) {
			a, b := joinInputs(j)
			collect(RightOuterJoin(a, b), out)
		}, []string{"1:[('a', (1, 10)), ('a', (1, 20)), ('a', (3, 10)), ('a', (3, 20)), ('c', (None, 30))]",
			"2:[]", "3:[('y', (None, 2))]"}},
		{"fullOuterJoin", 3, func(j *Job, out *[]string) {
			a, b := joinInputs(j)
			collect(FullOuterJoin(a, b), out)
		}, []string{"1:[('a', (1, 10)), ('a', (1, 20)), ('a', (3, 10)), ('a', (3, 20)), ('b', (2, None)), ('c', (None, 30))]",
			"2:[('x', (1, None))]", "3:[('y', (None, 2))]"}},
		{"cogroup", 3, func(j *Job, out *[]string) {
			a, b := joinInputs(j)
			collect(Cogroup(a, b), out)
		}, []string{"1:[('a', ([1, 3], [10, 20])), ('b', ([2], [])), ('c', ([], [30]))]",
			"2:[('x', ([1], []))]", "3:[('y', ([], [2]))]"}},
		{"join of windows", 4, func(j *Job, out *[]string) {
			a, b := joinInputs(j)
			collect(Join(a.Window(2*s, 2*s), b.Window(2*s, 2*s)), out)
		}, []string{"2:[('a', (1, 10)), ('a', (1, 20)), ('a', (3, 10)), ('a', (3, 20))]", "4:[('y', (2, 2))]"}},

		// Windows. Batch n holds n; the first windows cover the batches
		// there are, and a window emits only when its slide divides the
		// batch number.
		{"window 3/1", 6, func(j *Job, out *[]string) {
			collect(ints(j, []int{1}, []int{2}, []int{3}, []int{4}).Window(3*s, s), out)
		}, []string{"1:[1]", "2:[1, 2]", "3:[1, 2, 3]", "4:[2, 3, 4]", "5:[3, 4]", "6:[4]"}},
		{"window 3/2", 6, func(j *Job, out *[]string) {
			collect(ints(j, []int{1}, []int{2}, []int{3}, []int{4}).Window(3*s, 2*s), out)
		}, []string{"2:[1, 2]", "4:[2, 3, 4]", "6:[4]"}},
		{"tumbling window", 6, func(j *Job, out *[]string) {
			collect(ints(j, []int{1}, []int{2}, []int{3}, []int{4}).Window(2*s, 2*s), out)
		}, []string{"2:[1, 2]", "4:[3, 4]", "6:[]"}},
		{"window shorter than its slide", 6, func(j *Job, out *[]string) {
			collect(ints(j, []int{1}, []int{2}, []int{3}, []int{4}).Window(s, 3*s), out)
		}, []string{"3:[3]", "6:[]"}},
		{"window of a window", 6, func(j *Job, out *[]string) {
			collect(ints(j, []int{1}, []int{2}, []int{3}, []int{4}).Window(2*s, 2*s).Window(4*s, 2*s), out)
		}, []string{"2:[1, 2]", "4:[1, 2, 3, 4]", "6:[3, 4]"}},
		{"window then filter and reduceByKey", 3, func(j *Job, out *[]string) {
			w := pairs(j, "a=1", "b=2 a=1", "").Window(2*s, s).Filter(func(p Pair[string, int]) bool { return p.Key != "b" })
			collect(ReduceByKey(w, add), out)
		}, []string{"1:[('a', 1)]", "2:[('a', 2)]", "3:[('a', 1)]"}},
		{"countByWindow", 7, func(j *Job, out *[]string) {
			collect(words(j, "a b", "", "c d e", "f").CountByWindow(3*s, s), out)
		}, []string{"1:[2]", "2:[2]", "3:[5]", "4:[4]", "5:[4]", "6:[1]", "7:[0]"}},
		{"countByWindow 4/2", 6, func(j *Job, out *[]string) {
			collect(words(j, "a b", "", "c d e", "f").CountByWindow(4*s, 2*s), out)
		}, []string{"2:[2]", "4:[6]", "6:[4]"}},
		{"reduceByWindow", 7, func(j *Job, out *[]string) {
			collect(ReduceByWindow(ints(j, []int{1, 2}, nil, []int{3}, []int{4}), add, nil, 3*s, s), out)
		}, []string{"1:[3]", "2:[3]", "3:[6]", "4:[7]", "5:[7]", "6:[4]", "7:[]"}},
		{"reduceByWindow with inverse", 7, func(j *Job, out *[]string) {
			collect(ReduceByWindow(ints(j, []int{1, 2}, nil, []int{3}, []int{4}), add, sub, 3*s, s), out)
		}, []string{"1:[3]", "2:[3]", "3:[6]", "4:[7]", "5:[7]", "6:[4]", "7:[0]"}},
		{"reduceByKeyAndWindow", 7, func(j *Job, out *[]string) {
			collect(ReduceByKeyAndWindow(pairs(j, "a=1 b=1", "a=1", "", "c=1"), add, nil, 3*s, s, nil), out)
		}, []string{"1:[('a', 1), ('b', 1)]", "2:[('a', 2), ('b', 1)]", "3:[('a', 2), ('b', 1)]",
			"4:[('a', 1), ('c', 1)]", "5:[('c', 1)]", "6:[('c', 1)]", "7:[]"}},
		{"reduceByKeyAndWindow with inverse keeps keys at zero", 7, func(j *Job, out *[]string) {
			collect(ReduceByKeyAndWindow(pairs(j, "a=1 b=1", "a=1", "", "c=1"), add, sub, 3*s, s, nil), out)
		}, []string{"1:[('a', 1), ('b', 1)]", "2:[('a', 2), ('b', 1)]", "3:[('a', 2), ('b', 1)]",
			"4:[('a', 1), ('b', 0), ('c', 1)]", "5:[('a', 0), ('b', 0), ('c', 1)]", "6:[('a', 0), ('b', 0), ('c', 1)]",
			"7:[('a', 0), ('b', 0), ('c', 0)]"}},
		{"reduceByKeyAndWindow with inverse and filter", 7, func(j *Job, out *[]string) {
			collect(ReduceByKeyAndWindow(pairs(j, "a=1 b=1", "a=1", "", "c=1"), add, sub, 3*s, s,
				func(p Pair[string, int]) bool { return p.Value > 0 }), out)
		}, []string{"1:[('a', 1), ('b', 1)]", "2:[('a', 2), ('b', 1)]", "3:[('a', 2), ('b', 1)]",
			"4:[('a', 1), ('c', 1)]", "5:[('c', 1)]", "6:[('c', 1)]", "7:[]"}},
		{"reduceByKeyAndWindow filter without inverse", 3, func(j *Job, out *[]string) {
			collect(ReduceByKeyAndWindow(pairs(j, "a=1 b=1", "a=1"), add, nil, 2*s, s,
				func(p Pair[string, int]) bool { return p.Value > 1 }), out)
		}, []string{"1:[]", "2:[('a', 2)]", "3:[]"}},
		{"reduceByKeyAndWindow 4/2 with inverse", 8, func(j *Job, out *[]string) {
			collect(ReduceByKeyAndWindow(pairs(j, "a=1", "a=2 b=1", "a=4", "b=2", "a=8"), add, sub, 4*s, 2*s, nil), out)
		}, []string{"2:[('a', 3), ('b', 1)]", "4:[('a', 7), ('b', 3)]", "6:[('a', 12), ('b', 2)]", "8:[('a', 8), ('b', 0)]"}},
		{"countByValueAndWindow drops zero counts", 6, func(j *Job, out *[]string) {
			collect(CountByValueAndWindow(words(j, "a b a", "b", "", "", "c"), 3*s, s), out)
		}, []string{"1:[('a', 2), ('b', 1)]", "2:[('a', 2), ('b', 2)]", "3:[('a', 2), ('b', 2)]",
			"4:[('b', 1)]", "5:[('c', 1)]", "6:[('c', 1)]"}},
		{"countByValueAndWindow counts a returning value afresh", 5, func(j *Job, out *[]string) {
			collect(CountByValueAndWindow(words(j, "a b", "", "a", "a"), s, s), out)
		}, []string{"1:[('a', 1), ('b', 1)]", "2:[]", "3:[('a', 1)]", "4:[('a', 1)]", "5:[]"}},
		{"groupByKeyAndWindow", 4, func(j *Job, out *[]string) {
			collect(GroupByKeyAndWindow(pairs(j, "a=1 b=2", "a=3", "b=4"), 2*s, s), out)
		}, []string{"1:[('a', [1]), ('b', [2])]", "2:[('a', [1, 3]), ('b', [2])]", "3:[('a', [3]), ('b', [4])]", "4:[('b', [4])]"}},

		// State. The update function writes a trace: "new" for a key
		// without state, then the values of every batch; a 0 removes the
		// key.
		{"updateStateByKey", 6, func(j *Job, out *[]string) {
			collect(UpdateStateByKey(pairs(j, "a=1 b=2 a=3", "", "b=0 c=5", "a=4 d=0", "", "b=7"), traceUpdate), out)
		}, []string{
			"1:[('a', 'new[1 3]'), ('b', 'new[2]')]",
			"2:[('a', 'new[1 3][]'), ('b', 'new[2][]')]",
			"3:[('a', 'new[1 3][][]'), ('c', 'new[5]')]",
			"4:[('a', 'new[1 3][][][4]'), ('c', 'new[5][]')]",
			"5:[('a', 'new[1 3][][][4][]'), ('c', 'new[5][][]')]",
			"6:[('a', 'new[1 3][][][4][][]'), ('c', 'new[5][][][]'), ('b', 'new[7]')]",
		}},
		{"updateStateByKey on an empty stream", 2, func(j *Job, out *[]string) {
			collect(UpdateStateByKey(pairs(j), traceUpdate), out)
		}, []string{"1:[]", "2:[]"}},
		{"updateStateByKey on a window", 4, func(j *Job, out *[]string) {
			counts := ReduceByKey(pairs(j, "a=1", "a=1 b=1", "", "").Window(2*s, s), add)
			collect(UpdateStateByKey(counts, sumUpdate), out)
		}, []string{"1:[('a', 1)]", "2:[('a', 3), ('b', 1)]", "3:[('a', 4), ('b', 2)]", "4:[('a', 4), ('b', 2)]"}},
		{"updateStateByKey on a sliding window runs at its slide", 4, func(j *Job, out *[]string) {
			counts := ReduceByKey(pairs(j, "a=1", "a=1 b=1", "a=1", "").Window(2*s, 2*s), add)
			collect(UpdateStateByKey(counts, sumUpdate), out)
		}, []string{"2:[('a', 2), ('b', 1)]", "4:[('a', 3), ('b', 1)]"}},
		{"mapWithState", 3, func(j *Job, out *[]string) {
			collect(MapWithState(pairs(j, "a=1 b=2 a=3", "a=0 b=1", "a=2"), 0, runningTotal), out)
		}, []string{"1:['a=1 new', 'b=2 new', 'a=4']", "2:['a removed', 'b=3']", "3:['a=2 new']"}},
		{"mapWithState times out idle keys", 7, func(j *Job, out *[]string) {
			collect(MapWithState(pairs(j, "a=1 b=2", "a=3", "", "", "b=5"), 2*s, runningTotal), out)
		}, []string{"1:['a=1 new', 'b=2 new']", "2:['a=4']", "3:['b timed out at 2']", "4:['a timed out at 4']",
			"5:['b=5 new']", "6:[]", "7:['b timed out at 5']"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			j := newTestJob(test.batches)
			var out []string
			test.build(j, &out)
			runJob(t, j)
			if !slices.Equal(out, test.want) {
				t.Errorf("got\n\t%s\nwant\n\t%s", strings.Join(out, "\n\t"), strings.Join(test.want, "\n\t"))
			}
		})
	}
}

// joinInputs returns the two sides of the join tests.
func joinInputs(j *Job) (a, b *Stream[Pair[string, int]]) {
	return pairs(j, "a=1 b=2 a=3", "x=1", "", "y=2"), pairs(j, "a=10 c=30 a=20", "", "y=2")
}

// traceUpdate records the updates of a key: "new" when it had no state, then
// its values of every batch; a value 0 removes the key.
func traceUpdate(values []int, state string, exists bool) (string, bool) {
	if slices.Contains(values, 0) {
		return "", false
	}
	if !exists {
		if state != "" {
			panic("a new key got state " + state)
		}
		state = "new"
	}
	return state + fmt.Sprint(values), true
}

// sumUpdate is the lecture's updateFunction: the running sum of the values.
func sumUpdate(values []int, running int, _ bool) (int, bool) {
	for _, v := range values {
		running += v
	}
	return running, true
}

// runningTotal keeps a running total per key and reports it; 0 removes the
// key, and a key timing out reports its last total.
func runningTotal(key string, v Optional[int], st *State[int]) string {
	switch {
	case st.IsTimingOut():
		if v.Ok || !st.Exists() {
			panic("a timing-out key must have state and no value")
		}
		total := st.Get()
		st.Update(total + 1000) // ignored: a timing-out key cannot be updated
		return fmt.Sprintf("%s timed out at %d", key, total)
	case v.Value == 0:
		st.Remove()
		return key + " removed"
	}
	s := fmt.Sprintf("%s=%d", key, st.Get()+v.Value)
	if !st.Exists() {
		s += " new"
	}
	st.Update(st.Get() + v.Value)
	return s
}

// TestIndependentStatefulOperatorsRunConcurrently builds two stateful
// operators over one input and a third over the first's output. In every
// batch the first's update function waits until the second's has started:
// computed one after the other they would never meet (the wait gives up
// after a while and the test fails). The third must see the first's state
// of the same batch, and with parallelism 1 the outputs are the same.
func TestIndependentStatefulOperatorsRunConcurrently(t *testing.T) {
	run := func(parallelism int, meet bool) (firsts, thirds []string, met int) {
		var (
			mu     sync.Mutex
			gates  = map[time.Time]chan struct{}{} // by batch, closed by the second
			waited = map[time.Time]bool{}
			closed = map[time.Time]bool{}
		)
		gate := func(bt time.Time) chan struct{} {
			g, ok := gates[bt]
			if !ok {
				g = make(chan struct{})
				gates[bt] = g
			}
			return g
		}
		j := newTestJob(3, WithParallelism(parallelism))
		in := pairs(j, "a=1 b=1 a=1", "b=1 c=1", "a=1")
		first := UpdateStateByKeyAndTime(in, func(bt time.Time, _ string, vs []int, n int, _ bool) (int, bool) {
			mu.Lock()
			g, wait := gate(bt), meet && !waited[bt]
			waited[bt] = true
			mu.Unlock()
			if wait {
				select {
				case <-g:
					met++
				case <-time.After(10 * time.Second): // only a failing run waits
				}
			}
			return n + len(vs), true
		}).Named("first")
		UpdateStateByKeyAndTime(in, func(bt time.Time, _ string, vs []int, n int, _ bool) (int, bool) {
			mu.Lock()
			if g := gate(bt); meet && !closed[bt] {
				closed[bt] = true
				close(g)
			}
			mu.Unlock()
			return n + len(vs), true
		}).Named("second").ForeachBatch(func(context.Context, BatchInfo, []Pair[string, int]) error { return nil })
		third := UpdateStateByKey(first, func(vs []int, n int, _ bool) (int, bool) {
			for _, v := range vs {
				n = 10*n + v // the first's totals as of this batch
			}
			return n, true
		}).Named("third")
		collect(first, &firsts)
		collect(third, &thirds)
		runJob(t, j)
		return firsts, thirds, met
	}
	firsts, thirds, met := run(2, true)
	if met != 3 {
		t.Fatalf("the first operator saw the second one start in %d of 3 batches: they ran one after the other", met)
	}
	wantFirsts, wantThirds, _ := run(1, false)
	if !slices.Equal(firsts, wantFirsts) || !slices.Equal(thirds, wantThirds) {
		t.Errorf("in parallel:\n%v\n%v\nsequential:\n%v\n%v", firsts, thirds, wantFirsts, wantThirds)
	}
	if want := "3:[('a', 223), ('b', 122), ('c', 11)]"; len(thirds) != 3 || thirds[2] != want {
		t.Errorf("the dependent operator's last batch is %v, want %s last", thirds, want)
	}
}
