package microbatch

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// MemorySink is a TransactionalSink in process memory: for tests and
// examples. It holds each batch whole, with its marker, and refuses a batch
// written twice or out of order, which is how tests see that recovery never
// does so.
type MemorySink struct {
	mu struct {
		sync.Mutex
		batches []BatchInfo
		msgs    map[uint64][]Message
	}
}

// NewMemorySink returns an empty MemorySink.
func NewMemorySink() *MemorySink {
	s := &MemorySink{}
	s.mu.msgs = map[uint64][]Message{}
	return s
}

// WriteBatch implements Sink.
func (s *MemorySink) WriteBatch(ctx context.Context, b BatchInfo, msgs []Message) error {
	return s.WriteBatches(ctx, []BatchInfo{b}, [][]Message{msgs})
}

// WriteBatches implements TransactionalSink: all the batches, or none.
func (s *MemorySink) WriteBatches(_ context.Context, batches []BatchInfo, msgs [][]Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := uint64(0)
	if n := len(s.mu.batches); n > 0 {
		last = s.mu.batches[n-1].ID
	}
	for _, b := range batches {
		if _, ok := s.mu.msgs[b.ID]; ok {
			return fmt.Errorf("memory sink: batch %d written twice: %w", b.ID, ErrPermanent)
		}
		if b.ID <= last {
			return fmt.Errorf("memory sink: batch %d after batch %d: %w", b.ID, last, ErrPermanent)
		}
		last = b.ID
	}
	for i, b := range batches {
		b.Ranges = slices.Clone(b.Ranges)
		s.mu.batches = append(s.mu.batches, b)
		s.mu.msgs[b.ID] = slices.Clone(msgs[i])
	}
	return nil
}

// Committed implements TransactionalSink.
func (s *MemorySink) Committed(_ context.Context, after uint64) ([]BatchInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []BatchInfo
	for _, b := range s.mu.batches {
		if b.ID > after {
			b.Ranges = slices.Clone(b.Ranges)
			out = append(out, b)
		}
	}
	return out, nil
}

// Batches returns the batches the sink holds, in order.
func (s *MemorySink) Batches() []BatchInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.batches)
}

// Messages returns the messages of batch id.
func (s *MemorySink) Messages(id uint64) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.msgs[id])
}

// Forget drops the batches after id, as if their transactions had never
// committed: for tests of what recovery does with a sink behind the store.
func (s *MemorySink) Forget(after uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.mu.batches) > 0 && s.mu.batches[len(s.mu.batches)-1].ID > after {
		delete(s.mu.msgs, s.mu.batches[len(s.mu.batches)-1].ID)
		s.mu.batches = s.mu.batches[:len(s.mu.batches)-1]
	}
}
