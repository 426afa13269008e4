package microbatch

import "testing"

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
