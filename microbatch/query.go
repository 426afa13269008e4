package microbatch

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"unsafe"
)

// StateView reads the keyed state of a stateful stream (UpdateStateByKey,
// or ReduceByKeyAndWindow with an inverse) from other goroutines while the
// job runs: Kafka Streams' interactive queries. A lookup sees the state as
// of the last batch the operator computed: that batch commits moments
// later, or, after a crash, is computed again to the same state. A lookup
// waits while the operator computes a batch; it never blocks the job for
// longer than the lookup itself.
type StateView[K comparable, S any] struct {
	t *table[K, S]
}

// ViewState returns a view of the state behind s, which must be the output
// of UpdateStateByKey or ReduceByKeyAndWindow with an inverse.
func ViewState[K comparable, S any](s *Stream[Pair[K, S]]) (*StateView[K, S], error) {
	t, ok := s.state.(*table[K, S])
	if !ok {
		return nil, fmt.Errorf("microbatch: %s keeps no keyed state of this type to view", s.op)
	}
	return &StateView[K, S]{t: t}, nil
}

// Get returns key's state and whether it has one, with the id of the batch
// the state reflects (0 before the first batch).
func (v *StateView[K, S]) Get(key K) (state S, ok bool, batch uint64) {
	v.t.mu.RLock()
	defer v.t.mu.RUnlock()
	if w := v.t.recomputed; w != nil {
		state, ok = w.get(key)
	} else {
		state, ok = v.t.get(key)
	}
	return state, ok, v.t.batch
}

// Len returns how many keys have state.
func (v *StateView[K, S]) Len() int {
	v.t.mu.RLock()
	defer v.t.mu.RUnlock()
	if w := v.t.recomputed; w != nil {
		return w.keys
	}
	return v.t.len()
}

// StateStats describes the keyed state of one stateful operator.
type StateStats struct {
	// Operator names the operator, as its state is named in the Store.
	Operator string
	// Keys is how many keys have state.
	Keys int
	// Bytes estimates the memory the state holds: its entries, its index,
	// and the bytes of string and byte-slice keys.
	Bytes int64
	// Batch is the batch the state reflects.
	Batch uint64
}

// StateStats returns the size of every stateful operator's state, in the
// order the operators were declared. It may be called from any goroutine.
func (j *Job) StateStats() []StateStats {
	ops := j.stateful
	if g := j.compiled(); g != nil {
		ops = g.stateful // a task's, of its stage
	}
	out := make([]StateStats, 0, len(ops))
	for _, st := range ops {
		out = append(out, st.stats())
	}
	return out
}

func (t *table[K, S]) stats() StateStats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if w := t.recomputed; w != nil {
		return StateStats{Operator: t.op, Keys: w.keys, Bytes: w.bytes(), Batch: t.batch}
	}
	var e entry[K, S]
	bytes := int64(cap(t.entries))*int64(unsafe.Sizeof(e)) + int64(cap(t.touched))*8 + t.index.bytes() + t.keyBytes
	return StateStats{Operator: t.op, Keys: t.len(), Bytes: bytes, Batch: t.batch}
}

// guard is the lock a stateful node holds while it computes a batch, so
// that lookups from other goroutines see a batch's state whole.
type guard interface {
	lockFor(batch uint64)
	unlock()
}

// lockFor locks the table for a batch's changes; batch 0 leaves the
// table's batch as it is.
func (t *table[K, S]) lockFor(batch uint64) {
	t.mu.Lock()
	if batch != 0 {
		t.batch = batch
	}
}

func (t *table[K, S]) unlock() { t.mu.Unlock() }

// ReadState decodes operator op's state in store as of the committed batch,
// the way a restart loads it, in the order the keys got state: the typed
// reader for audits, tests and tools. K and S must be the operator's key
// and state types (or types whose default codecs read the same bytes, such
// as string for a key stored as text). A store that reports its progress
// (state.Redis, MemoryStore) names the codecs the state was written with,
// which are used when K and S have them (state an older release wrote).
func ReadState[K comparable, S any](ctx context.Context, store Store, op string, committed uint64) ([]Pair[K, S], error) {
	return readState[K, S](ctx, store, op, committed, segmentShift)
}

func readState[K comparable, S any](ctx context.Context, store Store, op string, committed uint64, shift uint8) ([]Pair[K, S], error) {
	t := newTable[K, S](op)
	t.shift = shift
	if p, ok := store.(interface {
		Progress(context.Context) (Meta, error)
	}); ok {
		meta, err := p.Progress(ctx)
		if err != nil {
			return nil, err
		}
		var fp Fingerprint
		if json.Unmarshal(meta.Graph, &fp) == nil {
			for _, st := range fp.State {
				if st.Name == op && t.readsCodecs(st.KeyCodec, st.ValueCodec) {
					if err := t.useStoredCodecs(st.KeyCodec, st.ValueCodec); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	l := &stateLoader{committed: committed, segments: map[uint32][]byte{}, deltas: map[uint64][]byte{}}
	if err := store.LoadState(ctx, op, l.add); err != nil {
		return nil, err
	}
	if err := t.restoreParts(l, runtime.GOMAXPROCS(0)); err != nil {
		return nil, err
	}
	out := make([]Pair[K, S], 0, t.len())
	t.each(func(k K, v S, _ int64) { out = append(out, Pair[K, S]{k, v}) })
	return out, nil
}
