package microbatch

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestSegmentsAndDeltasRoundTrip drives a table through random batches of
// inserts, updates and removals (keys that come and go, so that sequence
// numbers run ahead and renumbering happens), committing each batch's delta
// and checkpoint to a MemoryStore, and after every batch restores a fresh
// table from the store: it must hold exactly the model's keys and values,
// in the order the keys got state.
func TestSegmentsAndDeltasRoundTrip(t *testing.T) {
	for _, test := range []struct {
		name  string
		keys  int // distinct keys drawn from
		churn int // changes per batch
		shift uint8
		// formatOne stores every third batch's parts as a release before
		// format 2 wrote them (a delta's entries reversed: format 1 listed
		// them in the order they changed).
		formatOne bool
	}{
		{"small", 50, 20, segmentShift, false},
		{"one segment, heavy churn", 3000, 2500, segmentShift, false},
		{"many segments", 3000, 100, 6, false},
		{"many segments, heavy churn", 3000, 1000, 6, false},
		{"many segments, parts of both formats", 3000, 100, 6, true},
		{"many segments, heavy churn, parts of both formats", 3000, 1000, 6, true},
	} {
		t.Run(test.name, func(t *testing.T) {
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(7, uint64(test.keys)))
			store := NewMemoryStore()
			h := store.Handle()
			if _, err := h.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
			tbl := newTable[string, int64]("op")
			tbl.shift, tbl.maxDeltas = test.shift, 8
			model := map[string]int64{}
			var order []string // keys in the order they got state
			for batch := uint64(1); batch <= 40; batch++ {
				for range test.churn {
					// Some keys need a length of two or three bytes.
					n := rng.IntN(test.keys)
					k := fmt.Sprintf("k%d", n)
					switch {
					case n%97 == 0:
						k += strings.Repeat("x", 20000)
					case n%5 == 0:
						k += strings.Repeat("y", 200)
					}
					if _, ok := model[k]; ok && rng.IntN(4) == 0 {
						tbl.remove(k)
						delete(model, k)
						order = slices.DeleteFunc(order, func(x string) bool { return x == k })
						continue
					}
					v := rng.Int64N(1000)
					if _, ok := model[k]; !ok {
						order = append(order, k)
					}
					tbl.put(k, v, 0)
					model[k] = v
				}
				ck := Checkpoint{Batch: batch, KeepFrom: 1}
				var deltas []Delta
				if d, ok := tbl.delta(batch); ok {
					deltas = append(deltas, d)
				}
				tbl.checkpoint(batch, &ck)
				if test.formatOne && batch%3 == 0 {
					for i := range deltas {
						deltas[i].Data = inFormatOne(t, deltas[i].Data, true)
					}
					for i := range ck.Segments {
						ck.Segments[i].Data = inFormatOne(t, ck.Segments[i].Data, false)
					}
				}
				must(t, h.RecordPlan(ctx, Plan{ID: batch}))
				must(t, h.Prepare(ctx, batch, deltas))
				must(t, h.Commit(ctx, ck))
				tbl.committed()

				got, err := readState[string, int64](ctx, store, "op", batch, test.shift)
				if err != nil {
					t.Fatalf("batch %d: %v", batch, err)
				}
				var keys []string
				for _, kv := range got {
					keys = append(keys, kv.Key)
					if model[kv.Key] != kv.Value {
						t.Fatalf("batch %d: %s = %d, want %d", batch, kv.Key, kv.Value, model[kv.Key])
					}
				}
				if !slices.Equal(keys, order) {
					t.Fatalf("batch %d: %d keys restored, want %d, in the order they got state", batch, len(keys), len(order))
				}
			}
			// The store holds about the state twice at most (segments and
			// the deltas since), not every delta ever written.
			parts, bytes := 0, 0
			must(t, store.LoadState(ctx, "op", func(p StatePart) error {
				parts++
				bytes += len(p.Data)
				return nil
			}))
			var live int
			for k := range maps.Keys(model) {
				live += len(k) + 8
			}
			t.Logf("%d keys, %d parts of %d bytes in the store", len(model), parts, bytes)
			if bytes > 4*live+4096 {
				t.Errorf("the store holds %d bytes for %d bytes of live state: old deltas are not dropped", bytes, live)
			}
		})
	}
}

// inFormatOne re-encodes a stored part in format 1, its entries reversed
// if reverse.
func inFormatOne(t *testing.T, data []byte, reverse bool) []byte {
	t.Helper()
	p, err := decodePart(data)
	if err != nil {
		t.Fatal(err)
	}
	b := appendHeader(nil, p.timed, p.batch, p.nextSeq, len(p.entries))
	b[0] = partFormatSeq1
	if reverse {
		slices.Reverse(p.entries)
	}
	for _, e := range p.entries {
		b = appendRaw(b, partFormatSeq1, p.timed, 0, e)
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzDecodePart checks that decoding a stored part never panics, and that
// what decodes encodes back to the same entries.
func FuzzDecodePart(f *testing.F) {
	tbl := newTable[string, int64]("op")
	tbl.put("a", 1, 0)
	tbl.put("bb", 22, 0)
	tbl.remove("a")
	d, _ := tbl.delta(3)
	f.Add(d.Data)
	f.Add(tbl.encodeSegment(0, 3))
	f.Add([]byte{partFormatSeq1, flagTimed, 1, 2, 1, 0, 1, 1, 'k', 4, 1, 2})
	f.Add([]byte{partFormatSeq1, 0, 3, 9, 2, 7, 0, 2, 1, 1, 'k', 1, 5})
	f.Add([]byte{partFormat, flagTimed, 1, 2, 1, 1, 1, 'k', 4, 1, 2})
	f.Add([]byte{partFormat, 0, 3, 9, 2, 4, 5, 1, 'k', 1, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodePart(data)
		if err != nil {
			return
		}
		again := appendHeader(nil, p.timed, p.batch, p.nextSeq, len(p.entries))
		again[0] = p.format
		next := uint64(0)
		for _, e := range p.entries {
			again = appendRaw(again, p.format, p.timed, next, e)
			next = e.seq + 1
		}
		q, err := decodePart(again)
		if err != nil || !slices.EqualFunc(p.entries, q.entries, func(a, b rawEntry) bool {
			return a.seq == b.seq && a.set == b.set && a.touched == b.touched && string(a.key) == string(b.key) && string(a.val) == string(b.val)
		}) {
			t.Fatalf("decoded %+v, re-encoded and decoded %+v (%v)", p.entries, q.entries, err)
		}
	})
}

// appendRaw encodes a decoded entry again in format, after an entry whose
// sequence number is next-1, for the fuzz test.
func appendRaw(b []byte, format byte, timed bool, next uint64, e rawEntry) []byte {
	if format == partFormatSeq1 {
		b = appendUvarint(b, e.seq)
		if !e.set {
			return append(b, 0)
		}
		b = append(b, 1)
	} else {
		set := uint64(0)
		if e.set {
			set = 1
		}
		b = appendUvarint(b, (e.seq-next)<<1|set)
		if !e.set {
			return b
		}
	}
	b = appendUvarint(b, uint64(len(e.key)))
	b = append(b, e.key...)
	if timed {
		b = appendVarint(b, e.touched)
	}
	b = appendUvarint(b, uint64(len(e.val)))
	return append(b, e.val...)
}

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
func appendVarint(b []byte, v int64) []byte   { return binary.AppendVarint(b, v) }
