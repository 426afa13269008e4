package microbatch

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// stateful is an operator whose keyed state the engine checkpoints.
type stateful interface {
	node
	stateOp() string
	// changes appends the encoded changes since the last commit.
	changes(dst []Change) []Change
	// committed forgets the changes after they were committed.
	committed()
	// restore loads one committed key; finishRestore orders what was loaded.
	restore(key, value []byte) error
	finishRestore()
	// clearState drops all state before a recovery.
	clearState()
	stats() StateStats
}

// table is the keyed state of one operator. Entries keep the order in which
// their keys first got state; a sequence number stored with every value
// restores that order after a restart, so outputs do not depend on whether
// the job crashed.
//
// State can hold millions of keys, so an entry is kept small: the key, the
// value, and one word for the sequence number and two flags. The batch time
// a key last received values is kept only by operators with timeouts.
type table[K comparable, S any] struct {
	op      string
	keys    Codec[K]
	vals    Codec[S]
	equal   func(a, b S) bool
	index   index[K]
	keyAt   keyAt[K]
	entries []entry[K, S]
	// touched holds, by entry, the batch time (Unix ns) the key last
	// received values; nil unless timed.
	touched []int64
	timed   bool
	dead    int
	nextSeq uint64
	dirty   []int32
	// encoded is the size of the last batch's encoded changes: the next
	// batch's buffer starts at that capacity.
	encoded int
	// keyBytes counts the bytes of string and byte-slice keys, for
	// StateStats.
	keyBytes int64

	// mu is held by the job while the operator computes a batch or its
	// state is restored or compacted, and by StateView's lookups; batch is
	// the batch the state reflects.
	mu    sync.RWMutex
	batch uint64
}

type entry[K comparable, S any] struct {
	key  K
	val  S
	meta uint64 // the sequence number, with liveFlag and dirtyFlag
}

const (
	liveFlag  = 1 << 63
	dirtyFlag = 1 << 62
	seqMask   = dirtyFlag - 1
)

func (e *entry[K, S]) live() bool  { return e.meta&liveFlag != 0 }
func (e *entry[K, S]) dirty() bool { return e.meta&dirtyFlag != 0 }
func (e *entry[K, S]) seq() uint64 { return e.meta & seqMask }

func newTable[K comparable, S any](op string) *table[K, S] {
	t := &table[K, S]{op: op, keys: DefaultCodec[K](), vals: DefaultCodec[S](), index: newIndex[K]()}
	t.keyAt = func(pos int32) K { return t.entries[pos].key }
	if reflect.TypeFor[S]().Comparable() {
		t.equal = func(a, b S) bool { return any(a) == any(b) }
	} else {
		t.equal = func(S, S) bool { return false }
	}
	return t
}

// find returns the position of k's entry.
func (t *table[K, S]) find(k K) (int32, bool) { return t.index.find(k, t.keyAt) }

func (t *table[K, S]) get(k K) (S, bool) {
	if i, ok := t.find(k); ok {
		return t.entries[i].val, true
	}
	var zero S
	return zero, false
}

// update sets k's state to f of its current state (exists is false for a
// key without state), with one lookup.
func (t *table[K, S]) update(k K, f func(v S, exists bool) S) {
	if i, ok := t.find(k); ok {
		t.set(i, f(t.entries[i].val, true), 0)
		return
	}
	var zero S
	t.insert(k, f(zero, false), 0)
}

// updateExisting sets k's state to f of its current state if k has state.
func (t *table[K, S]) updateExisting(k K, f func(v S) S) {
	if i, ok := t.find(k); ok {
		t.set(i, f(t.entries[i].val), 0)
	}
}

func (t *table[K, S]) markDirty(i int32) {
	if e := &t.entries[i]; !e.dirty() {
		e.meta |= dirtyFlag
		t.dirty = append(t.dirty, i)
	}
}

// touchedAt returns the batch time entry i last received values (0 when
// the table does not keep times).
func (t *table[K, S]) touchedAt(i int32) int64 {
	if !t.timed {
		return 0
	}
	return t.touched[i]
}

// put sets k's state; touched ≠ 0 records the batch time of new values in a
// timed table.
func (t *table[K, S]) put(k K, v S, touched int64) {
	if i, ok := t.find(k); ok {
		t.set(i, v, touched)
		return
	}
	t.insert(k, v, touched)
}

// set sets the state of entry i.
func (t *table[K, S]) set(i int32, v S, touched int64) {
	e := &t.entries[i]
	changed := !t.equal(e.val, v)
	e.val = v
	if t.timed && touched != 0 && touched != t.touched[i] {
		t.touched[i] = touched
		changed = true
	}
	if changed {
		t.markDirty(i)
	}
}

// insert adds k, which has no state. A string key is copied first: keys
// usually share the memory of the record they were read from (Lines,
// Records), and state outlives records, so keeping that view would keep the
// key's whole fetched record batch alive for as long as the key has state.
func (t *table[K, S]) insert(k K, v S, touched int64) {
	if p, ok := any(&k).(*string); ok {
		*p = strings.Clone(*p)
	}
	t.keyBytes += keySize(k)
	i := int32(len(t.entries))
	t.entries = append(t.entries, entry[K, S]{key: k, val: v, meta: t.nextSeq | liveFlag})
	t.index.add(k, i, t.keyAt)
	if t.timed {
		t.touched = append(t.touched, touched)
	}
	t.nextSeq++
	t.markDirty(i)
}

func (t *table[K, S]) remove(k K) {
	i, ok := t.find(k)
	if !ok {
		return
	}
	t.index.remove(k, t.keyAt)
	t.keyBytes -= keySize(k)
	t.entries[i].meta &^= liveFlag
	var zero S
	t.entries[i].val = zero
	t.dead++
	t.markDirty(i)
}

func (t *table[K, S]) len() int { return t.index.len() }

// keySize is the memory a key holds beyond its entry.
func keySize[K any](k K) int64 {
	switch k := any(k).(type) {
	case string:
		return int64(len(k))
	case []byte:
		return int64(cap(k))
	}
	return 0
}

// each calls f for every live key in state order.
func (t *table[K, S]) each(f func(k K, v S, touched int64)) {
	for i := range t.entries {
		if e := &t.entries[i]; e.live() {
			f(e.key, e.val, t.touchedAt(int32(i)))
		}
	}
}

func (t *table[K, S]) stateOp() string { return t.op }

func (t *table[K, S]) changes(dst []Change) []Change {
	if len(t.dirty) == 0 {
		return dst
	}
	// All keys and values are encoded into one buffer, fresh for every
	// batch (the Store may keep them), rather than two allocations per key.
	dst = slices.Grow(dst, len(t.dirty))
	buf := make([]byte, 0, t.encoded)
	ends := make([]int, 0, 2*len(t.dirty))
	for _, i := range t.dirty {
		e := &t.entries[i]
		buf = t.keys.Append(buf, e.key)
		ends = append(ends, len(buf))
		if e.live() {
			buf = binary.AppendUvarint(buf, e.seq())
			buf = binary.AppendVarint(buf, t.touchedAt(i))
			buf = t.vals.Append(buf, e.val)
		}
		ends = append(ends, len(buf))
	}
	t.encoded = len(buf)
	from := 0
	for n, i := range t.dirty {
		keyEnd, end := ends[2*n], ends[2*n+1]
		c := Change{Op: t.op, Key: buf[from:keyEnd:keyEnd]}
		if t.entries[i].live() {
			c.Value = buf[keyEnd:end:end]
		} else {
			c.Delete = true
		}
		dst = append(dst, c)
		from = end
	}
	return dst
}

func (t *table[K, S]) committed() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, i := range t.dirty {
		t.entries[i].meta &^= dirtyFlag
	}
	t.dirty = t.dirty[:0]
	if t.dead > 1024 && t.dead > len(t.entries)/2 {
		t.compact()
	}
}

func (t *table[K, S]) compact() {
	live := t.entries[:0]
	for i, e := range t.entries {
		if e.live() {
			if t.timed {
				t.touched[len(live)] = t.touched[i]
			}
			live = append(live, e)
		}
	}
	clear(t.entries[len(live):])
	t.entries = live
	t.reindex()
	if t.timed {
		t.touched = t.touched[:len(live)]
	}
	t.dead = 0
}

func (t *table[K, S]) restore(key, value []byte) error {
	k, err := t.keys.Decode(key)
	if err != nil {
		return fmt.Errorf("state %s: decode key: %w", t.op, err)
	}
	seq, n := binary.Uvarint(value)
	if n <= 0 {
		return fmt.Errorf("state %s: decode sequence of key %v", t.op, k)
	}
	touched, m := binary.Varint(value[n:])
	if m <= 0 {
		return fmt.Errorf("state %s: decode time of key %v", t.op, k)
	}
	v, err := t.vals.Decode(value[n+m:])
	if err != nil {
		return fmt.Errorf("state %s: decode value of key %v: %w", t.op, k, err)
	}
	if seq > seqMask {
		return fmt.Errorf("state %s: sequence %d of key %v out of range", t.op, seq, k)
	}
	t.entries = append(t.entries, entry[K, S]{key: k, val: v, meta: seq | liveFlag})
	t.keyBytes += keySize(k)
	if t.timed {
		t.touched = append(t.touched, touched)
	}
	return nil
}

func (t *table[K, S]) finishRestore() {
	order := make([]int32, len(t.entries))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(t.entries[a].seq(), t.entries[b].seq()) })
	entries := make([]entry[K, S], len(t.entries))
	var touched []int64
	if t.timed {
		touched = make([]int64, len(t.entries))
	}
	for i, from := range order {
		e := t.entries[from]
		entries[i] = e
		if t.timed {
			touched[i] = t.touched[from]
		}
		t.nextSeq = max(t.nextSeq, e.seq()+1)
	}
	t.entries, t.touched = entries, touched
	t.reindex()
}

// reindex rebuilds the index after entries moved.
func (t *table[K, S]) reindex() {
	t.index.reset(true)
	for i := range t.entries {
		if t.entries[i].live() {
			t.index.add(t.entries[i].key, int32(i), t.keyAt)
		}
	}
}

func (t *table[K, S]) clearState() {
	t.index.reset(false)
	t.entries, t.touched, t.dirty, t.dead, t.nextSeq, t.keyBytes = nil, nil, nil, 0, 0, 0
}

// statefulStream is a Stream whose operator owns a table.
type statefulStream[K comparable, S, T any] struct {
	*Stream[T]
	*table[K, S]
}

func newStateful[K comparable, S, T any](j *Job, op string, slide uint64, parent node) *statefulStream[K, S, T] {
	name := fmt.Sprintf("%s-%d", op, len(j.stateful))
	s := &statefulStream[K, S, T]{table: newTable[K, S](name)}
	s.Stream = &Stream[T]{nodeBase: nodeBase{job: j, id: len(j.nodes), op: op, slide: slide, parents: []node{parent},
		state: s.table, guard: s.table}}
	j.nodes = append(j.nodes, s.Stream)
	j.stateful = append(j.stateful, s)
	return s
}

// UpdateFunc computes a key's new state from the values the key received in
// a batch (none on batches without values) and its state (exists is false
// for a key seen for the first time). Returning keep=false removes the key.
type UpdateFunc[V, S any] func(values []V, state S, exists bool) (newState S, keep bool)

// UpdateStateByKey carries a state per key across the whole stream. On every
// batch f runs for every key that has state, even without new values, and
// for every key that received values; the stream holds the (key, state) of
// all keys kept. Its state is checkpointed through the job's Store.
func UpdateStateByKey[K comparable, V, S any](s *Stream[Pair[K, V]], f UpdateFunc[V, S]) *Stream[Pair[K, S]] {
	st := newStateful[K, S, Pair[K, S]](s.job, "updateStateByKey", s.slide, s)
	st.owns = true
	st.view = st.table
	// The values of a batch are grouped by key without a slice per key: a
	// fold counts each key's values, which then go, in batch order, to the
	// key's run of one array.
	count := newFolder[K](func(V) int32 { return 1 }, func(c int32, _ V) int32 { return c + 1 })
	var groupOf map[K]int32
	st.compute = func(r *batchRun) ([]Pair[K, S], bool) {
		if !s.has || r.rebuild {
			return nil, false
		}
		now := r.plan.Time.UnixNano()
		keys := count.fold(r.job, s.out, nil)
		if groupOf == nil {
			groupOf = make(map[K]int32, len(keys))
		}
		defer clear(groupOf)
		// Group g's values are values[start[g]:start[g+1]]; fresh per
		// batch, since f may keep them in the state.
		start := make([]int32, len(keys)+1)
		for g, kc := range keys {
			groupOf[kc.Key] = int32(g)
			start[g+1] = start[g] + kc.Value
		}
		values := make([]V, len(s.out))
		fill := slices.Clone(start[:len(keys)])
		for _, kv := range s.out {
			g := groupOf[kv.Key]
			values[fill[g]] = kv.Value
			fill[g]++
		}
		// The entries with values this batch, by entry index (group+1), so
		// that the walk over all keys looks up only keys with values.
		groupAt := make([]int32, len(st.entries))
		fresh := fill[:0] // reused: the groups of keys without state
		for g, kc := range keys {
			if i, ok := st.find(kc.Key); ok {
				groupAt[i] = int32(g) + 1
			} else {
				fresh = append(fresh, int32(g))
			}
		}
		var drop []K
		for i := range st.entries {
			e := &st.entries[i]
			if !e.live() {
				continue
			}
			var vs []V
			touched := int64(0)
			if g := groupAt[i] - 1; g >= 0 {
				vs, touched = values[start[g]:start[g+1]:start[g+1]], now
			}
			ns, keep := f(vs, e.val, true)
			if !keep {
				drop = append(drop, e.key)
				continue
			}
			st.set(int32(i), ns, touched) // i is e's index: no lookup by key
		}
		for _, k := range drop {
			st.remove(k)
		}
		for _, g := range fresh {
			var zero S
			if ns, keep := f(values[start[g]:start[g+1]:start[g+1]], zero, false); keep {
				st.put(keys[g].Key, ns, now)
			}
		}
		if st.readers == 0 {
			return nil, true // only looked up (by joins): no list of every key
		}
		out := st.buffer(st.len())
		st.each(func(k K, v S, _ int64) { out = append(out, Pair[K, S]{k, v}) })
		return out, true
	}
	return st.Stream
}

// State is a key's state inside a MapWithState function.
type State[S any] struct {
	value     S
	exists    bool
	timingOut bool
	updated   bool
	removed   bool
}

// Exists reports whether the key has state.
func (s *State[S]) Exists() bool { return s.exists }

// Get returns the key's state (the zero value when none exists).
func (s *State[S]) Get() S { return s.value }

// Update sets the key's state. A timing-out key cannot be updated.
func (s *State[S]) Update(v S) {
	if s.timingOut {
		return
	}
	s.value, s.exists, s.updated, s.removed = v, true, true, false
}

// Remove drops the key's state.
func (s *State[S]) Remove() {
	var zero S
	s.value, s.exists, s.removed, s.updated = zero, false, true, false
}

// IsTimingOut reports that the key is called a last time because it received
// no values for the timeout; its state is removed afterwards.
func (s *State[S]) IsTimingOut() bool { return s.timingOut }

// MapWithState calls f for every element of every batch with its key's
// state, and emits what f returns. With timeout > 0 a key that received no
// values for timeout is called once more with an absent value and
// IsTimingOut true, then removed. Its state is checkpointed.
func MapWithState[K comparable, V, S, U any](s *Stream[Pair[K, V]], timeout time.Duration, f func(key K, value Optional[V], state *State[S]) U) *Stream[U] {
	st := newStateful[K, S, U](s.job, "mapWithState", s.slide, s)
	st.timed = true // for timeouts, which may be set only on a later run
	st.compute = func(r *batchRun) ([]U, bool) {
		if !s.has || r.rebuild {
			return nil, false
		}
		now := r.plan.Time.UnixNano()
		out := make([]U, 0, len(s.out))
		var state State[S]
		for _, kv := range s.out {
			v, ok := st.get(kv.Key)
			state = State[S]{value: v, exists: ok}
			out = append(out, f(kv.Key, Some(kv.Value), &state))
			switch {
			case state.removed:
				st.remove(kv.Key)
			case state.updated:
				st.put(kv.Key, state.value, now)
			case ok:
				st.put(kv.Key, v, now)
			}
		}
		if timeout > 0 {
			var expired []K
			st.each(func(k K, v S, touched int64) {
				if now-touched >= int64(timeout) {
					state = State[S]{value: v, exists: true, timingOut: true}
					out = append(out, f(k, Optional[V]{}, &state))
					expired = append(expired, k)
				}
			})
			for _, k := range expired {
				st.remove(k)
			}
		}
		return out, true
	}
	return st.Stream
}
