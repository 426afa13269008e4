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
		graph     []byte
		base      uint64
		// state holds each operator's segments and deltas; deltas of a
		// prepared batch are there too, and loads skip them.
		state map[string]*memoryState
		// pendingOps are the operators with deltas of the prepared batch.
		pendingOps []string
	}
}

type memoryState struct {
	segments map[uint32][]byte
	deltas   map[uint64][]byte
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{}
	s.mu.plans = map[uint64]Plan{}
	s.mu.state = map[string]*memoryState{}
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

// Progress reads the job's progress without taking the job, as
// state.Redis's does.
func (s *MemoryStore) Progress(context.Context) (Meta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Meta{Committed: s.mu.committed, Planned: s.mu.planned, Prepared: s.mu.prepared, Epoch: s.mu.epoch,
		Graph: slices.Clone(s.mu.graph), Base: s.mu.base}, nil
}

// Renew implements Store.
func (s *MemoryStore) Renew(ctx context.Context) error { return s.handle().Renew(ctx) }

// Release implements Store.
func (s *MemoryStore) Release(ctx context.Context) error { return s.handle().Release(ctx) }

// RecordPlan implements Store.
func (s *MemoryStore) RecordPlan(ctx context.Context, plans ...Plan) error {
	return s.handle().RecordPlan(ctx, plans...)
}

// Plans implements Store.
func (s *MemoryStore) Plans(ctx context.Context, from, to uint64) ([]Plan, error) {
	return s.handle().Plans(ctx, from, to)
}

// LoadState implements Store.
func (s *MemoryStore) LoadState(ctx context.Context, op string, fn func(StatePart) error) error {
	return s.handle().LoadState(ctx, op, fn)
}

// Prepare implements Store.
func (s *MemoryStore) Prepare(ctx context.Context, batch uint64, deltas []Delta) error {
	return s.handle().Prepare(ctx, batch, deltas)
}

// Commit implements Store.
func (s *MemoryStore) Commit(ctx context.Context, c Checkpoint) error {
	return s.handle().Commit(ctx, c)
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
	return Meta{Committed: s.mu.committed, Planned: s.mu.planned, Prepared: s.mu.prepared, Epoch: h.epoch,
		Graph: slices.Clone(s.mu.graph), Base: s.mu.base}, nil
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

// RecordPlan implements Store: all of plans, or none.
func (h *MemoryHandle) RecordPlan(_ context.Context, plans ...Plan) error {
	if err := h.lock(); err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	planned := s.mu.planned
	for _, p := range plans {
		if old, ok := s.mu.plans[p.ID]; ok && p.ID <= planned {
			if !samePlan(old, p) {
				return fmt.Errorf("%w: plan %d is recorded with other ranges", ErrConflict, p.ID)
			}
			continue
		}
		if p.ID != planned+1 || p.ID <= s.mu.committed {
			return fmt.Errorf("%w: plan %d after planned %d, committed %d", ErrConflict, p.ID, planned, s.mu.committed)
		}
		planned = p.ID
	}
	for _, p := range plans {
		if p.ID > s.mu.planned {
			s.mu.plans[p.ID] = clonePlan(p)
		}
	}
	s.mu.planned = planned
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
func (h *MemoryHandle) LoadState(_ context.Context, op string, fn func(StatePart) error) error {
	s := h.s
	s.mu.Lock()
	var parts []StatePart
	if st := s.mu.state[op]; st != nil {
		for _, i := range slices.Sorted(maps.Keys(st.segments)) {
			parts = append(parts, StatePart{Kind: SegmentPart, Index: i, Data: slices.Clone(st.segments[i])})
		}
		for _, b := range slices.Sorted(maps.Keys(st.deltas)) {
			parts = append(parts, StatePart{Kind: DeltaPart, Batch: b, Data: slices.Clone(st.deltas[b])})
		}
	}
	s.mu.Unlock()
	for _, p := range parts {
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *MemoryStore) opState(op string) *memoryState {
	st := s.mu.state[op]
	if st == nil {
		st = &memoryState{segments: map[uint32][]byte{}, deltas: map[uint64][]byte{}}
		s.mu.state[op] = st
	}
	return st
}

// Prepare implements Store.
func (h *MemoryHandle) Prepare(_ context.Context, batch uint64, deltas []Delta) error {
	if err := h.lock(); err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	if batch <= s.mu.committed || batch > s.mu.planned {
		return fmt.Errorf("%w: prepare %d with committed %d, planned %d", ErrConflict, batch, s.mu.committed, s.mu.planned)
	}
	s.dropPending()
	for _, d := range deltas {
		s.opState(d.Op).deltas[batch] = slices.Clone(d.Data)
		s.mu.pendingOps = append(s.mu.pendingOps, d.Op)
	}
	s.mu.prepared = batch
	return nil
}

// dropPending drops the deltas of the prepared batch.
func (s *MemoryStore) dropPending() {
	for _, op := range s.mu.pendingOps {
		delete(s.opState(op).deltas, s.mu.prepared)
	}
	s.mu.pendingOps = nil
}

// Commit implements Store.
func (h *MemoryHandle) Commit(_ context.Context, c Checkpoint) error {
	if err := h.lock(); err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	if s.mu.committed == c.Batch && s.mu.prepared == 0 {
		return nil // a retry of a commit that went through
	}
	if c.Batch <= s.mu.committed || s.mu.prepared != c.Batch {
		return fmt.Errorf("%w: commit %d with committed %d, prepared %d", ErrConflict, c.Batch, s.mu.committed, s.mu.prepared)
	}
	for _, op := range c.Replace {
		delete(s.mu.state, op)
	}
	for _, seg := range c.Segments {
		s.opState(seg.Op).segments[seg.Index] = slices.Clone(seg.Data)
	}
	for _, d := range c.Drop {
		delete(s.opState(d.Op).deltas, d.Batch)
	}
	if c.Graph != nil {
		s.mu.graph = slices.Clone(c.Graph)
	}
	s.mu.committed, s.mu.prepared, s.mu.pendingOps = c.Batch, 0, nil
	for id := range s.mu.plans {
		if id < c.KeepFrom {
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
		s.dropPending()
		s.mu.prepared = 0
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
