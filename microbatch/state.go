package microbatch

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// stateful is an operator whose keyed state the engine checkpoints.
type stateful interface {
	node
	stateOp() string
	// delta encodes the changes of batch since the last commit, if any.
	delta(batch uint64) (Delta, bool)
	// changed counts the keys changed since the last commit.
	changed() int
	// checkpoint adds to c the segments and dropped deltas that committing
	// batch stores; delta ran first.
	checkpoint(batch uint64, c *Checkpoint)
	// committed forgets the changes after they were committed.
	committed()
	// load restores the state from the parts l collected.
	load(l *stateLoader, parallelism int) error
	// clearState drops all state before a recovery.
	clearState()
	stats() StateStats
	// startOver starts the operator's state afresh after recovery, where
	// its stored state is not used (a new operator, a changed window):
	// from its initial state, or rebuilt from its window's batches.
	startOver(committed uint64)
	// setName names the operator's state (compile).
	setName(name string)
	// checkCodecs reports a key or state type its codec cannot store whole.
	checkCodecs() error
	// readsCodecs reports whether the operator can read state stored with
	// the codecs codecName calls key and value; useStoredCodecs makes it
	// read (load) its stored state with them and rewrite it.
	readsCodecs(key, value string) bool
	useStoredCodecs(key, value string) error
	fingerprint() StateFingerprint
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
	op    string
	keys  Codec[K]
	vals  Codec[S]
	equal func(a, b S) bool
	// wordState: S is 8 plain bytes, which update compares as one word
	// instead of calling equal.
	wordState bool
	index     index[K]
	keyAt     keyAt[K]
	entries   []entry[K, S]
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
	// format is the encoding of the parts the table writes: partFormat, or
	// partFormatV1 for releases that read only that.
	format byte
	// changedEntries is the entries the last delta encoded, and
	// segmentEntry the bytes an entry took in the last segment encoded:
	// what rewriting segments is paid for (checkpoint).
	changedEntries, segmentEntry int
	// keyBytes counts the bytes of string and byte-slice keys, for
	// StateStats.
	keyBytes int64

	// storedWith, when not nil, are the codecs the Store's parts of the
	// table were written with, other than keys and vals: a release that
	// chose other codecs wrote them (useStoredCodecs).
	storedWith *codecs[K, S]

	// stored records what the Store holds of the table; shift sizes its
	// segments (segmentShift; smaller in tests, to get many segments).
	stored storedState
	shift  uint8
	// maxDeltas bounds the deltas the store keeps (maxDeltas; smaller in
	// tests).
	maxDeltas int

	// recomputed is set for a window reduced from its batches at every
	// slide (recomputedWindow), which keeps no entries: what views see.
	recomputed *recomputedView[K, S]

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
	t := &table[K, S]{op: op, keys: owned(DefaultCodec[K]()), vals: owned(DefaultCodec[S]()), index: newIndex[K](), shift: segmentShift, maxDeltas: maxDeltas, format: partFormat}
	t.keyAt = func(pos int32) K { return t.entries[pos].key }
	switch typ := reflect.TypeFor[S](); {
	case plainBytes(typ):
		// Unchanged states are not written again. Comparing the bytes of
		// numbers rather than any(a) == any(b) spares boxing both (an
		// allocation each, for most numbers) for every key of every batch:
		// an updateStateByKey calls its function for all its keys. Equal
		// bytes mean equal values; the rare values equal with other bytes
		// (-0 and +0) are written again: harmless.
		size := typ.Size()
		switch size {
		case 8:
			t.equal = func(a, b S) bool { return *(*uint64)(unsafe.Pointer(&a)) == *(*uint64)(unsafe.Pointer(&b)) }
			t.wordState = true // update compares them inline
		case 4:
			t.equal = func(a, b S) bool { return *(*uint32)(unsafe.Pointer(&a)) == *(*uint32)(unsafe.Pointer(&b)) }
		default:
			t.equal = func(a, b S) bool {
				return string(unsafe.Slice((*byte)(unsafe.Pointer(&a)), size)) == string(unsafe.Slice((*byte)(unsafe.Pointer(&b)), size))
			}
		}
	case typ.Comparable():
		t.equal = func(a, b S) bool { return any(a) == any(b) }
	default:
		t.equal = func(S, S) bool { return false }
	}
	return t
}

// plainBytes reports whether typ's values are numbers or booleans, or
// arrays or structs of them without padding: values whose bytes are all
// there is to them (a string's bytes are a pointer, padding is anything).
func plainBytes(typ reflect.Type) bool {
	switch typ.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return plainBytes(typ.Elem())
	case reflect.Struct:
		var size uintptr
		for i := range typ.NumField() {
			f := typ.Field(i)
			if !plainBytes(f.Type) {
				return false
			}
			size += f.Type.Size()
		}
		return size == typ.Size()
	}
	return false
}

// find returns the position of k's entry.
func (t *table[K, S]) find(k K) (int32, bool) { return t.index.find(k, t.keyAt) }

// findEach calls f(i, pos) for i in 0 … n-1, pos the position of key(i)'s
// entry or -1 for a key without state. The keys are looked up lookupGroup
// at a time (findGroup), which overlaps their cache misses: with millions
// of keys a lookup waits on memory far longer than f takes. The keys must
// be distinct, since f may insert key(i): a later lookup of the same key
// in its group would not see it.
func (t *table[K, S]) findEach(n int, key func(i int) K, f func(i int, pos int32)) {
	t.updateEach(n, key, func(i int, pos int32) bool {
		f(i, pos)
		return false
	}, func(i int) (none S, _ bool) {
		f(i, -1)
		return none, false
	})
}

// updateEach looks the keys up as findEach does, and calls found(i, pos)
// for each key with state, absent(i) (if not nil) for each without: found
// reports whether to remove the key's entry, absent whether to insert the
// key, with which state. Both are done right after their group's lookups,
// while the group's slots are still in the cache; new keys get entries in
// the order of i, without a batch time (a timed table's inserts go through
// put).
func (t *table[K, S]) updateEach(n int, key func(i int) K, found func(i int, pos int32) bool, absent func(i int) (S, bool)) {
	var (
		keys    [lookupGroup]K
		pos     [lookupGroup]int32
		drop    [lookupGroup]int32
		newKeys [lookupGroup]K
		newPos  [lookupGroup]int32
	)
	for lo := 0; lo < n; lo += lookupGroup {
		m := min(lookupGroup, n-lo)
		for i := range m {
			keys[i] = key(lo + i)
		}
		t.index.findGroup(keys[:m], t.keyAt, pos[:m])
		d, a := 0, 0
		for i := range m {
			switch {
			case pos[i] >= 0:
				if found(lo+i, pos[i]) {
					drop[d] = pos[i]
					d++
				}
			case absent != nil:
				if v, ok := absent(lo + i); ok {
					newKeys[a], newPos[a] = keys[i], t.newEntry(keys[i], v, 0)
					a++
				}
			}
		}
		t.removeAll(drop[:d])
		if a > 0 {
			t.index.addGroup(newKeys[:a], newPos[:a])
		}
	}
}

func (t *table[K, S]) get(k K) (S, bool) {
	if i, ok := t.find(k); ok {
		return t.entries[i].val, true
	}
	var zero S
	return zero, false
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
	if t.update(i, v, touched) {
		t.markDirty(i)
	}
}

// update sets the state of entry i and reports whether it changed, without
// marking it dirty: it touches entry i only, so goroutines may update
// distinct entries at once.
func (t *table[K, S]) update(i int32, v S, touched int64) bool {
	e := &t.entries[i]
	var changed bool
	if t.wordState {
		// Counts and totals: one comparison, not a call (10M keys walked
		// a batch), and no write when equal: the walk then leaves the
		// cache lines of idle keys clean.
		changed = *(*uint64)(unsafe.Pointer(&e.val)) != *(*uint64)(unsafe.Pointer(&v))
		if changed {
			e.val = v
		}
	} else {
		changed = !t.equal(e.val, v)
		e.val = v
	}
	if t.timed && touched != 0 && touched != t.touched[i] {
		t.touched[i] = touched
		changed = true
	}
	return changed
}

// insert adds k, which has no state.
func (t *table[K, S]) insert(k K, v S, touched int64) {
	t.index.add(k, t.newEntry(k, v, touched))
}

// newEntry appends the entry of k, which has no state, and returns its
// position; the caller adds it to the index. A string key is copied first:
// keys usually share the memory of the record they were read from (Lines,
// Records), and state outlives records, so keeping that view would keep the
// key's whole fetched record batch alive for as long as the key has state.
func (t *table[K, S]) newEntry(k K, v S, touched int64) int32 {
	if invariants {
		if _, ok := t.find(k); ok {
			panic(fmt.Sprintf("microbatch: %s: key %v inserted while it has state", t.op, k))
		}
	}
	if p, ok := any(&k).(*string); ok {
		*p = strings.Clone(*p)
	}
	t.keyBytes += keySize(k)
	i := int32(len(t.entries))
	if len(t.entries) == cap(t.entries) {
		// Doubled, where append grows large slices by a quarter: a table
		// growing to millions of keys would copy them all about 20 times.
		// The memory past the length is not touched until used.
		t.entries = slices.Grow(t.entries, max(len(t.entries), 1024))
	}
	t.entries = append(t.entries, entry[K, S]{key: k, val: v, meta: t.nextSeq | liveFlag})
	if t.timed {
		t.touched = append(t.touched, touched)
	}
	t.nextSeq++
	t.markDirty(i)
	return i
}

// insertAll inserts keys, which have no state, with their states vals,
// lookupGroup at a time (index.addGroup).
func (t *table[K, S]) insertAll(keys []K, vals []S, touched int64) {
	t.index.ensure(t.index.len() + len(keys))
	var pos [lookupGroup]int32
	for lo := 0; lo < len(keys); lo += lookupGroup {
		group := keys[lo:min(lo+lookupGroup, len(keys))]
		for i, k := range group {
			pos[i] = t.newEntry(k, vals[lo+i], touched)
		}
		t.index.addGroup(group, pos[:len(group)])
	}
}

func (t *table[K, S]) remove(k K) {
	if i, ok := t.find(k); ok {
		t.index.remove(k, i)
		t.dropEntry(i)
	}
}

// removeAll removes the live entries at positions, lookupGroup at a time
// (index.removeGroup).
func (t *table[K, S]) removeAll(positions []int32) {
	var keys [lookupGroup]K
	for lo := 0; lo < len(positions); lo += lookupGroup {
		group := positions[lo:min(lo+lookupGroup, len(positions))]
		for i, pos := range group {
			keys[i] = t.entries[pos].key
		}
		t.index.removeGroup(keys[:len(group)], group)
		for _, pos := range group {
			t.dropEntry(pos)
		}
	}
}

// dropEntry marks the entry at i, which the index no longer lists, removed.
func (t *table[K, S]) dropEntry(i int32) {
	k := t.entries[i].key
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

func (t *table[K, S]) changed() int { return len(t.dirty) }

func (t *table[K, S]) load(l *stateLoader, parallelism int) error {
	if err := t.restoreParts(l, parallelism); err != nil {
		return err
	}
	if t.storedWith != nil {
		// Read with the codecs that wrote it: rewritten whole in the
		// table's own by its next commit.
		t.stored.replace = true
	}
	return nil
}

func (t *table[K, S]) committed() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.checkpointed()
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
	t.index.fill(len(t.entries), t.keyAt)
	if t.timed {
		t.touched = t.touched[:len(live)]
	}
	t.dead = 0
}

func (t *table[K, S]) clearState() {
	t.index.reset(false)
	t.entries, t.touched, t.dirty, t.dead, t.nextSeq, t.keyBytes = nil, nil, nil, 0, 0, 0
	t.stored = storedState{}
	if t.recomputed != nil {
		t.recomputed.show(nil, 0)
	}
}

// statefulStream is a Stream whose operator owns a table.
type statefulStream[K comparable, S, T any] struct {
	*Stream[T]
	*table[K, S]
	// initial puts the operator's initial state (nil: none); recompute
	// rebuilds a windowed operator's state from its buffered batches as
	// of the committed batch.
	initial   func()
	recompute func(committed uint64)
}

func (s *statefulStream[K, S, T]) startOver(committed uint64) {
	s.clearState()
	switch {
	case s.recompute != nil:
		s.recompute(committed)
	case s.initial != nil:
		s.initial()
	}
	// What is stored of the operator (if anything) is replaced whole by
	// the next commit.
	for _, i := range s.dirty {
		s.entries[i].meta &^= dirtyFlag
	}
	s.dirty = s.dirty[:0]
	s.stored.replace = true
}

func (s *statefulStream[K, S, T]) fingerprint() StateFingerprint {
	fp := StateFingerprint{
		Name: s.table.op, Kind: s.Stream.op,
		Key: typeName(reflect.TypeFor[K]()), Value: typeName(reflect.TypeFor[S]()),
		KeyCodec: codecName(s.keys), ValueCodec: codecName(s.vals),
		InputSlide: s.parents[0].base().slide,
	}
	if s.windowLength > 0 {
		fp.Window, fp.Slide = s.windowLength, s.Stream.slide
	}
	if s.recomputed != nil {
		// Its own kind: it stores no state, so a release that would read
		// its (empty) stored state as the incremental window's refuses
		// instead; this one rebuilds either from the recorded plans.
		fp.Kind = recomputedWindowKind
	}
	return fp
}

func (t *table[K, S]) setName(name string) { t.op = name }

func (t *table[K, S]) checkCodecs() error {
	if _, ok := t.keys.(JSONCodec[K]); ok {
		if err := jsonRoundTrip(reflect.TypeFor[K]()); err != nil {
			return fmt.Errorf("key type: %w", err)
		}
	}
	if _, ok := t.vals.(JSONCodec[S]); ok {
		if err := jsonRoundTrip(reflect.TypeFor[S]()); err != nil {
			return fmt.Errorf("state type: %w", err)
		}
	}
	return nil
}

func newStateful[K comparable, S, T any](j *Job, op string, slide uint64, parent node) *statefulStream[K, S, T] {
	s := &statefulStream[K, S, T]{table: newTable[K, S](op)}
	s.table.format = byte(j.partFormat)
	s.Stream = &Stream[T]{nodeBase: nodeBase{job: j, id: len(j.nodes), op: op, slide: slide, parents: []node{parent},
		state: s.table, guard: s.table}}
	j.nodes = append(j.nodes, s.Stream)
	j.stateful = append(j.stateful, s)
	return s
}

// walked is what one chunk of updateStateByKey's walk over all its entries
// changed, and what its function dropped.
type walked struct {
	changed, drop []int32
}

// UpdateFunc computes a key's new state from the values the key received in
// a batch (none on batches without values) and its state (exists is false
// for a key seen for the first time). Returning keep=false removes the key.
// It is called for different keys concurrently (as Spark's tasks call it),
// so it must not change variables it shares without synchronising. A state
// may keep values; anything else must copy them, as their memory may be the
// next batch's.
type UpdateFunc[V, S any] func(values []V, state S, exists bool) (newState S, keep bool)

// KeyedUpdateFunc is UpdateFunc with the batch time and the key, Spark's
// (Time, K, Seq[V], Option[S]) => Option[S].
type KeyedUpdateFunc[K, V, S any] func(t time.Time, key K, values []V, state S, exists bool) (newState S, keep bool)

// StateOption configures the state of a stateful operator.
type StateOption[K comparable, S any] func(*stateOptions[K, S])

type stateOptions[K comparable, S any] struct {
	initial  []Pair[K, S]
	skipIdle bool
}

// InitialState gives a stateful operator state before its first batch, as
// Spark's initialRDD: the keys' state when the operator starts without a
// checkpoint of its own (a new job, or an operator added to a running
// one). A restart from the operator's checkpoint does not apply it again.
func InitialState[K comparable, S any](pairs []Pair[K, S]) StateOption[K, S] {
	return func(o *stateOptions[K, S]) { o.initial = pairs }
}

// SkipIdleKeys declares that an UpdateStateByKey function leaves a key
// without values as it is: f(nil, s, true) returns (s, true), as a running
// total or count does. The operator then calls f only for the keys with
// values in a batch, where Spark calls it for every key with state: with
// millions of keys and a fraction of them in each batch, the walk over all
// of them changes nothing for most (at 1M keys and 200k a batch, 8–9% of
// the reference job's CPU). A key is removed only by
// a call with values returning keep=false. Builds with the invariants tag
// still call f for every key and panic if it changes an idle key's state.
// Other stateful operators ignore it.
func SkipIdleKeys[K comparable, S any]() StateOption[K, S] {
	return func(o *stateOptions[K, S]) { o.skipIdle = true }
}

// applyOptions sets st's initial state from opts, and returns them.
func applyOptions[K comparable, S, T any](st *statefulStream[K, S, T], opts []StateOption[K, S]) stateOptions[K, S] {
	var o stateOptions[K, S]
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.initial) > 0 {
		pairs := o.initial
		st.initial = func() {
			for _, kv := range pairs {
				st.put(kv.Key, kv.Value, 0)
			}
		}
	}
	return o
}

// UpdateStateByKey carries a state per key across the whole stream. On every
// batch f runs for every key that has state, even without new values, and
// for every key that received values (with SkipIdleKeys, only the latter);
// the stream holds the (key, state) of all keys kept. Its state is
// checkpointed through the job's Store.
func UpdateStateByKey[K comparable, V, S any](s *Stream[Pair[K, V]], f UpdateFunc[V, S], opts ...StateOption[K, S]) *Stream[Pair[K, S]] {
	return updateStateByKey(s, func(_ time.Time, _ K, values []V, state S, exists bool) (S, bool) {
		return f(values, state, exists)
	}, f, opts)
}

// UpdateStateByKeyAndTime is UpdateStateByKey whose function also gets the
// batch time and the key.
func UpdateStateByKeyAndTime[K comparable, V, S any](s *Stream[Pair[K, V]], f KeyedUpdateFunc[K, V, S], opts ...StateOption[K, S]) *Stream[Pair[K, S]] {
	return updateStateByKey(s, f, nil, opts)
}

// updateStateByKey is UpdateStateByKeyAndTime; plain, when not nil, is the
// same function without the time and key, which the walk over every key
// calls instead of f, one indirect call fewer a key.
func updateStateByKey[K comparable, V, S any](s *Stream[Pair[K, V]], f KeyedUpdateFunc[K, V, S], plain UpdateFunc[V, S], opts []StateOption[K, S]) *Stream[Pair[K, S]] {
	st := newStateful[K, S, Pair[K, S]](s.job, "updateStateByKey", s.slide, s)
	// In an invariants build the walk runs anyway, to check the promise.
	declaredIdle := applyOptions(st, opts).skipIdle
	skipIdle := declaredIdle && !invariants
	// States that cannot be compared cannot be checked.
	checkIdle := declaredIdle && reflect.TypeFor[S]().Comparable()
	st.output = outReused
	st.view = st.table
	// The values of a batch are grouped by key without a slice per key: a
	// fold counts each key's values, which then go, in batch order, to the
	// key's run of one array.
	count := newFolder[K](func(V) int32 { return 1 }, func(c int32, _ V) int32 { return c + 1 })
	var (
		groupOf map[K]int32
		// groupAt holds, by entry, the group+1 of the entry's key's values
		// this batch (0: none), so that the walk over all keys looks up
		// only keys with values. The walk zeroes what it read: kept from
		// batch to batch, it is never cleared whole (40 MB at 10M keys).
		groupAt []int32
		// walks are the chunks' changes of the walk over all keys.
		walks []walked
		// A batch's grouping, reused; its values too if a state cannot
		// hold them (it has no pointers, nor have they).
		startBuf, fillBuf []int32
		valuesBuf         []V
		reuseValues       = plainBytes(reflect.TypeFor[S]()) && plainBytes(reflect.TypeFor[V]())
	)
	listAll := func() ([]Pair[K, S], bool) {
		if st.derived.readers == 0 {
			return nil, true // only looked up (by joins): no list of every key
		}
		out := st.buffer(st.len())
		st.each(func(k K, v S, _ int64) { out = append(out, Pair[K, S]{k, v}) })
		return out, true
	}
	st.compute = func(r *batchRun) ([]Pair[K, S], bool) {
		if !s.has || r.rebuild {
			return nil, false
		}
		t := r.plan.Time
		now := t.UnixNano()
		// Group g's values are values[start[g]:start[g+1]]. They are
		// fresh each batch if f could keep them in a state.
		var (
			start  []int32
			values []V
			keyOf  func(g int) K
		)
		newValues := func(n int) []V {
			if !reuseValues {
				return make([]V, n)
			}
			valuesBuf = resize(valuesBuf, n)
			return valuesBuf
		}
		if s.distinct {
			// One value a key (a reduced stream): group g is pair g.
			startBuf = resize(startBuf, len(s.out)+1)
			start, values = startBuf, newValues(len(s.out))
			start[0] = 0
			for g, kv := range s.out {
				start[g+1], values[g] = int32(g+1), kv.Value
			}
			keyOf = func(g int) K { return s.out[g].Key }
		} else {
			keys := count.fold(r.job, s.out, nil)
			if groupOf == nil {
				groupOf = make(map[K]int32, len(keys))
			}
			defer clear(groupOf)
			startBuf = resize(startBuf, len(keys)+1)
			start = startBuf
			start[0] = 0
			for g, kc := range keys {
				groupOf[kc.Key] = int32(g)
				start[g+1] = start[g] + kc.Value
			}
			values = newValues(len(s.out))
			fillBuf = append(fillBuf[:0], start[:len(keys)]...)
			fill := fillBuf
			for _, kv := range s.out {
				g := groupOf[kv.Key]
				values[fill[g]] = kv.Value
				fill[g]++
			}
			keyOf = func(g int) K { return keys[g].Key }
		}
		groups := len(start) - 1
		call := func(key K, vs []V, state S, exists bool) (S, bool) {
			if plain != nil {
				return plain(vs, state, exists)
			}
			return f(t, key, vs, state, exists)
		}
		// Keys without state are given theirs right after their group's
		// lookups (updateEach), while their index slots are in the cache:
		// a table filling with 200k new keys a batch inserted them in a
		// pass of their own, a cache miss each. They get entries past
		// the walk's, in the order of their groups.
		absent := func(g int) (S, bool) {
			var zero S
			return f(t, keyOf(g), values[start[g]:start[g+1]:start[g+1]], zero, false)
		}
		if skipIdle {
			// Only the keys with values: each is updated right after its
			// lookup. Changed entries are marked in the order of their
			// groups, which a restart folds alike.
			st.updateEach(groups, keyOf, func(g int, i int32) bool {
				ns, keep := call(keyOf(g), values[start[g]:start[g+1]:start[g+1]], st.entries[i].val, true)
				if !keep {
					return true
				}
				if st.update(i, ns, now) {
					st.markDirty(i)
				}
				return false
			}, absent)
			return listAll()
		}
		if len(groupAt) < len(st.entries) {
			groupAt = slices.Grow(groupAt, len(st.entries)-len(groupAt))[:len(st.entries)]
		}
		had := len(st.entries)
		st.updateEach(groups, keyOf, func(g int, i int32) bool {
			groupAt[i] = int32(g) + 1
			return false
		}, absent)
		// The walk calls f for every key that had state: with millions of
		// keys, in chunks on all cores (Spark's tasks call it concurrently
		// too). A chunk lists the entries it changed and those f dropped;
		// they are marked and removed after, chunk by chunk, so in the
		// order a sequential walk would (the checkpoint's bytes do not
		// depend on the parallelism).
		chunks := r.job.chunkCount(had)
		if len(walks) < chunks {
			walks = make([]walked, chunks)
		}
		r.job.parallelChunks(had, func(c, lo, hi int) {
			w := &walks[c]
			w.changed, w.drop = w.changed[:0], w.drop[:0]
			for i := lo; i < hi; i++ {
				e := &st.entries[i]
				if !e.live() {
					continue
				}
				var vs []V
				touched := int64(0)
				if g := groupAt[i] - 1; g >= 0 {
					vs, touched = values[start[g]:start[g+1]:start[g+1]], now
					groupAt[i] = 0
				}
				ns, keep := call(e.key, vs, e.val, true)
				if checkIdle && vs == nil && (!keep || !st.equal(ns, e.val)) {
					panic(fmt.Sprintf("microbatch: %s: SkipIdleKeys declared, but the update function changed the state of key %v, which had no values", st.op, e.key))
				}
				if !keep {
					w.drop = append(w.drop, int32(i))
					continue
				}
				if st.update(int32(i), ns, touched) { // i is e's index: no lookup by key
					w.changed = append(w.changed, int32(i))
				}
			}
		})
		for _, w := range walks[:chunks] {
			for _, i := range w.changed {
				st.markDirty(i)
			}
		}
		for _, w := range walks[:chunks] {
			st.removeAll(w.drop)
		}
		return listAll()
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
func MapWithState[K comparable, V, S, U any](s *Stream[Pair[K, V]], timeout time.Duration, f func(key K, value Optional[V], state *State[S]) U, opts ...StateOption[K, S]) *Stream[U] {
	st := newStateful[K, S, U](s.job, "mapWithState", s.slide, s)
	applyOptions(st, opts)
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
			var expired, initial []K
			st.each(func(k K, v S, touched int64) {
				if touched == 0 {
					// An initial state's timeout starts at the first batch.
					initial = append(initial, k)
					return
				}
				if now-touched >= int64(timeout) {
					state = State[S]{value: v, exists: true, timingOut: true}
					out = append(out, f(k, Optional[V]{}, &state))
					expired = append(expired, k)
				}
			})
			for _, k := range expired {
				st.remove(k)
			}
			for _, k := range initial {
				v, _ := st.get(k)
				st.put(k, v, now)
			}
		}
		return out, true
	}
	return st.Stream
}
