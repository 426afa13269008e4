package chaos_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dstream-io/dstream/microbatch"
)

// oneBySource cuts one record per batch from an endless partition.
type oneBySource struct{}

func (oneBySource) Topic() string { return "in" }

func (oneBySource) Cut(_ context.Context, after []microbatch.Range) ([]microbatch.Range, error) {
	from := int64(0)
	if len(after) > 0 {
		from = after[0].Until
	}
	return []microbatch.Range{{Topic: "in", From: from, Until: from + 1}}, nil
}

func (oneBySource) Read(_ context.Context, ranges []microbatch.Range, emit func(microbatch.Record)) error {
	for _, r := range ranges {
		for o := r.From; o < r.Until; o++ {
			emit(microbatch.Record{Offset: o, Value: []byte("x")})
		}
	}
	return nil
}

// takenOverSink is a transactional sink whose write of one batch fails
// after another instance took the job over meanwhile; it counts the calls
// made after that, each of which would set up a new producer and so fence
// the new holder's.
type takenOverSink struct {
	batch    uint64
	takeOver func()
	mu       sync.Mutex
	over     bool
	after    int
}

func (s *takenOverSink) WriteBatch(ctx context.Context, b microbatch.BatchInfo, msgs []microbatch.Message) error {
	return s.WriteBatches(ctx, []microbatch.BatchInfo{b}, [][]microbatch.Message{msgs})
}

func (s *takenOverSink) WriteBatches(_ context.Context, batches []microbatch.BatchInfo, _ [][]microbatch.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over {
		s.after++
		return nil
	}
	if slices.ContainsFunc(batches, func(b microbatch.BatchInfo) bool { return b.ID == s.batch }) {
		s.over = true
		s.takeOver()
		return errors.New("end transaction: i/o timeout") // ambiguous, retriable
	}
	return nil
}

func (s *takenOverSink) Committed(context.Context, uint64) ([]microbatch.BatchInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over {
		s.after++
	}
	return nil, nil
}

// TestFencedInstanceDoesNotRetryTheSink: an instance whose sink write fails
// after another instance took the job over (it was paused, say) must stop
// with ErrFenced rather than retry the write, since a retry asks a
// transactional sink for its last batch with a new producer, which fences
// the producer of the instance that took over.
func TestFencedInstanceDoesNotRetryTheSink(t *testing.T) {
	ms := microbatch.NewMemoryStore()
	sink := &takenOverSink{batch: 3, takeOver: func() {
		if _, err := ms.Handle().Acquire(context.Background()); err != nil {
			t.Error(err)
		}
	}}
	job := microbatch.NewJob(time.Second, microbatch.WithClock(microbatch.NewVirtualClock(time.Unix(0, 0))),
		microbatch.WithBatchLimit(10), microbatch.WithStdout(io.Discard))
	job.Checkpoint(ms.Handle())
	microbatch.Write(job.Records(oneBySource{}), sink, func(_ microbatch.BatchInfo, r microbatch.Record) microbatch.Message {
		return microbatch.Message{Value: r.Value}
	})
	err := job.Run(context.Background())
	if !errors.Is(err, microbatch.ErrFenced) {
		t.Errorf("job: %v, want ErrFenced", err)
	}
	if sink.after > 0 {
		t.Errorf("the fenced instance called its sink %d times after the takeover", sink.after)
	}
}
