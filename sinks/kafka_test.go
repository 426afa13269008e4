package sinks_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/sinks"
)

func TestMain(m *testing.M) { os.Exit(kafkatest.Main(m, kafkatest.Options{})) }

func batch(id uint64) microbatch.BatchInfo {
	return microbatch.BatchInfo{Plan: microbatch.Plan{ID: id, Time: time.Date(2026, 1, 1, 0, 0, int(id), 0, time.UTC),
		Ranges: []microbatch.Range{{Topic: "logs", Partition: 0, From: int64(id * 10), Until: int64(id*10 + 10)}}}}
}

func msgs(n int, topic string) []microbatch.Message {
	var out []microbatch.Message
	for i := range n {
		out = append(out, microbatch.Message{Topic: topic, Key: []byte{byte('a' + i)}, Value: []byte("v")})
	}
	return out
}

// TestKafkaSink checks the transactional sink on the real broker: batches
// commit whole with provenance headers, LastBatch finds the last one (also
// when it wrote only to a listed side topic), and a sink whose producer was
// fenced by a newer one of the same transactional id fails with ErrFenced.
func TestKafkaSink(t *testing.T) {
	b := kafkatest.Shared(t)
	ctx := context.Background()
	out, side := b.NewTopic(t, 3, nil), b.NewTopic(t, 1, nil)
	base := []kgo.Opt{kgo.SeedBrokers(b.Addr())}
	cfg := sinks.KafkaConfig{Topic: out, Topics: []string{side}, TransactionalID: "sink-test-" + out}
	open := func() *sinks.Kafka {
		k, err := sinks.NewKafka(cfg, base)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		return k
	}
	k := open()
	if last, err := k.LastBatch(ctx); err != nil || last != 0 {
		t.Fatalf("empty topics: LastBatch = %d, %v; want 0", last, err)
	}
	for _, test := range []struct {
		id   uint64
		msgs []microbatch.Message
		last uint64
	}{
		{1, msgs(5, ""), 1},
		{2, nil, 1},           // an empty batch writes nothing
		{3, msgs(2, side), 3}, // only the side topic
		{4, msgs(7, ""), 4},
	} {
		if err := k.WriteBatch(ctx, batch(test.id), test.msgs); err != nil {
			t.Fatalf("batch %d: %v", test.id, err)
		}
		if last, err := k.LastBatch(ctx); err != nil || last != test.last {
			t.Fatalf("after batch %d: LastBatch = %d, %v; want %d", test.id, last, err, test.last)
		}
	}
	if err := k.WriteBatch(ctx, batch(5), msgs(1, "unlisted")); err == nil {
		t.Error("a message for an unlisted topic was accepted")
	}

	rd, err := b.Client(kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeTopics(out))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < 12 && rctx.Err() == nil {
		recs = append(recs, rd.PollFetches(rctx).Records()...)
	}
	if len(recs) != 12 {
		t.Fatalf("read %d records of batches 1 and 4, want 12", len(recs))
	}
	for _, r := range recs {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		id := h[sinks.HeaderBatchID]
		if id != "1" && id != "4" {
			t.Fatalf("record of batch %q", id)
		}
		want := batch(map[string]uint64{"1": 1, "4": 4}[id])
		if h[sinks.HeaderBatchTime] != want.Time.Format(time.RFC3339Nano) || h[sinks.HeaderOffsets] != want.OffsetsHeader() {
			t.Errorf("batch %s headers %v", id, h)
		}
	}

	// A newer producer of the same transactional id fences this one.
	newer := open()
	if last, err := newer.LastBatch(ctx); err != nil || last != 4 {
		t.Fatalf("newer sink: LastBatch = %d, %v; want 4", last, err)
	}
	err = k.WriteBatch(ctx, batch(5), msgs(1, ""))
	if !errors.Is(err, microbatch.ErrFenced) {
		t.Fatalf("fenced sink wrote: %v, want ErrFenced", err)
	}
	if !strings.Contains(err.Error(), "batch 5") {
		t.Errorf("error %q does not name the batch", err)
	}
	if err := newer.WriteBatch(ctx, batch(5), msgs(1, "")); err != nil {
		t.Fatal(err)
	}
	if last, err := newer.LastBatch(ctx); err != nil || last != 5 {
		t.Fatalf("LastBatch = %d, %v; want 5", last, err)
	}
}
