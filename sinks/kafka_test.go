package sinks_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/sinks"
	"github.com/dstream-io/dstream/sinks/sinktest"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m, kafkatest.Options{})) }

func TestMemorySinkConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Opener {
		s := microbatch.NewMemorySink()
		return func(*testing.T) microbatch.TransactionalSink { return s }
	})
}

func TestKafkaSinkConformance(t *testing.T) {
	b := kafkatest.Shared(t)
	sinktest.Run(t, func(t *testing.T) sinktest.Opener {
		cfg := sinks.KafkaConfig{Topic: b.NewTopic(t, 2, nil), ControlTopic: b.NewTopic(t, 1, nil), Job: "conformance", TransactionalID: "conformance-" + t.Name()}
		return func(t *testing.T) microbatch.TransactionalSink { return open(t, b, cfg) }
	})
}

func open(t *testing.T, b *kafkatest.Broker, cfg sinks.KafkaConfig) *sinks.Kafka {
	t.Helper()
	k, err := sinks.NewKafka(cfg, []kgo.Opt{kgo.SeedBrokers(b.Addr())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

func msgs(n int, topic string) []microbatch.Message {
	var out []microbatch.Message
	for i := range n {
		out = append(out, microbatch.Message{Topic: topic, Key: []byte{byte('a' + i)}, Value: []byte("v")})
	}
	return out
}

// readAll reads every committed record of topic.
func readAll(t *testing.T, b *kafkatest.Broker, topic string, want int) []*kgo.Record {
	t.Helper()
	rd, err := b.Client(kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeTopics(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < want && ctx.Err() == nil {
		recs = append(recs, rd.PollFetches(ctx).Records()...)
	}
	if len(recs) != want {
		t.Fatalf("read %d records of %s, want %d", len(recs), topic, want)
	}
	return recs
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

// TestTwoJobsShareTopics runs two jobs that write to one output topic and one
// side topic, and even one control topic: every record names its job, and
// each job's Committed sees only its own batches.
func TestTwoJobsShareTopics(t *testing.T) {
	b := kafkatest.Shared(t)
	ctx := context.Background()
	out, side, control := b.NewTopic(t, 3, nil), b.NewTopic(t, 1, nil), b.NewTopic(t, 1, nil)
	jobs := map[string]*sinks.Kafka{}
	for _, job := range []string{"alpha", "beta"} {
		jobs[job] = open(t, b, sinks.KafkaConfig{Topic: out, Topics: []string{side}, ControlTopic: control, Job: job, TransactionalID: "shared-" + job + out})
	}
	// alpha writes batches 1-3, beta 1-5, interleaved: beta's are last at
	// every tail.
	for id := uint64(1); id <= 5; id++ {
		if id <= 3 {
			if err := jobs["alpha"].WriteBatch(ctx, sinktest.Batch(id), msgs(2, side)); err != nil {
				t.Fatal(err)
			}
		}
		if err := jobs["beta"].WriteBatch(ctx, sinktest.Batch(id), msgs(1, "")); err != nil {
			t.Fatal(err)
		}
	}
	for job, want := range map[string]uint64{"alpha": 3, "beta": 5} {
		got, err := jobs[job].Committed(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(got)) != want || got[len(got)-1].ID != want {
			t.Errorf("%s: Committed(0) = %d batches, want batches 1-%d", job, len(got), want)
		}
	}
	for _, r := range readAll(t, b, side, 6) {
		if h := headers(r); h[sinks.HeaderJob] != "alpha" {
			t.Errorf("side record of job %q, want alpha", h[sinks.HeaderJob])
		}
	}
	for _, r := range readAll(t, b, out, 5) {
		h := headers(r)
		id, _ := strconv.ParseUint(h[sinks.HeaderBatchID], 10, 64)
		want := sinktest.Batch(id)
		if h[sinks.HeaderJob] != "beta" || h[sinks.HeaderBatchTime] != want.Time.Format(time.RFC3339Nano) || h[sinks.HeaderOffsets] != want.OffsetsHeader() {
			t.Errorf("output record headers %v, want job beta and batch %d's provenance", h, id)
		}
	}
}

// TestGroupRecordsCarryTheirBatch writes a group of batches in one
// transaction: every record carries its own batch's id, time and provenance.
func TestGroupRecordsCarryTheirBatch(t *testing.T) {
	b := kafkatest.Shared(t)
	ctx := context.Background()
	out, control := b.NewTopic(t, 2, nil), b.NewTopic(t, 1, nil)
	k := open(t, b, sinks.KafkaConfig{Topic: out, ControlTopic: control, Job: "group", TransactionalID: "group-" + out})
	counts := map[uint64]int{3: 2, 4: 0, 5: 3}
	var infos []microbatch.BatchInfo
	var batches [][]microbatch.Message
	for id := uint64(3); id <= 5; id++ {
		infos = append(infos, sinktest.Batch(id))
		batches = append(batches, msgs(counts[id], ""))
	}
	if err := k.WriteBatches(ctx, infos, batches); err != nil {
		t.Fatal(err)
	}
	got := map[uint64]int{}
	for _, r := range readAll(t, b, out, 5) {
		h := headers(r)
		id, _ := strconv.ParseUint(h[sinks.HeaderBatchID], 10, 64)
		want := sinktest.Batch(id)
		if h[sinks.HeaderBatchTime] != want.Time.Format(time.RFC3339Nano) || h[sinks.HeaderOffsets] != want.OffsetsHeader() {
			t.Errorf("record of batch %d: headers %v, want its own time and provenance", id, h)
		}
		got[id]++
	}
	if got[3] != 2 || got[5] != 3 || len(got) != 2 {
		t.Errorf("records by batch %v, want %v", got, counts)
	}
}

// TestFencedSinkStops checks that a newer producer of the same transactional
// id fences the older one, which then fails with ErrFenced.
func TestFencedSinkStops(t *testing.T) {
	b := kafkatest.Shared(t)
	ctx := context.Background()
	cfg := sinks.KafkaConfig{Topic: b.NewTopic(t, 1, nil), ControlTopic: b.NewTopic(t, 1, nil), Job: "fenced", TransactionalID: "fenced-" + t.Name()}
	k := open(t, b, cfg)
	for id := uint64(1); id <= 2; id++ {
		if err := k.WriteBatch(ctx, sinktest.Batch(id), msgs(1, "")); err != nil {
			t.Fatal(err)
		}
	}
	newer := open(t, b, cfg)
	if got, err := newer.Committed(ctx, 1); err != nil || len(got) != 1 || got[0].ID != 2 {
		t.Fatalf("newer sink: Committed(1) = %v, %v; want batch 2", got, err)
	}
	err := k.WriteBatch(ctx, sinktest.Batch(3), msgs(1, ""))
	if !errors.Is(err, microbatch.ErrFenced) || !strings.Contains(err.Error(), "batch 3") {
		t.Fatalf("fenced sink wrote: %v, want ErrFenced naming batch 3", err)
	}
	if err := newer.WriteBatch(ctx, sinktest.Batch(3), msgs(1, "")); err != nil {
		t.Fatal(err)
	}
	if err := k.WriteBatch(ctx, sinktest.Batch(4), msgs(1, "unlisted")); !errors.Is(err, microbatch.ErrPermanent) {
		t.Errorf("a message for an unlisted topic: %v, want a permanent error", err)
	}
}

// TestOversizedRecords writes records larger than a topic takes
// (max.message.bytes, learnt from the broker): one that may be truncated
// goes out cut to fit, with its original size in a header, and the batch
// commits; one that may not fails the batch permanently.
func TestOversizedRecords(t *testing.T) {
	b := kafkatest.Shared(t)
	ctx := context.Background()
	limit := "4000"
	side := b.NewTopic(t, 1, map[string]*string{"max.message.bytes": &limit})
	cfg := sinks.KafkaConfig{Topic: b.NewTopic(t, 1, nil), Topics: []string{side}, ControlTopic: b.NewTopic(t, 1, nil),
		Job: "oversized", TransactionalID: "oversized-" + t.Name()}
	k := open(t, b, cfg)
	big := []byte(strings.Repeat("x", 10_000))
	dead := microbatch.Message{Topic: side, Value: big, MayTruncate: true, Headers: []microbatch.Header{{Key: "dstream-reason", Value: []byte("too long")}}}
	if err := k.WriteBatch(ctx, sinktest.Batch(1), []microbatch.Message{dead}); err != nil {
		t.Fatalf("a truncatable record: %v", err)
	}
	recs := readAll(t, b, side, 1)
	h := headers(recs[0])
	if n := len(recs[0].Value); n >= 4000 || n < 3500 || strings.Trim(string(recs[0].Value), "x") != "" {
		t.Errorf("truncated value of %d bytes, want the line's first bytes, fitting 4000", n)
	}
	if h[sinks.HeaderTruncatedFrom] != "10000" || h["dstream-reason"] != "too long" {
		t.Errorf("headers %v, want %s=10000 and the record's own", h, sinks.HeaderTruncatedFrom)
	}
	err := k.WriteBatch(ctx, sinktest.Batch(2), []microbatch.Message{{Topic: side, Value: big}})
	if !errors.Is(err, microbatch.ErrPermanent) || !strings.Contains(err.Error(), "max.message.bytes") {
		t.Errorf("an untruncatable oversized record: %v, want a permanent error naming max.message.bytes", err)
	}
}
