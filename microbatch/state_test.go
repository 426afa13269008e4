package microbatch

import (
	"slices"
	"strings"
	"testing"
)

// TestTableEqualComparesWholeValues checks a table's test for unchanged
// states (unchanged ones are not written again) on values of every size it
// compares its own way: equal values are equal, values that differ in any
// byte are not.
func TestTableEqualComparesWholeValues(t *testing.T) {
	type pair32 struct{ A, B int32 }
	type wide struct{ A, B, C int64 }
	checkEqualStates(t, int64(1)<<40|7, int64(1)<<40|6, int64(7))
	checkEqualStates(t, uint32(1)<<24|5, uint32(5), uint32(1)<<24|4)
	checkEqualStates(t, 2.5, 2.25, -2.5)
	checkEqualStates(t, pair32{1, 2}, pair32{1, 3}, pair32{0, 2})
	checkEqualStates(t, wide{1, 2, 3}, wide{1, 2, 4}, wide{0, 2, 3})
	checkEqualStates(t, uint8(3), uint8(4), uint8(131))
	checkEqualStates(t, "a", "b", "ab") // not plain bytes: compared as values
}

func checkEqualStates[S comparable](t *testing.T, v S, others ...S) {
	t.Helper()
	tbl := newTable[string, S]("op")
	if !tbl.equal(v, v) {
		t.Errorf("%T %v: not equal to itself", v, v)
	}
	for _, o := range others {
		if tbl.equal(v, o) || tbl.equal(o, v) {
			t.Errorf("%T %v and %v: equal", v, v, o)
		}
	}
	// update, which compares word-sized states inline, agrees.
	tbl.insert("k", v, 0)
	i, _ := tbl.find("k")
	if tbl.update(i, v, 0) {
		t.Errorf("%T %v: updating it to itself changed it", v, v)
	}
	for _, o := range others {
		if !tbl.update(i, o, 0) || !tbl.update(i, v, 0) {
			t.Errorf("%T %v and %v: updating one to the other changed nothing", v, v, o)
		}
	}
}

// cappedTotal sums a key's values, and drops the key when its total passes
// 6 (with values: without any, a key stays as it is, as SkipIdleKeys
// promises).
func cappedTotal(values []int, total int, _ bool) (int, bool) {
	for _, v := range values {
		total += v
	}
	return total, total <= 6
}

// TestSkipIdleKeysCallsOnlyKeysWithValues runs updateStateByKey with and
// without SkipIdleKeys on the same input, with keys that idle, come back,
// pass the cap and return: the outputs must be the same, and with the
// option the function must not see a batch without values (an invariants
// build calls it anyway, to check the promise).
func TestSkipIdleKeysCallsOnlyKeysWithValues(t *testing.T) {
	input := []string{"a=1 b=2 a=3", "", "b=5 c=1 d=1", "a=4 d=1", "", "b=7 a=1", "c=2 e=1"}
	run := func(opts ...StateOption[string, int]) (out []string, idleCalls, calls int) {
		j := newTestJob(uint64(len(input)))
		counted := func(values []int, total int, exists bool) (int, bool) {
			calls++
			if len(values) == 0 {
				idleCalls++
			}
			return cappedTotal(values, total, exists)
		}
		collect(UpdateStateByKey(pairs(j, input...), counted, opts...), &out)
		runJob(t, j)
		return out, idleCalls, calls
	}
	want, wantIdle, _ := run()
	if wantIdle == 0 {
		t.Fatal("the input has no idle key: the test shows nothing")
	}
	got, idle, calls := run(SkipIdleKeys[string, int]())
	if !slices.Equal(got, want) {
		t.Errorf("with SkipIdleKeys:\n\t%s\nwithout:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
	switch {
	case invariants && idle != wantIdle:
		t.Errorf("invariants build: %d calls without values, want the %d that check the promise", idle, wantIdle)
	case !invariants && idle != 0:
		t.Errorf("%d calls without values, want none", idle)
	case !invariants && calls != 11: // the (key, batch)s with values
		t.Errorf("%d calls, want 11", calls)
	}
}
