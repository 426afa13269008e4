package ingest

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestCapOf(t *testing.T) {
	for _, test := range []struct {
		rate     int64
		interval time.Duration
		want     int64
	}{
		{4, 2500 * time.Millisecond, 10},
		{3, 1500 * time.Millisecond, 4},
		{1, 100 * time.Millisecond, 1},
		{1000, 10 * time.Second, 10000},
		{1e10, 10 * time.Second, 1e11},                  // rate × nanoseconds overflows int64
		{math.MaxInt64, time.Second, math.MaxInt64},     // exactly the largest
		{math.MaxInt64, 2 * time.Second, math.MaxInt64}, // saturates
		{1 << 62, 4 * time.Second, math.MaxInt64},
	} {
		if got := capOf(test.rate, test.interval); got != test.want {
			t.Errorf("capOf(%d, %s) = %d, want %d", test.rate, test.interval, got, test.want)
		}
	}
}

func TestBudgetOf(t *testing.T) {
	for _, test := range []struct {
		limit    float64
		interval time.Duration
		want     int64
	}{
		{100, time.Second, 100},
		{100.7, 1500 * time.Millisecond, 151},
		{1, 100 * time.Millisecond, 1}, // at least one record
		{1e300, time.Second, math.MaxInt64},
		{math.Inf(1), time.Second, math.MaxInt64},
	} {
		if got := budgetOf(test.limit, test.interval); got != test.want {
			t.Errorf("budgetOf(%v, %s) = %d, want %d", test.limit, test.interval, got, test.want)
		}
	}
}

func TestShare(t *testing.T) {
	for _, test := range []struct {
		budget int64
		lags   []int64
		want   []int64
	}{
		{300, []int64{500, 100, 0, 25}, []int64{240, 48, 0, 12}},
		{5, []int64{500, 100, 0, 25}, []int64{4, 1, 0, 0}},         // remainders .0, .8, 0, .2
		{100, []int64{60, 60, 0, 25}, []int64{42, 41, 0, 17}},      // a tie goes to the lower partition
		{3, []int64{1, 1, 1, 1, 1}, []int64{1, 1, 1, 0, 0}},        // all tied
		{1000, []int64{500, 100, 0, 25}, []int64{500, 100, 0, 25}}, // more than the backlog
		{625, []int64{500, 100, 0, 25}, []int64{500, 100, 0, 25}},
		{1, []int64{0, 0, 7}, []int64{0, 0, 1}},
		{10, []int64{0, 0}, []int64{0, 0}},
		{10, nil, nil},
		{1 << 62, []int64{1 << 62, 1 << 62}, []int64{1 << 61, 1 << 61}}, // budget × lag needs 128 bits
		// (M−1)·M/(M+1) = M−2 + 2/(M+1) and (M−1)·1/(M+1) ≈ 1: the
		// left-over record goes to the second, whose remainder is larger
		{math.MaxInt64 - 1, []int64{math.MaxInt64, 1}, []int64{math.MaxInt64 - 2, 1}},
	} {
		got := share(test.budget, test.lags)
		if !slices.Equal(got, test.want) {
			t.Errorf("share(%d, %v) = %v, want %v", test.budget, test.lags, got, test.want)
		}
	}
}

// TestShareAddsUp checks share's invariants over many backlogs: the shares
// add up to min(budget, Σlags) and none exceeds its lag.
func TestShareAddsUp(t *testing.T) {
	lags := []int64{0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89}
	for budget := int64(1); budget < 300; budget++ {
		for n := 1; n <= len(lags); n++ {
			ls := lags[len(lags)-n:]
			got := share(budget, ls)
			var sum, total int64
			for i := range ls {
				if got[i] < 0 || got[i] > ls[i] {
					t.Fatalf("share(%d, %v) = %v: share %d of lag %d", budget, ls, got, got[i], ls[i])
				}
				sum, total = sum+got[i], total+ls[i]
			}
			if sum != min(budget, total) {
				t.Fatalf("share(%d, %v) = %v adds up to %d, want %d", budget, ls, got, sum, min(budget, total))
			}
		}
	}
}

// batch encodes a v2 record batch header for offsets [base, base+n) with
// body bytes of records.
func batch(base int64, n int32, body int) []byte {
	b := kmsg.RecordBatch{FirstOffset: base, Magic: 2, LastOffsetDelta: n - 1, NumRecords: n, Records: bytes.Repeat([]byte{'x'}, body)}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	return raw
}

func TestScanBatches(t *testing.T) {
	a, b, c := batch(0, 3, 10), batch(3, 2, 20), batch(7, 4, 5) // c follows a gap of 5-6
	all := slices.Concat(a, b, c)
	v1 := slices.Clone(c)
	v1[16] = 1
	for _, test := range []struct {
		name  string
		raw   []byte
		until int64
		want  batches
	}{
		{"all before the end", all, 100, batches{raw: all, bytes: int64(len(all)), next: 11, largest: int64(len(b))}},
		{"the last starts at the end", all, 7, batches{raw: all[:len(a)+len(b)], done: true, bytes: int64(len(a) + len(b)), next: 5, largest: int64(len(b))}},
		{"the end inside the gap", all, 6, batches{raw: all[:len(a)+len(b)], done: true, bytes: int64(len(a) + len(b)), next: 5, largest: int64(len(b))}},
		{"the end inside a batch", all, 4, batches{raw: all[:len(a)+len(b)], done: true, bytes: int64(len(a) + len(b)), next: 5, largest: int64(len(b))}},
		{"the first starts at the end", all, 0, batches{raw: all[:0], done: true}},
		{"the last cut short", all[:len(all)-3], 100, batches{raw: all[:len(all)-3], bytes: int64(len(a) + len(b)), next: 5, largest: int64(len(b))}},
		{"only a header's start", all[:10], 100, batches{raw: all[:10]}},
		{"an old message set stops the scan", slices.Concat(a, v1), 8, batches{raw: slices.Concat(a, v1), bytes: int64(len(a)), next: 3, largest: int64(len(a))}},
		{"empty", nil, 5, batches{}},
	} {
		t.Run(test.name, func(t *testing.T) {
			got := scanBatches(test.raw, test.until)
			if !bytes.Equal(got.raw, test.want.raw) || got.done != test.want.done || got.bytes != test.want.bytes ||
				got.next != test.want.next || got.largest != test.want.largest {
				t.Fatalf("scanBatches(until %d) = {%d bytes raw, done %v, bytes %d, next %d, largest %d}, want {%d bytes raw, done %v, bytes %d, next %d, largest %d}",
					test.until, len(got.raw), got.done, got.bytes, got.next, got.largest,
					len(test.want.raw), test.want.done, test.want.bytes, test.want.next, test.want.largest)
			}
		})
	}
}

// FuzzScanBatches: whatever a broker sends, scanBatches does not panic,
// keeps a prefix of it and measures no more than it keeps.
func FuzzScanBatches(f *testing.F) {
	f.Add(slices.Concat(batch(0, 3, 10), batch(3, 2, 20)), int64(4))
	f.Add(batch(100, 1, 0), int64(0))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, int64(9))
	f.Fuzz(func(t *testing.T, raw []byte, until int64) {
		got := scanBatches(raw, until)
		if !bytes.Equal(got.raw, raw[:len(got.raw)]) {
			t.Fatal("the kept batches are not a prefix of the input")
		}
		if got.bytes < 0 || got.bytes > int64(len(got.raw)) || got.largest > got.bytes {
			t.Fatalf("measured %d bytes (largest %d) of %d kept", got.bytes, got.largest, len(got.raw))
		}
		if got.done && len(got.raw) == len(raw) {
			t.Fatal("done without dropping a batch")
		}
	})
}

// SetRelist sets how long a cut of s may reuse the offsets it listed, so a
// test counts requests whatever the machine's speed.
func SetRelist(s *Source, d time.Duration) { s.relist = d }
