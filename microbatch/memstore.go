package microbatch

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// MemoryStore is a Store in process memory: for tests and the demo. It
// implements the same protocol as the Redis store, fencing included, but
// nothing survives the process.
type MemoryStore struct {
	def *MemoryHandle // the handle the store's own Store methods use
	mu  struct {
		sync.Mutex
		epoch     uint64
		held      bool
		committed uint64
		plans     map[uint64]Plan
		planned   uint64
		prepared  uint64
		pending   []Change
		// state holds each operator's committed keys; a value is
		// rewritten in place when its key changes again.
		state map[string]map[string]*[]byte
	}
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{}
	s.mu.plans = map[uint64]Plan{}
	s.mu.state = map[string]map[string]*[]byte{}
	s.def = s.Handle()
	return s
}

// MemoryHandle is one holder of a MemoryStore: each Acquire through a
// different handle fences the previous holder, as two processes sharing a
// Redis store would.
type MemoryHandle struct {
	s     *MemoryStore
	epoch uint64
}

// Handle returns a new holder of the store.
func (s *MemoryStore) Handle() *MemoryHandle { return &MemoryHandle{s: s} }

func (s *MemoryStore) handle() *MemoryHandle { return s.def }

// Acquire implements Store through the store's default handle.
func (s *MemoryStore) Acquire(ctx context.Context) (Meta, error) { return s.handle().Acquire(ctx) }

// Renew implements Store.
func (s *MemoryStore) Renew(ctx context.Context) error { return s.handle().Renew(ctx) }

// Release implements Store.
func (s *MemoryStore) Release(ctx context.Context) error { return s.handle().Release(ctx) }

// RecordPlan implements Store.
func (s *MemoryStore) RecordPlan(ctx context.Context, p Plan) error {
	return s.handle().RecordPlan(ctx, p)
}

// Plans implements Store.
func (s *MemoryStore) Plans(ctx context.Context, from, to uint64) ([]Plan, error) {
	return s.handle().Plans(ctx, from, to)
}

// LoadState implements Store.
func (s *MemoryStore) LoadState(ctx context.Context, op string, fn func(key, value []byte) error) error {
	return s.handle().LoadState(ctx, op, fn)
}

// Prepare implements Store.
func (s *MemoryStore) Prepare(ctx context.Context, batch uint64, changes []Change) error {
	return s.handle().Prepare(ctx, batch, changes)
}

// Commit implements Store.
func (s *MemoryStore) Commit(ctx context.Context, batch, keepFrom uint64) error {
	return s.handle().Commit(ctx, batch, keepFrom)
}

// Discard implements Store.
func (s *MemoryStore) Discard(ctx context.Context, batch uint64) error {
	return s.handle().Discard(ctx, batch)
}

// Acquire takes the job over at once, fencing any earlier holder. (A
// MemoryStore has no lease: there is no other process to wait for.)
func (h *MemoryHandle) Acquire(context.Context) (Meta, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.epoch++
	h.epoch = s.mu.epoch
	s.mu.held = true
	return Meta{Committed: s.mu.committed, Planned: s.mu.planned, Prepared: s.mu.prepared, Epoch: h.epoch}, nil
}

// lock locks the store if h still holds it.
func (h *MemoryHandle) lock() error {
	h.s.mu.Lock()
	if h.epoch == 0 || h.epoch != h.s.mu.epoch || !h.s.mu.held {
		h.s.mu.Unlock()
		return ErrFenced
	}
	return nil
}

// Renew implements Store.
func (h *MemoryHandle) Renew(context.Context) error {
	if err := h.lock(); err != nil {
		return err
	}
	h.s.mu.Unlock()
	return nil
}

// Release implements Store.
func (h *MemoryHandle) Release(context.Context) error {
	if err := h.lock(); err != nil {
		return nil
	}
	defer h.s.mu.Unlock()
	h.s.mu.held = false
	return nil
}

// RecordPlan implements Store.
func (h *MemoryHandle) RecordPlan(_ context.Context, p Plan) error {
	if err := h.lock(); err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	if old, ok := s.mu.plans[p.ID]; ok && p.ID <= s.mu.planned {
		if !samePlan(old, p) {
			return fmt.Errorf("%w: plan %d is recorded with other ranges", ErrConflict, p.ID)
		}
		return nil
	}
	if p.ID != s.mu.planned+1 || p.ID != s.mu.committed+1 {
		return fmt.Errorf("%w: plan %d after planned %d, committed %d", ErrConflict, p.ID, s.mu.planned, s.mu.committed)
	}
	s.mu.plans[p.ID] = clonePlan(p)
	s.mu.planned = p.ID
	return nil
}

// Plans implements Store.
func (h *MemoryHandle) Plans(_ context.Context, from, to uint64) ([]Plan, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Plan
	for _, id := range slices.Sorted(maps.Keys(s.mu.plans)) {
		if id >= from && id <= to {
			out = append(out, clonePlan(s.mu.plans[id]))
		}
	}
	return out, nil
}

// LoadState implements Store.
func (h *MemoryHandle) LoadState(_ context.Context, op string, fn func(key, value []byte) error) error {
	s := h.s
	s.mu.Lock()
	keys := slices.Sorted(maps.Keys(s.mu.state[op]))
	values := make([][]byte, len(keys))
	for i, k := range keys {
		values[i] = slices.Clone(*s.mu.state[op][k])
	}
	s.mu.Unlock()
	for i, k := range keys {
		if err := fn([]byte(k), values[i]); err != nil {
			return err
		}
	}
	return nil
}

// Prepare implements Store.
func (h *MemoryHandle) Prepare(_ context.Context, batch uint64, changes []Change) error {
	if err := h.lock(); err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	if batch != s.mu.committed+1 || batch != s.mu.planned {
		return fmt.Errorf("%w: prepare %d with committed %d, planned %d", ErrConflict, batch, s.mu.committed, s.mu.planned)
	}
	s.mu.prepared = batch
	s.mu.pending = slices.Clone(changes)
	return nil
}

// Commit implements Store.
func (h *MemoryHandle) Commit(_ context.Context, batch, keepFrom uint64) error {
	if err := h.lock(); err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	if s.mu.committed == batch && s.mu.prepared == 0 {
		return nil // a retry of a commit that went through
	}
	if batch != s.mu.committed+1 || s.mu.prepared != batch {
		return fmt.Errorf("%w: commit %d with committed %d, prepared %d", ErrConflict, batch, s.mu.committed, s.mu.prepared)
	}
	for _, c := range s.mu.pending {
		m := s.mu.state[c.Op]
		if m == nil {
			m = map[string]*[]byte{}
			s.mu.state[c.Op] = m
		}
		switch v, ok := m[string(c.Key)]; {
		case c.Delete:
			delete(m, string(c.Key))
		case ok:
			*v = append((*v)[:0], c.Value...)
		default:
			v := slices.Clone(c.Value)
			m[string(c.Key)] = &v
		}
	}
	s.mu.committed, s.mu.prepared, s.mu.pending = batch, 0, nil
	for id := range s.mu.plans {
		if id < keepFrom {
			delete(s.mu.plans, id)
		}
	}
	return nil
}

// Discard implements Store.
func (h *MemoryHandle) Discard(_ context.Context, batch uint64) error {
	if err := h.lock(); err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	if s.mu.prepared == batch {
		s.mu.prepared, s.mu.pending = 0, nil
	}
	return nil
}

func clonePlan(p Plan) Plan {
	p.Ranges = slices.Clone(p.Ranges)
	return p
}

func samePlan(a, b Plan) bool {
	return a.ID == b.ID && a.Time.Equal(b.Time) && slices.Equal(a.Ranges, b.Ranges)
}
