package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/internal/wiring"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

// crashAfterSink fails the checkpoint commit of one batch, as a process
// killed right after its output transaction committed would.
type crashAfterSink struct {
	microbatch.Store
	batch uint64
}

var errCrash = fmt.Errorf("injected crash: %w", microbatch.ErrPermanent)

func (s crashAfterSink) Commit(ctx context.Context, c microbatch.Checkpoint) error {
	// The commit of the batch, or of the group of batches it commits with.
	if c.Batch >= s.batch {
		return errCrash
	}
	return s.Store.Commit(ctx, c)
}

// TestDeadLettersOnlyBatch crashes the job between the output transaction
// and the checkpoint commit of a batch whose window ranks nothing (every
// line malformed), so the transaction holds dead letters only. Recovery
// must still find the batch in the sink and not write its dead letters
// again.
func TestDeadLettersOnlyBatch(t *testing.T) {
	broker, rds := kafkatest.Shared(t), redistest.Shared(t)
	n := seq.Add(1)
	spec := chaos.Spec{
		Input: fmt.Sprintf("dl-logs-%d", n), Output: fmt.Sprintf("dl-top-%d", n), DeadLetter: fmt.Sprintf("dl-dlq-%d", n),
		Interval: time.Second, Window: 2 * time.Second, Slide: time.Second, TopN: 3,
	}
	job := fmt.Sprintf("dl-job-%d", n)
	ctx := context.Background()
	for _, topic := range []string{spec.Input, spec.Output, spec.DeadLetter} {
		if err := broker.CreateTopic(ctx, topic, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := broker.Client(kgo.DefaultProduceTopic(spec.Input))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 30 {
		recs = append(recs, kgo.StringRecord(fmt.Sprintf("garbage %d", i)))
	}
	err = cl.ProduceSync(ctx, recs...).FirstErr()
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}

	run := func(store microbatch.Store, batches uint64) error {
		src, err := broker.Client(kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		in, err := ingest.New(src, ingest.Config{Topic: spec.Input, BatchInterval: time.Second, MaxRatePerPartition: 10})
		if err != nil {
			t.Fatal(err)
		}
		sink, err := wiring.NewSink(ctx, wiring.SinkConfig{Job: job, Output: spec.Output, DeadLetters: spec.DeadLetter},
			[]kgo.Opt{kgo.SeedBrokers(broker.Addr())}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		j := microbatch.NewJob(time.Second, microbatch.WithClock(microbatch.NewVirtualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))),
			microbatch.WithBatchLimit(batches), microbatch.WithStdout(io.Discard))
		j.Checkpoint(store)
		topips.Build(j, in, sink, topips.Config{Window: spec.Window, Slide: spec.Slide, TopN: spec.TopN,
			InputTopic: spec.Input, DeadLetterTopic: spec.DeadLetter})
		return j.Run(ctx)
	}
	open := func() microbatch.Store {
		s, err := state.NewRedis(rds.Client(), state.Config{Job: job, LeaseTTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := run(crashAfterSink{open(), 2}, 10); !errors.Is(err, errCrash) {
		t.Fatalf("first run: %v, want the injected crash", err)
	}
	if err := run(open(), 3); err != nil {
		t.Fatal(err)
	}

	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	opts := []kgo.Opt{kgo.SeedBrokers(broker.Addr())}
	in, err := chaos.ReadInput(rctx, opts, spec.Input)
	if err != nil {
		t.Fatal(err)
	}
	out, err := chaos.ReadOutput(rctx, opts, spec)
	if err != nil {
		t.Fatal(err)
	}
	rep := chaos.Check(in, out, spec)
	// No batch has results, so the report counts only dead letters.
	if rep.Duplicated != 0 || rep.Wrong != 0 || rep.DeadLetters != 30 {
		t.Fatalf("%d distinct dead letters of 30, duplicated %d, wrong %d: %v", rep.DeadLetters, rep.Duplicated, rep.Wrong, rep.Problems)
	}
}
