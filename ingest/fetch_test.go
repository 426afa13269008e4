package ingest_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// fetchCounter counts the Fetch requests a client writes.
type fetchCounter struct{ n atomic.Int64 }

func (c *fetchCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, _ error) {
	if key == 1 { // Fetch
		c.n.Add(1)
	}
}

var _ kgo.HookBrokerWrite = (*fetchCounter)(nil)

// TestOneFetchPerLeader reads batches of four partitions on one broker: the
// first fetch of a read asks for all four ranges in one request, so a batch
// whose ranges it covers takes one request, and the records are those of a
// fetch per partition (a source whose fetches are too small to cover them).
func TestOneFetchPerLeader(t *testing.T) {
	const partitions = 4
	e := newEnv(t, partitions, nil)
	for p := range int32(partitions) {
		var lines []string
		for i := range 200 {
			lines = append(lines, fmt.Sprintf("line %d of partition %d", i, p))
		}
		e.produce(p, lines...)
	}
	counter := &fetchCounter{}
	cl := e.client(kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.WithHooks(counter))
	src, err := ingest.New(cl, ingest.Config{Topic: e.topic, BatchInterval: time.Second, MaxRatePerPartition: 50})
	if err != nil {
		t.Fatal(err)
	}
	small := e.source(ingest.Config{PartitionFetchBytes: 1024}) // about a record batch a fetch
	var after []microbatch.Range
	for batch := range 4 {
		ranges := cut(t, src, after)
		before := counter.n.Load()
		got := mustRead(t, src, ranges)
		fetches := counter.n.Load() - before
		// The first read learns the bytes per offset (its sizes are a
		// guess); every read after it needs one request.
		if batch > 0 && fetches != 1 {
			t.Errorf("batch %d: %d fetch requests, want 1 for %d partitions on one broker", batch, fetches, partitions)
		}
		if want := mustRead(t, small, ranges); !slices.Equal(recs(got), recs(want)) || len(got) != partitions*50 {
			t.Fatalf("batch %d: read %d records, want the %d a fetch per partition reads", batch, len(got), len(want))
		}
		after = ranges
	}
}
