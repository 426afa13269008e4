package ingest_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// exchangeRecord is what an upstream task of job writes into an exchange
// partition for a batch, as a sharded job's sinks do.
func exchangeRecord(topic string, p int32, job, task string, batch uint64, at time.Time, value string) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: p, Value: []byte(value), Headers: []kgo.RecordHeader{
		{Key: "dstream-job", Value: []byte(job)},
		{Key: "dstream-task", Value: []byte(task)},
		{Key: "dstream-batch-id", Value: []byte(strconv.FormatUint(batch, 10))},
		{Key: "dstream-batch-time", Value: []byte(at.Format(time.RFC3339Nano))},
		{Key: "dstream-offsets", Value: []byte("0:0-" + strconv.FormatUint(batch, 10))},
	}}
}

// TestExchangeCutsByBatch writes batches of two upstream tasks into an
// exchange partition, interleaved, with an aborted transaction and another
// job's records among them. A cut of batch n waits for both tasks' records
// of n, skipping the rest; its plan reads the same records again from a
// fresh source (a replay); a reset point's empty range reads nothing; a
// plan of other ranges is refused.
func TestExchangeCutsByBatch(t *testing.T) {
	e := newEnv(t, 2, nil)
	const job, p = "j", int32(1)
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Second)
	a, b := e.txn("task-a"), e.txn("task-b")
	write := func(cl *kgo.Client, commit kgo.TransactionEndTry, recs ...*kgo.Record) {
		begin(t, cl)
		produceRecords(t, cl, recs...)
		end(t, cl, commit)
	}
	write(a, kgo.TryCommit, exchangeRecord(e.topic, p, job, "a", 1, t0, "a1"))
	write(a, kgo.TryAbort, exchangeRecord(e.topic, p, job, "a", 2, t1, "a2-aborted"))
	e.produce(p, "not the job's")
	write(b, kgo.TryCommit, exchangeRecord(e.topic, p, "other", "b", 1, t0, "other-b1"), exchangeRecord(e.topic, p, job, "b", 1, t0, "b1"))
	write(b, kgo.TryCommit, exchangeRecord(e.topic, p, job, "b", 2, t1, "b2"))

	base := []kgo.Opt{kgo.SeedBrokers(e.broker.Addr())}
	x, err := ingest.NewExchange(base, ingest.ExchangeConfig{Topic: e.topic, Partition: p, Job: job, Upstream: 2, InputTopic: "in"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	values := func(x *ingest.Exchange, plan []microbatch.Range) []string {
		t.Helper()
		var out []string
		if err := x.Read(ctx, plan, func(r microbatch.Record) { out = append(out, string(r.Value)) }); err != nil {
			t.Fatal(err)
		}
		return out
	}

	plan1, at, err := x.CutBatch(ctx, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := values(x, plan1); !at.Equal(t0) || len(got) != 2 || got[0] != "a1" || got[1] != "b1" {
		t.Fatalf("batch 1 at %v: %v, want a1 and b1 at %v", at, got, t0)
	}

	// Batch 2 is complete only once task a writes it again, committed.
	type cutResult struct {
		plan []microbatch.Range
		at   time.Time
		err  error
	}
	done := make(chan cutResult, 1)
	go func() {
		plan, at, err := x.CutBatch(ctx, 2, plan1)
		done <- cutResult{plan, at, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("batch 2 cut before task a wrote it: %v, %v", r.plan, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	write(a, kgo.TryCommit, exchangeRecord(e.topic, p, job, "a", 2, t1, "a2"))
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := values(x, r.plan); !r.at.Equal(t1) || len(got) != 2 || got[0] != "b2" || got[1] != "a2" {
		t.Fatalf("batch 2 at %v: %v, want b2 and a2 at %v", r.at, got, t1)
	}

	fresh, err := ingest.NewExchange(base, ingest.ExchangeConfig{Topic: e.topic, Partition: p, Job: job, Upstream: 2, InputTopic: "in"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if got := values(fresh, plan1); len(got) != 2 || got[0] != "a1" || got[1] != "b1" {
		t.Errorf("batch 1 replayed: %v, want a1 and b1", got)
	}
	end := r.plan[len(r.plan)-1].Until
	if got := values(fresh, []microbatch.Range{{Topic: e.topic, Partition: p, From: end, Until: end}}); len(got) != 0 {
		t.Errorf("a reset point's empty range read %v", got)
	}
	err = fresh.Read(ctx, []microbatch.Range{{Topic: e.topic, Partition: 0, From: 0, Until: 1}}, func(microbatch.Record) {})
	if !errors.Is(err, microbatch.ErrPermanent) {
		t.Errorf("a plan of another partition: %v, want a permanent error", err)
	}
}
