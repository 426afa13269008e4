package ingest_test

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// fetchCounter counts the Fetch requests a client writes, and the others.
type fetchCounter struct{ n, other atomic.Int64 }

func (c *fetchCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, _ error) {
	if key == 1 { // Fetch
		c.n.Add(1)
	} else {
		c.other.Add(1)
	}
}

var _ kgo.HookBrokerWrite = (*fetchCounter)(nil)

// TestOneFetchPerLeader reads batches of four partitions on one broker: the
// first fetch of a read asks for all four ranges in one request, and for
// the next batches' records too, so a batch takes one request at most, and
// most take none; the records are those of a fetch per partition (a source
// whose fetches are too small to bring anything past a range). And while
// the rate cap bounds every range, a cut reuses the offsets listed by the
// cut before: it sends no request.
func TestOneFetchPerLeader(t *testing.T) {
	const partitions, batches, perBatch = 4, 16, 50
	e := newEnv(t, partitions, nil)
	// Record batches of 10 lines of 4 KiB that do not compress: a range is
	// more than a fetch's least size (64 KiB), so a fetch brings only the
	// batches it asks for.
	rng := rand.New(rand.NewPCG(1, 2))
	pad := func() string {
		b := make([]byte, 2<<10)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return hex.EncodeToString(b)
	}
	for p := range int32(partitions) {
		for i := 0; i < batches*perBatch; i += 10 {
			var lines []string
			for k := i; k < i+10; k++ {
				lines = append(lines, fmt.Sprintf("line %d of partition %d %s", k, p, pad()))
			}
			e.produce(p, lines...)
		}
	}
	counter := &fetchCounter{}
	cl := e.client(kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.WithHooks(counter))
	// Fetches of at most 1 MiB: about five ranges of a partition.
	src, err := ingest.New(cl, ingest.Config{Topic: e.topic, BatchInterval: time.Second, MaxRatePerPartition: perBatch, PartitionFetchBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ingest.SetRelist(src, time.Hour)                            // every cut after the first may reuse the listed offsets
	small := e.source(ingest.Config{PartitionFetchBytes: 1024}) // about a record batch a fetch
	var after []microbatch.Range
	total, quietCuts := int64(0), 0
	for batch := range batches {
		requests := counter.other.Load()
		ranges := cut(t, src, after)
		if batch > 0 && counter.other.Load() == requests {
			quietCuts++
		}
		before := counter.n.Load()
		got := mustRead(t, src, ranges)
		fetches := counter.n.Load() - before
		// The first read learns the bytes per offset (its sizes are a
		// guess); every read after it needs one request at most.
		if batch > 0 {
			if fetches > 1 {
				t.Errorf("batch %d: %d fetch requests, want at most 1 for %d partitions on one broker", batch, fetches, partitions)
			}
			total += fetches
		}
		if want := mustRead(t, small, ranges); !slices.Equal(recs(got), recs(want)) || len(got) != partitions*perBatch {
			t.Fatalf("batch %d: read %d records, want the %d a fetch per partition reads", batch, len(got), len(want))
		}
		after = ranges
	}
	// The first cut lists the offsets; the cap binds in every batch after it.
	if quietCuts != batches-1 {
		t.Errorf("%d of %d cuts sent no request, want all while the cap bounds every range", quietCuts, batches-1)
	}
	if total > (batches-1)/3 {
		t.Errorf("%d fetch requests for %d batches: the fetches did not bring the batches after theirs", total, batches-1)
	}
}
