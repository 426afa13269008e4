package ingest_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// TestReadCompacted reads a compacted partition: the cleaner has removed
// every record but the last of each key, leaving gaps inside ranges, also at
// their ends and in the middle of record batches. Every range reads exactly
// the surviving records in it, the same on every read and from a fresh
// client, and the count is below until − from.
func TestReadCompacted(t *testing.T) {
	str := func(s string) *string { return &s }
	e := newEnv(t, 1, map[string]*string{
		"cleanup.policy":            str("compact"),
		"min.cleanable.dirty.ratio": str("0.01"),
		"min.compaction.lag.ms":     str("0"),
		"segment.ms":                str("60000"),
	})
	// The records are an hour old, so the first record stamped now rolls
	// the segment (segment.ms compares record timestamps): everything
	// before it becomes cleanable at once, with no waiting for the clock.
	old := time.Now().Add(-time.Hour)
	last := map[string]rec{}
	var order []string
	write := func(ts time.Time, keys ...string) {
		var rs []*kgo.Record
		for i, k := range keys {
			rs = append(rs, &kgo.Record{Topic: e.topic, Key: []byte(k), Value: []byte(fmt.Sprintf("%s=%d", k, i)), Timestamp: ts})
		}
		for i, off := range produceRecords(t, e.prod, rs...) {
			if _, seen := last[keys[i]]; !seen {
				order = append(order, keys[i])
			}
			last[keys[i]] = rec{0, off, string(rs[i].Value)}
		}
	}
	// One request per call: multi-record batches and single ones.
	write(old, "k0", "k1", "k2", "k3", "k4") // 0-4
	write(old, "k1")                         // 5
	write(old, "k2")                         // 6
	write(old, "k0", "k3", "k3", "k5")       // 7-10: k0 and the first k3 go
	write(old, "k4")                         // 11
	write(old, "k1", "k6", "k1")             // 12-14: a batch losing its first and keeping its last
	write(old, "k6", "k7")                   // 15-16: a batch keeping both
	write(old, "k5")                         // 17
	write(time.Now(), "roll")                // 18: a new segment

	var want []rec
	for _, k := range order {
		want = append(want, last[k])
	}
	slices.SortFunc(want, func(a, b rec) int { return int(a.Offset - b.Offset) })
	const end = 19

	src := e.source(ingest.Config{})
	plan := cut(t, src, nil)
	if want := []microbatch.Range{e.span(0, 0, end)}; !slices.Equal(plan, want) {
		t.Fatalf("cut %v, want %v", plan, want)
	}
	poll(t, "the cleaner compacts the first segment", func(ctx context.Context) (bool, error) {
		got, err := read(src, plan)
		return err == nil && equalRecs(recs(got), want), err
	})

	fresh := e.source(ingest.Config{})
	for from := int64(0); from <= end; from++ {
		for until := from; until <= end; until++ {
			r := []microbatch.Range{e.span(0, from, until)}
			want := only(want, 0, from, until)
			for i, s := range []*ingest.Source{src, src, fresh} {
				got, err := read(s, r)
				if err != nil {
					t.Fatal(err)
				}
				if !equalRecs(recs(got), want) {
					t.Fatalf("read %d of %v:\n got %v\nwant %v", i+1, r, recs(got), want)
				}
			}
		}
	}
	if n := int64(len(want)); n >= end {
		t.Fatalf("%d records survive in [0, %d): the cleaner left no gap", n, end)
	}
	t.Logf("[0, %d) holds %d records after compaction: %v", end, len(want), want)
}
