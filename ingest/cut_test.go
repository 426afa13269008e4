package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// TestCutRateCap cuts a topic of known partition sizes until it is drained
// and checks every batch against the rate-cap formula: per partition,
// until = min(last stable offset, from + max(1, ⌊MaxRatePerPartition ×
// interval seconds⌋)). Empty partitions give empty ranges; a drained topic
// gives empty ranges at its end.
func TestCutRateCap(t *testing.T) {
	sizes := []int{25, 7, 0, 1}
	e := newEnv(t, int32(len(sizes)), nil)
	for p, n := range sizes {
		if n > 0 {
			e.produce(int32(p), values(fmt.Sprintf("p%d-", p), n)...)
		}
	}
	for _, test := range []struct {
		name     string
		rate     int64
		interval time.Duration
		cap      int64 // records per partition and batch, by hand; 0: no cap
	}{
		{"rate 4 over 2.5s", 4, 2500 * time.Millisecond, 10},
		{"rate 3 over 1.5s rounds down", 3, 1500 * time.Millisecond, 4},
		{"rate 1 over 100ms takes at least one", 1, 100 * time.Millisecond, 1},
		{"rate 2 over 3s", 2, 3 * time.Second, 6},
		{"cap above the backlog", 1000, 10 * time.Second, 10000},
		{"no cap", 0, time.Second, 0},
	} {
		t.Run(test.name, func(t *testing.T) {
			src := e.source(ingest.Config{MaxRatePerPartition: test.rate, BatchInterval: test.interval})
			var after []microbatch.Range
			for batch := 1; ; batch++ {
				got := cut(t, src, after)
				var want []microbatch.Range
				drained := true
				for p, n := range sizes {
					from := int64(0)
					if after != nil {
						from = after[p].Until
					}
					until := int64(n)
					if test.cap > 0 {
						until = min(until, from+test.cap)
					}
					drained = drained && from == until
					want = append(want, e.span(int32(p), from, until))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("batch %d: cut %v, want %v", batch, got, want)
				}
				if drained {
					break
				}
				if batch > 100 {
					t.Fatal("the topic never drains")
				}
				after = got
			}
		})
	}
}

// TestCutSizesFirstBatches spells out the first batches of one topic, so
// that the formula of TestCutRateCap is checked against plain numbers too.
func TestCutSizesFirstBatches(t *testing.T) {
	e := newEnv(t, 3, nil)
	e.produce(0, values("a", 25)...)
	e.produce(1, values("b", 7)...)
	src := e.source(ingest.Config{MaxRatePerPartition: 4, BatchInterval: 2500 * time.Millisecond})
	want := [][]microbatch.Range{
		{e.span(0, 0, 10), e.span(1, 0, 7), e.span(2, 0, 0)},
		{e.span(0, 10, 20), e.span(1, 7, 7), e.span(2, 0, 0)},
		{e.span(0, 20, 25), e.span(1, 7, 7), e.span(2, 0, 0)},
		{e.span(0, 25, 25), e.span(1, 7, 7), e.span(2, 0, 0)},
	}
	var after []microbatch.Range
	for i, w := range want {
		got := cut(t, src, after)
		if !slices.Equal(got, w) {
			t.Fatalf("batch %d: cut %v, want %v", i+1, got, w)
		}
		if i == 0 {
			pos := []ingest.CutPosition{{Partition: 0, Until: 10, End: 25}, {Partition: 1, Until: 7, End: 7}, {Partition: 2, Until: 0, End: 0}}
			if got := src.LastCut(); !slices.Equal(got, pos) {
				t.Fatalf("LastCut after batch 1 = %v, want %v", got, pos)
			}
		}
		after = got
	}
}

// TestCutAddedPartitions grows the topic while a job runs: the new
// partitions join the next batch at their earliest offset (even for a job
// that started at the latest), after the old ones, and the old ones go on
// where they were.
func TestCutAddedPartitions(t *testing.T) {
	for _, test := range []struct {
		start ingest.StartOffset
		first []int64 // the first batch's From of partitions 0 and 1
	}{
		{ingest.Earliest, []int64{0, 0}},
		{ingest.Latest, []int64{6, 3}},
	} {
		t.Run(string(test.start), func(t *testing.T) {
			e := newEnv(t, 2, nil)
			e.produce(0, values("a", 6)...)
			e.produce(1, values("b", 3)...)
			src := e.source(ingest.Config{StartOffset: test.start, MaxRatePerPartition: 2, BatchInterval: time.Second})

			b1 := cut(t, src, nil)
			f0, f1 := test.first[0], test.first[1]
			want := []microbatch.Range{e.span(0, f0, min(f0+2, 6)), e.span(1, f1, min(f1+2, 3))}
			if !slices.Equal(b1, want) {
				t.Fatalf("batch 1: cut %v, want %v", b1, want)
			}

			e.addPartitions(4)
			e.produce(2, values("c", 5)...)
			e.produce(3, values("d", 4)...)
			e.deleteBefore(3, 3) // partition 3's earliest offset is 3, not 0

			b2 := cut(t, src, b1)
			want = []microbatch.Range{
				e.span(0, b1[0].Until, min(b1[0].Until+2, 6)),
				e.span(1, b1[1].Until, min(b1[1].Until+2, 3)),
				e.span(2, 0, 2),
				e.span(3, 3, 4),
			}
			if !slices.Equal(b2, want) {
				t.Fatalf("batch 2 after adding partitions 2 and 3: cut %v, want %v", b2, want)
			}
			b3 := cut(t, src, b2)
			for i, r := range b3 {
				if r.Partition != int32(i) || r.From != b2[i].Until {
					t.Fatalf("batch 3: cut %v does not continue batch 2 %v in partition order", b3, b2)
				}
			}
			got := mustRead(t, src, b2[2:])
			if want := []rec{{2, 0, "c0"}, {2, 1, "c1"}, {3, 3, "d3"}}; !slices.Equal(recs(got), want) {
				t.Fatalf("read of the new partitions: %v, want %v", recs(got), want)
			}
		})
	}
}

// TestCutErrors covers plans that cannot continue.
func TestCutErrors(t *testing.T) {
	e := newEnv(t, 2, nil)
	e.produce(0, values("a", 3)...)
	src := e.source(ingest.Config{})
	for _, test := range []struct {
		name      string
		after     []microbatch.Range
		want      string
		permanent bool
	}{
		{"checkpoint past the end", []microbatch.Range{e.span(0, 0, 9), e.span(1, 0, 0)}, "ends at 3", true},
		{"partition removed", []microbatch.Range{e.span(0, 0, 3), e.span(1, 0, 0), e.span(7, 0, 0)}, "disappeared", false},
	} {
		t.Run(test.name, func(t *testing.T) {
			_, err := src.Cut(context.Background(), test.after)
			if err == nil || !strings.Contains(err.Error(), test.want) || errors.Is(err, microbatch.ErrPermanent) != test.permanent {
				t.Fatalf("cut after %v: %v, want an error saying %q, permanent %v", test.after, err, test.want, test.permanent)
			}
		})
	}
	missing, err := ingest.New(e.client(), ingest.Config{Topic: e.topic + "-missing"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := missing.Cut(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "does it exist") {
		t.Fatalf("cut of a missing topic: %v, want an error asking whether it exists", err)
	}
}

func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}
