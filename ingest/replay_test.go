package ingest_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/microbatch"
)

// TestReplay cuts a topic of web-log lines, some in committed and some in
// aborted transactions, into batches, and reads every batch again and again:
// with the same source, with the ranges in another order, with small
// fetches, and from a fresh client. Every read gives the same records in the
// same order (partition by partition, by offset), and all batches together
// are what a plain read_committed consumer of the topic sees.
func TestReplay(t *testing.T) {
	const partitions = 4
	e := newEnv(t, partitions, nil)
	gen := weblog.NewGenerator(7, 50)
	txn := e.txn("a")
	for round := range 6 {
		for p := range int32(partitions) {
			var lines []string
			for range 10 + int(p)*7 + round {
				lines = append(lines, gen.Line())
			}
			e.produce(p, lines...)
		}
		begin(t, txn)
		produceWith(t, txn, e.topic, int32(round%partitions), gen.Line(), gen.Line())
		if round%3 == 1 {
			end(t, txn, kgo.TryAbort)
		} else {
			end(t, txn, kgo.TryCommit)
		}
	}
	e.settle()
	want := consumeAll(t, e)

	src := e.source(ingest.Config{MaxRatePerPartition: 15, BatchInterval: time.Second})
	var plans [][]microbatch.Range
	var all []rec
	for after := []microbatch.Range(nil); ; {
		plan := cut(t, src, after)
		if (microbatch.Plan{Ranges: plan}).Records() == 0 {
			break
		}
		plans = append(plans, plan)
		all = append(all, recs(mustRead(t, src, plan))...)
		after = plan
	}
	if len(plans) < 3 {
		t.Fatalf("%d batches: want several", len(plans))
	}
	if !equalRecs(sortedByPartition(all), want) {
		t.Fatalf("the batches read\n%v\nbut a consumer reads\n%v", all, want)
	}

	fresh := e.source(ingest.Config{})
	small := e.source(ingest.Config{PartitionFetchBytes: 1024})
	for i, plan := range plans {
		first := recs(mustRead(t, src, plan))
		reversed := slices.Clone(plan)
		slices.Reverse(reversed)
		for _, again := range []struct {
			name   string
			src    *ingest.Source
			ranges []microbatch.Range
		}{
			{"same source", src, plan},
			{"ranges reversed", src, reversed},
			{"fresh client", fresh, plan},
			{"1 KiB fetches", small, plan},
		} {
			if got := recs(mustRead(t, again.src, again.ranges)); !equalRecs(got, first) {
				t.Fatalf("batch %d %v, %s: read\n%v\nbut first\n%v", i+1, plan, again.name, got, first)
			}
		}
		// AppendRecords appends what Read emits, after what dst holds.
		held := []microbatch.Record{{Partition: 9, Offset: 9, Value: []byte("held")}}
		appended, err := small.AppendRecords(context.Background(), plan, held)
		if err != nil {
			t.Fatal(err)
		}
		if len(appended) == 0 || string(appended[0].Value) != "held" || !equalRecs(recs(appended[1:]), first) {
			t.Fatalf("batch %d %v: AppendRecords gave\n%v\nbut Read\n%v", i+1, plan, recs(appended), first)
		}
		for j := 1; j < len(first); j++ {
			a, b := first[j-1], first[j]
			if a.Partition > b.Partition || a.Partition == b.Partition && a.Offset >= b.Offset {
				t.Fatalf("batch %d: record %v before %v: not partition by partition in offset order", i+1, a, b)
			}
		}
	}
}

// consumeAll reads the committed records of the test's topic with a plain
// franz-go consumer, partition by partition in offset order.
func consumeAll(t *testing.T, e *env) []rec {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := e.adm.ListCommittedOffsets(ctx, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		starts[o.Partition] = kgo.NewOffset().AtStart()
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	cl := e.client(kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{e.topic: starts}))
	var out []rec
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("consume %s: %v (still waiting for %v)", e.topic, err, remaining)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := remaining[r.Partition]; ok && r.Offset >= end-1 {
				delete(remaining, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, rec{r.Partition, r.Offset, string(r.Value)})
			}
		})
	}
	return sortedByPartition(out)
}

func sortedByPartition(in []rec) []rec {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b rec) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	return out
}

// TestReadCanceled cancels a read from its emit callback: Read stops with
// the context's error instead of reading on.
func TestReadCanceled(t *testing.T) {
	e := newEnv(t, 2, nil)
	for p := range int32(2) {
		e.produce(p, values("v", 500)...)
	}
	src := e.source(ingest.Config{PartitionFetchBytes: 1024}) // many fetches
	plan := cut(t, src, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emitted := 0
	err := src.Read(ctx, plan, func(microbatch.Record) {
		emitted++
		cancel()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read canceled after the first record: %v, want context.Canceled", err)
	}
	if emitted >= 1000 {
		t.Fatalf("read canceled after the first record emitted all %d", emitted)
	}
}
