package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// TestOffsetGap deletes records (DeleteRecords, as retention would) below
// offsets a plan needs: a Cut that lists the offsets and a Read fail with an
// OffsetGapError naming the topic, the partition, the offset needed and the
// partition's new start, and the error is permanent, so the engine stops
// instead of retrying.
func TestOffsetGap(t *testing.T) {
	e := newEnv(t, 2, nil)
	e.produce(0, values("a", 20)...)
	e.produce(1, values("b", 20)...)
	src := e.source(ingest.Config{MaxRatePerPartition: 5, BatchInterval: time.Second})
	b1 := cut(t, src, nil) // [0, 5) of both

	e.deleteBefore(1, 3) // inside b1 of partition 1
	e.deleteBefore(0, 5) // exactly b1's end: b1 of partition 0 is gone, b2 is whole

	for _, test := range []struct {
		name      string
		do        func() error
		partition int32
		want, got int64
	}{
		{"read of a range starting below the log start", func() error {
			_, err := read(src, b1[1:])
			return err
		}, 1, 0, 3},
		{"read of a range starting below the log start of partition 0", func() error {
			_, err := read(src, b1[:1])
			return err
		}, 0, 0, 5},
		{"read of a range with only its first offsets deleted", func() error {
			_, err := read(src, []microbatch.Range{e.span(1, 2, 10)})
			return err
		}, 1, 2, 3},
		{"read from a fresh source", func() error {
			_, err := read(e.source(ingest.Config{}), []microbatch.Range{e.span(1, 0, 1)})
			return err
		}, 1, 0, 3},
		{"cut after a batch ending below the log start", func() error {
			e.deleteBefore(0, 12)
			// A source that lists the offsets (src may cut from the
			// ones it listed, and leave the gap for its read to find).
			fresh := e.source(ingest.Config{MaxRatePerPartition: 5, BatchInterval: time.Second})
			_, err := fresh.Cut(context.Background(), []microbatch.Range{e.span(0, 5, 10), e.span(1, 5, 10)})
			return err
		}, 0, 10, 12},
		{"read of a batch cut from the offsets listed before the deletion", func() error {
			b2, err := src.Cut(context.Background(), []microbatch.Range{e.span(0, 5, 10), e.span(1, 5, 10)})
			if err != nil {
				return err // a cut that listed the offsets again
			}
			_, err = read(src, b2[:1])
			return err
		}, 0, 10, 12},
	} {
		t.Run(test.name, func(t *testing.T) {
			err := test.do()
			var gap *ingest.OffsetGapError
			if !errors.As(err, &gap) {
				t.Fatalf("err = %v, want an *ingest.OffsetGapError", err)
			}
			want := ingest.OffsetGapError{Topic: e.topic, Partition: test.partition, Want: test.want, Got: test.got}
			if *gap != want {
				t.Fatalf("err = %+v, want %+v", *gap, want)
			}
			if !errors.Is(err, microbatch.ErrPermanent) {
				t.Fatalf("errors.Is(%v, microbatch.ErrPermanent) = false", err)
			}
			for _, s := range []string{e.topic, fmt.Sprintf("[%d]", test.partition),
				fmt.Sprintf("from %d", test.want), fmt.Sprintf("starts at %d", test.got)} {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not say %q", err, s)
				}
			}
		})
	}

	// Both partitions of b1 have a gap: Read reports a gap, not the
	// cancellation of the partition it stopped.
	_, err := read(src, b1)
	var gap *ingest.OffsetGapError
	if !errors.As(err, &gap) || !errors.Is(err, microbatch.ErrPermanent) || errors.Is(err, context.Canceled) {
		t.Fatalf("read of %v: %v, want only offset gaps", b1, err)
	}

	// What the broker still has reads as before.
	got := mustRead(t, src, []microbatch.Range{e.span(0, 12, 14), e.span(1, 3, 5)})
	if want := []rec{{0, 12, "a12"}, {0, 13, "a13"}, {1, 3, "b3"}, {1, 4, "b4"}}; !equalRecs(recs(got), want) {
		t.Fatalf("read after the deletions: %v, want %v", recs(got), want)
	}
}
