package microbatch

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
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
		// writeOne makes the table write format 1 (WithStatePartFormat).
		writeOne bool
	}{
		{"small", 50, 20, segmentShift, false, false},
		{"one segment, heavy churn", 3000, 2500, segmentShift, false, false},
		{"many segments", 3000, 100, 6, false, false},
		{"many segments, heavy churn", 3000, 1000, 6, false, false},
		{"many segments, parts of both formats", 3000, 100, 6, true, false},
		{"many segments, heavy churn, parts of both formats", 3000, 1000, 6, true, false},
		{"many segments, written in format 1", 3000, 100, 6, false, true},
		{"one segment, heavy churn, written in format 1", 3000, 2500, segmentShift, false, true},
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
			if test.writeOne {
				tbl.format = partFormatV1
			}
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
				toFormatOne := test.formatOne && batch%3 == 0
				if toFormatOne {
					// Format 1 has no value-only entries: their keys, from
					// the table, before its checkpoint renumbers it.
					keyOf := func(seq uint64) []byte {
						i, ok := slices.BinarySearchFunc(tbl.entries, seq, func(e entry[string, int64], seq uint64) int { return cmp.Compare(e.seq(), seq) })
						if !ok {
							t.Fatalf("batch %d: no entry %d for a value-only entry", batch, seq)
						}
						return tbl.keys.Append(nil, tbl.entries[i].key)
					}
					for i := range deltas {
						deltas[i].Data = inFormatOne(t, deltas[i].Data, true, keyOf)
					}
				}
				tbl.checkpoint(batch, &ck)
				if toFormatOne {
					for i := range ck.Segments {
						ck.Segments[i].Data = inFormatOne(t, ck.Segments[i].Data, false, nil)
					}
				}
				if test.writeOne {
					for _, d := range deltas {
						if d.Data[0] != partFormatV1 {
							t.Fatalf("batch %d: a delta in format %d, want 1", batch, d.Data[0])
						}
					}
					for _, seg := range ck.Segments {
						if seg.Data[0] != partFormatV1 {
							t.Fatalf("batch %d: a segment in format %d, want 1", batch, seg.Data[0])
						}
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
			// The deltas the store keeps hold no more than the segments
			// (a round of rewrites), not every delta ever written.
			segments, deltas, parts := 0, 0, 0
			must(t, store.LoadState(ctx, "op", func(p StatePart) error {
				parts++
				if p.Kind == SegmentPart {
					segments += len(p.Data)
				} else {
					deltas += len(p.Data)
				}
				return nil
			}))
			t.Logf("%d keys, %d parts in the store: segments of %d bytes, deltas of %d", len(model), parts, segments, deltas)
			if deltas > 2*segments+4096 {
				t.Errorf("the store holds %d bytes of deltas for segments of %d bytes: old deltas are not dropped", deltas, segments)
			}
		})
	}
}

// TestDeltaOmitsKeysTheStoreHas checks that a delta's entry of a key whose
// segment's stored snapshot holds it is value only, that a new key's entry
// keeps its key, and that the state loads from the snapshot and such
// deltas.
func TestDeltaOmitsKeysTheStoreHas(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	h := store.Handle()
	if _, err := h.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	tbl := newTable[string, int64]("op")
	model := map[string]int64{}
	put := func(k string, v int64) { tbl.put(k, v, 0); model[k] = v }
	commit := func(batch uint64) Delta {
		t.Helper()
		ck := Checkpoint{Batch: batch, KeepFrom: 1}
		d, ok := tbl.delta(batch)
		if !ok {
			t.Fatalf("batch %d: no delta", batch)
		}
		tbl.checkpoint(batch, &ck)
		must(t, h.RecordPlan(ctx, Plan{ID: batch}))
		must(t, h.Prepare(ctx, batch, []Delta{d}))
		must(t, h.Commit(ctx, ck))
		tbl.committed()
		got, err := readState[string, int64](ctx, store, "op", batch, segmentShift)
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		if len(got) != len(model) {
			t.Fatalf("batch %d: %d keys loaded, want %d", batch, len(got), len(model))
		}
		for _, kv := range got {
			if model[kv.Key] != kv.Value {
				t.Fatalf("batch %d: %s = %d, want %d", batch, kv.Key, kv.Value, model[kv.Key])
			}
		}
		return d
	}
	key := func(i int) string { return fmt.Sprintf("a-key-of-some-length-%04d", i) }
	for i := range 1000 {
		put(key(i), int64(i))
	}
	commit(1)
	// Every segment holds every key now: an update is value only; a new
	// key and a removal are not.
	for i := range 100 {
		put(key(i*7), int64(-i-1))
	}
	put("new", 1)
	tbl.remove(key(1))
	delete(model, key(1))
	d := commit(2)
	p, err := decodePart(d.Data)
	if err != nil {
		t.Fatal(err)
	}
	var valueOnly, withKey, removed int
	for _, e := range p.entries {
		switch {
		case e.valueOnly:
			valueOnly++
		case e.set:
			withKey++
			if string(e.key) != "new" {
				t.Errorf("entry %d has its key %q, which the stored segment holds", e.seq, e.key)
			}
		default:
			removed++
		}
	}
	if valueOnly != 100 || withKey != 1 || removed != 1 {
		t.Errorf("delta of 2: %d value-only entries, %d with keys, %d removals; want 100, 1, 1", valueOnly, withKey, removed)
	}
	if max := 100*4 + 64; len(d.Data) > max {
		t.Errorf("delta of 2 is %d bytes, want at most %d for 100 value-only entries", len(d.Data), max)
	}
	// 2's changes did not pay for rewriting the segment: the next delta's
	// entry of "new" keeps its key, which only 2's delta has.
	put("new", 2)
	put(key(3), 33)
	d = commit(3)
	if p, err = decodePart(d.Data); err != nil {
		t.Fatal(err)
	}
	for _, e := range p.entries {
		if e.valueOnly == (string(e.key) == "new") {
			t.Errorf("delta of 3: entry %d: value only %v, key %q", e.seq, e.valueOnly, e.key)
		}
	}
}

// inFormatOne re-encodes a stored part in format 1, its entries reversed
// if reverse, value-only entries with the key keyOf gives.
func inFormatOne(t *testing.T, data []byte, reverse bool, keyOf func(seq uint64) []byte) []byte {
	t.Helper()
	p, err := decodePart(data)
	if err != nil {
		t.Fatal(err)
	}
	b := appendHeader(nil, partFormatV1, p.timed, p.batch, p.nextSeq, len(p.entries))
	if reverse {
		slices.Reverse(p.entries)
	}
	for _, e := range p.entries {
		if e.valueOnly {
			e.key, e.valueOnly = keyOf(e.seq), false
		}
		b = appendRaw(b, partFormatV1, p.timed, 0, e)
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
	f.Add([]byte{partFormatV1, flagTimed, 1, 2, 1, 0, 1, 1, 'k', 4, 1, 2})
	f.Add([]byte{partFormatV1, 0, 3, 9, 2, 7, 0, 2, 1, 1, 'k', 1, 5})
	f.Add([]byte{partFormat, flagTimed, 1, 2, 1, 1, 1, 'k', 4, 1, 2})
	f.Add([]byte{partFormat, 0, 3, 9, 2, 8, 9, 1, 'k', 1, 5})
	f.Add([]byte{partFormat, 0, 3, 9, 2, 10, 4, 1, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodePart(data)
		if err != nil {
			return
		}
		again := appendHeader(nil, p.format, p.timed, p.batch, p.nextSeq, len(p.entries))
		next := uint64(0)
		for _, e := range p.entries {
			again = appendRaw(again, p.format, p.timed, next, e)
			next = e.seq + 1
		}
		q, err := decodePart(again)
		if err != nil || !slices.EqualFunc(p.entries, q.entries, func(a, b rawEntry) bool {
			return a.seq == b.seq && a.set == b.set && a.valueOnly == b.valueOnly && a.touched == b.touched && string(a.key) == string(b.key) && string(a.val) == string(b.val)
		}) {
			t.Fatalf("decoded %+v, re-encoded and decoded %+v (%v)", p.entries, q.entries, err)
		}
	})
}

// appendRaw encodes a decoded entry again in format, after an entry whose
// sequence number is next-1, for the fuzz test.
func appendRaw(b []byte, format byte, timed bool, next uint64, e rawEntry) []byte {
	if format == partFormatV1 {
		b = appendUvarint(b, e.seq)
		if !e.set {
			return append(b, 0)
		}
		b = append(b, 1)
	} else {
		kind := uint64(entryRemoved)
		switch {
		case e.valueOnly:
			kind = entryValue
		case e.set:
			kind = entrySet
		}
		b = appendUvarint(b, (e.seq-next)<<2|kind)
		if !e.set {
			return b
		}
	}
	if !e.valueOnly {
		b = appendUvarint(b, uint64(len(e.key)))
		b = append(b, e.key...)
	}
	if timed {
		b = appendVarint(b, e.touched)
	}
	b = appendUvarint(b, uint64(len(e.val)))
	return append(b, e.val...)
}

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
func appendVarint(b []byte, v int64) []byte   { return binary.AppendVarint(b, v) }
