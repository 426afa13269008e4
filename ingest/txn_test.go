package ingest_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// txnLog writes one partition's worth of interleaved input and remembers
// which records a read_committed reader must see.
type txnLog struct {
	e         *env
	p         int32
	committed []rec // by offset
	aborted   int
	markers   int
	written   int64 // offsets taken: records of every kind and markers
}

func (l *txnLog) plain(values ...string) {
	for i, off := range l.e.produce(l.p, values...) {
		l.committed = append(l.committed, rec{l.p, off, values[i]})
	}
	l.written += int64(len(values))
}

// pending produces values in cl's open transaction; the caller says later
// whether they count.
func (l *txnLog) pending(cl *kgo.Client, values ...string) []rec {
	var out []rec
	for i, off := range produceWith(l.e.t, cl, l.e.topic, l.p, values...) {
		out = append(out, rec{l.p, off, values[i]})
	}
	l.written += int64(len(values))
	return out
}

func (l *txnLog) end(cl *kgo.Client, pending []rec, commit bool) {
	if commit {
		end(l.e.t, cl, kgo.TryCommit)
		l.committed = append(l.committed, pending...)
	} else {
		end(l.e.t, cl, kgo.TryAbort)
		l.aborted += len(pending)
	}
	l.markers++
	l.written++
	// EndTransaction returns once the coordinator has decided; the marker
	// reaches the partition a moment later.
	l.e.waitEnd(l.p, l.written)
	slices.SortFunc(l.committed, func(a, b rec) int { return int(a.Offset - b.Offset) })
}

// TestReadTransactions reads a partition of non-transactional records
// interleaved with committed and aborted transactions, two of them open at
// once, and ending in a commit marker. Every range [from, until) within it,
// including those that end on a marker or inside an aborted transaction,
// reads exactly the committed records with offsets in the range.
func TestReadTransactions(t *testing.T) {
	e := newEnv(t, 2, nil)
	l := &txnLog{e: e, p: 0}
	a, b := e.txn("a"), e.txn("b")

	l.plain("n0", "n1")
	begin(t, a)
	pa := l.pending(a, "a0", "a1", "a2")
	l.end(a, pa, true)
	l.plain("n2")
	begin(t, b)
	pb := l.pending(b, "b0", "b1")
	l.end(b, pb, false)
	// Two transactions open at once, their batches interleaved with each
	// other and with plain records: a commits, b aborts.
	begin(t, a)
	begin(t, b)
	pa = l.pending(a, "a3")
	pb = l.pending(b, "b2", "b3")
	l.plain("n3")
	pa = append(pa, l.pending(a, "a4", "a5")...)
	pb = append(pb, l.pending(b, "b4")...)
	l.end(b, pb, false)
	l.end(a, pa, true)
	l.plain("n4", "n5")
	begin(t, b)
	pb = l.pending(b, "b5")
	l.end(b, pb, false)
	begin(t, a)
	pa = l.pending(a, "a6", "a7")
	l.end(a, pa, true) // the partition ends on a commit marker

	src := e.source(ingest.Config{})
	plan := cut(t, src, nil)
	lso := plan[0].Until
	if want := int64(len(l.committed) + l.aborted + l.markers); lso != want {
		t.Fatalf("the partition ends at %d, want %d committed + %d aborted + %d markers = %d",
			lso, len(l.committed), l.aborted, l.markers, want)
	}
	if got := recs(mustRead(t, src, plan)); !equalRecs(got, l.committed) {
		t.Fatalf("read of the whole plan %v:\n got %v\nwant %v", plan, got, l.committed)
	}
	ranges := 0
	for from := int64(0); from <= lso; from++ {
		for until := from; until <= lso; until++ {
			r := []microbatch.Range{e.span(0, from, until)}
			got, err := read(src, r)
			if err != nil {
				t.Fatal(err)
			}
			if want := only(l.committed, 0, from, until); !equalRecs(recs(got), want) {
				t.Fatalf("read %v:\n got %v\nwant %v", r, recs(got), want)
			}
			ranges++
		}
	}
	t.Logf("%d ranges over %d offsets: %d committed records, %d aborted, %d markers",
		ranges, lso, len(l.committed), l.aborted, l.markers)
}

// TestReadAbortedOnly reads ranges that hold no committed record at all:
// nothing but aborted records and markers. Read returns nothing and does
// not wait for records that will never come.
func TestReadAbortedOnly(t *testing.T) {
	e := newEnv(t, 1, nil)
	a := e.txn("a")
	for i := range 3 {
		begin(t, a)
		produceWith(t, a, e.topic, 0, fmt.Sprintf("x%d", i), fmt.Sprintf("y%d", i))
		end(t, a, kgo.TryAbort)
	}
	e.waitEnd(0, 9)
	src := e.source(ingest.Config{})
	plan := cut(t, src, nil)
	if want := []microbatch.Range{e.span(0, 0, 9)}; !slices.Equal(plan, want) {
		t.Fatalf("cut %v, want %v (6 aborted records and 3 markers)", plan, want)
	}
	for from := int64(0); from < 9; from++ {
		if got := mustRead(t, src, []microbatch.Range{e.span(0, from, 9)}); len(got) != 0 {
			t.Fatalf("read [%d, 9) of aborted records: %v", from, recs(got))
		}
	}
}

// TestCutStopsAtOpenTransaction: an open transaction holds the last stable
// offset back, so Cut plans nothing past its first record, even though
// committed records follow it; once it ends, the next batch takes the rest.
func TestCutStopsAtOpenTransaction(t *testing.T) {
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			e := newEnv(t, 2, nil)
			l := &txnLog{e: e, p: 0}
			l.plain("n0", "n1", "n2")
			a := e.txn("a")
			begin(t, a)
			pa := l.pending(a, "a0", "a1")
			l.plain("n3", "n4") // after the open transaction: held back too
			e.produce(1, "m0")  // another partition is not held back

			src := e.source(ingest.Config{})
			b1 := cut(t, src, nil)
			want := []microbatch.Range{e.span(0, 0, pa[0].Offset), e.span(1, 0, 1)}
			if !slices.Equal(b1, want) {
				t.Fatalf("cut with an open transaction at offset %d: %v, want %v", pa[0].Offset, b1, want)
			}
			if again := cut(t, src, b1); again[0].From != again[0].Until {
				t.Fatalf("cut after %v with the transaction still open: %v, want an empty range", b1, again)
			}
			got := recs(mustRead(t, src, b1))
			if want := append(only(l.committed, 0, 0, 3), rec{1, 0, "m0"}); !equalRecs(got, want) {
				t.Fatalf("read %v: %v, want %v", b1, got, want)
			}

			l.end(a, pa, commit)
			b2 := cut(t, src, b1)
			if want := e.span(0, pa[0].Offset, int64(len(l.committed)+l.aborted+l.markers)); b2[0] != want {
				t.Fatalf("cut after the transaction ended: %v, want %v", b2[0], want)
			}
			got = recs(mustRead(t, src, b2))
			if want := only(l.committed, 0, b2[0].From, b2[0].Until); !equalRecs(got, want) {
				t.Fatalf("read %v: %v, want %v", b2, got, want)
			}
		})
	}
}
