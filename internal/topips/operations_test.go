package topips_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/internal/wiring"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/sinks"
	"github.com/dstream-io/dstream/state"
)

// cutBeforeCommit arms the proxy in front of Redis to cut the network in
// the middle of the first commit transaction after recovery's (between its
// reads and its writes): the next batch's, or that of the group of batches
// that commits with it.
type cutBeforeCommit struct {
	microbatch.Store
	proxy     *redistest.Proxy
	recovered uint64 // the batch recovery completed
	once      sync.Once
}

func (s *cutBeforeCommit) Commit(ctx context.Context, c microbatch.Checkpoint) error {
	if s.recovered == 0 {
		s.recovered = c.Batch
	}
	if c.Batch > s.recovered {
		s.once.Do(func() { s.proxy.CutOn("HGET", 300*time.Millisecond) })
	}
	return s.Store.Commit(ctx, c)
}

// TestRedisCutDuringRecoveryAndCommit crashes the job between a batch's
// output transaction and its checkpoint commit, then restarts it with Redis
// behind a proxy that cuts the network in the middle of recovery's commit
// of that batch, and again in the middle of a later batch's commit. Network
// errors are retried, not taken for conflicts: the job recovers and goes
// on, and the output is exactly an uninterrupted run's.
func TestRedisCutDuringRecoveryAndCommit(t *testing.T) {
	f := newFixture(t, 120)
	const crashBatch = 3
	if err := f.run(t, 100, &crashingStore{Store: f.store(t), batch: crashBatch, at: "after-sink"}); !errors.Is(err, errCrash) {
		t.Fatalf("first run: %v, want the injected crash", err)
	}
	proxy, err := redistest.NewProxy(f.redis.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1})
	defer rdb.Close()
	store, err := state.NewRedis(rdb, state.Config{Job: f.job, LeaseTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Recovery completes batch 3 (and the batches that committed with
	// it), whose output is committed: its commit is cut; so is the next.
	proxy.CutOn("HGET", 300*time.Millisecond)
	if err := f.run(t, f.batchesToDrain, &cutBeforeCommit{Store: store, proxy: proxy}); err != nil {
		t.Fatal(err)
	}
	if proxy.Cuts() != 2 {
		t.Fatalf("the proxy cut Redis %d times, want 2", proxy.Cuts())
	}
	f.checkOutput(t, f.uninterrupted)
	f.checkDeadLetters(t)
}

// TestOversizedLinesDoNotStopTheStream puts lines as large as the input
// topic takes among ordinary ones: each goes to the dead letters, whole when
// it fits with its headers and cut to the topic's max.message.bytes with
// dstream-truncated-from otherwise, and the stream goes on past them.
func TestOversizedLinesDoNotStopTheStream(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	const limit = 1048588 // Kafka's default max.message.bytes
	big := map[int]int{2: 1_040_000, 5: limit - 200}
	var lines []string
	for i := range 9 {
		if n, ok := big[i]; ok {
			lines = append(lines, strings.Repeat("x", n))
			continue
		}
		lines = append(lines, "2016-12-06T08:58:35.318+0000 10.0.0."+strconv.Itoa(1+i%3)+" 200 GET /a 0.026")
	}
	cl, err := f.broker.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(limit))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, l := range lines { // one produce request each: a batch of one record fits the topic
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: f.in, Value: []byte(l)}).FirstErr(); err != nil {
			t.Fatalf("produce a %d-byte line: %v", len(l), err)
		}
	}
	src, err := f.broker.Client(kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	in, err := ingest.New(src, ingest.Config{Topic: f.in, BatchInterval: time.Second, MaxRatePerPartition: 2})
	if err != nil {
		t.Fatal(err)
	}
	sink, err := wiring.NewSink(ctx, wiring.SinkConfig{Job: f.job, Output: f.out, DeadLetters: f.dlq},
		[]kgo.Opt{kgo.SeedBrokers(f.broker.Addr())}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	store := f.store(t)
	j := microbatch.NewJob(time.Second, microbatch.WithClock(microbatch.NewVirtualClock(t0)), microbatch.WithBatchLimit(6))
	j.Checkpoint(store)
	topips.Build(j, in, sink, topips.Config{Window: window, Slide: slide, TopN: topN, InputTopic: f.in, DeadLetterTopic: f.dlq})
	if err := j.Run(ctx); err != nil {
		t.Fatalf("the job stopped: %v", err)
	}
	meta, err := store.Progress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	plans, err := store.Plans(ctx, meta.Committed, meta.Committed)
	if err != nil || len(plans) != 1 {
		t.Fatalf("plan of batch %d: %v", meta.Committed, err)
	}
	if end := plans[0].Ranges[0].Until; end != int64(len(lines)) {
		t.Fatalf("the job read to offset %d, want past the oversized lines to %d", end, len(lines))
	}
	dead := f.readAll(t, f.dlq)
	if len(dead) != len(big) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(big))
	}
	for _, r := range dead {
		off, _ := strconv.Atoi(header(r, topips.HeaderSourceOffset))
		want := big[off]
		switch from := header(r, sinks.HeaderTruncatedFrom); {
		case want == 0:
			t.Errorf("a dead letter of offset %d, which held no oversized line", off)
		case from == "" && len(r.Value) != want:
			t.Errorf("offset %d: a dead letter of %d bytes without %s, want the whole %d", off, len(r.Value), sinks.HeaderTruncatedFrom, want)
		case from != "" && (from != strconv.Itoa(want) || len(r.Value) >= want || strings.Trim(string(r.Value), "x") != ""):
			t.Errorf("offset %d: truncated to %d bytes from %s, want a prefix of the %d-byte line", off, len(r.Value), from, want)
		}
		t.Logf("offset %d: %d-byte line, dead letter of %d bytes, truncated from %q", off, want, len(r.Value), header(r, sinks.HeaderTruncatedFrom))
	}
}
