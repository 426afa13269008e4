package microbatch

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
)

// Keyed state is stored as segments and deltas (docs/checkpoint.md). Every
// entry has a sequence number, the order in which its key got state;
// segment i holds the live entries with sequence numbers in
// [i<<segmentShift, (i+1)<<segmentShift) as of one batch, and the delta of
// batch n every entry that n changed or removed. A Store keeps a few large
// values per operator, not one per key, and a commit writes the delta plus a
// few segments, round-robin, about as many bytes as the changed entries take
// in segments.
const segmentShift = 16

// segmentsOf returns how many segments n sequence numbers span, with
// segments of 1<<shift.
func segmentsOf(n uint64, shift uint8) int { return int((n + 1<<shift - 1) >> shift) }

// maxDeltas bounds the deltas the store keeps of an operator: beyond it a
// commit rewrites a segment whatever its credit, so that a trickle of
// changes over large segments still lets old deltas go, and a restart reads
// few values.
const maxDeltas = 256

// Both segments and deltas are encoded as a header and entries, in
// sequence order:
//
//	header: format byte, flags byte (flagTimed), batch uvarint, next sequence
//	        number uvarint, entry count uvarint
//	entry:  head uvarint, then for a set entry: [key length uvarint, key,
//	        unless value only], [touched varint if timed], value length
//	        uvarint, value
//
// An entry's head is (seq - next)<<2 | kind, where next is one past the
// sequence number of the entry before it (0 for the first) and kind is
// entryRemoved, entrySet or entryValue: a segment's entries are
// consecutive, and a delta of a fifth of a million keys is gaps of about
// five, so a head is one byte where a sequence number and a kind took four.
//
// A delta's entry is value only (no key) when the stored snapshot of its
// segment already holds the key: a sequence number is given to one key
// only, so the snapshot's entry names it, and loading, which applies a
// segment's newer deltas to its snapshot, finds it there. A running total's
// delta entry is then 3 bytes, not 8.
//
// Format 1 (written before) has entries in any order, each its sequence
// number uvarint and a kind byte (0 removed, 1 set) in place of the head,
// and every set entry has its key; it is read, never written, and each
// part names its own format, so a store holding both loads.
const (
	partFormatV1 = 1
	partFormat   = 2
	flagTimed    = 1
)

// The kinds of entry of format 2.
const (
	entryRemoved = 0
	entrySet     = 1
	entryValue   = 2 // set, without its key
)

// storedState is a table's record of what the Store holds of it.
type storedState struct {
	// segs has, by segment index, the batch of its stored snapshot (0:
	// none) and the delta bytes written for it since.
	segs []segmentInfo
	// deltas are the committed deltas the Store keeps, in batch order,
	// each with the segments it touched.
	deltas []deltaInfo
	// cursor is the segment the next rewrite starts at (round-robin).
	cursor int
	// replace makes the next checkpoint rewrite every segment, replacing
	// all the Store holds: after a rebuilt or renumbered state.
	replace bool
	// credit is the bytes of deltas written and not yet spent rewriting
	// segments.
	credit int
	// next is what the checkpoint being committed changes, applied by
	// committed.
	next struct {
		batch uint64
		delta *deltaInfo
		// deltaSize is the delta's bytes by segment.
		deltaSize []int
		rewritten []int
		covered   uint64 // the rewritten segments' covered
		drop      int    // deltas dropped from the front of deltas
		replace   bool
		credit    int
	}
}

type segmentInfo struct {
	batch uint64
	dirty int
	// covered is the table's next sequence number when the stored snapshot
	// was encoded: it holds every live key numbered below it, and a delta
	// entry of such a key needs no key (0: no snapshot).
	covered uint64
}

type deltaInfo struct {
	batch uint64
	segs  []int
}

func appendHeader(b []byte, format byte, timed bool, batch, nextSeq uint64, count int) []byte {
	flags := byte(0)
	if timed {
		flags |= flagTimed
	}
	b = append(b, format, flags)
	b = binary.AppendUvarint(b, batch)
	b = binary.AppendUvarint(b, nextSeq)
	return binary.AppendUvarint(b, uint64(count))
}

// appendEntry appends entry i, of kind (entryRemoved, entrySet, or
// entryValue: set, without its key), after an entry whose sequence number
// is next-1, in the table's format.
func (t *table[K, S]) appendEntry(b []byte, i int, next uint64, kind uint64, c codecs[K, S]) []byte {
	e := &t.entries[i]
	if t.format == partFormatV1 {
		b = binary.AppendUvarint(b, e.seq())
		b = append(b, byte(min(kind, entrySet))) // no value-only entries in format 1
	} else {
		b = binary.AppendUvarint(b, (e.seq()-next)<<2|kind)
	}
	if kind == entryRemoved {
		return b
	}
	if kind == entrySet {
		lenAt := len(b)
		b = append(b, 0) // a one-byte length, widened below if need be
		b = c.keys.Append(b, e.key)
		// fixLength's common case, inline: every entry of a checkpoint has
		// two lengths, almost always of one byte.
		if n := len(b) - lenAt - 1; n < 0x80 {
			b[lenAt] = byte(n)
		} else {
			b = widenLength(b, lenAt)
		}
	}
	if t.timed {
		b = binary.AppendVarint(b, t.touched[i])
	}
	lenAt := len(b)
	b = append(b, 0)
	b = c.vals.Append(b, e.val)
	if n := len(b) - lenAt - 1; n < 0x80 {
		b[lenAt] = byte(n)
		return b
	}
	return widenLength(b, lenAt)
}

// codecs encode a table's keys and states.
type codecs[K comparable, S any] struct {
	keys Codec[K]
	vals Codec[S]
}

// storedCodecs are the codecs of the parts the Store holds: those a
// release that chose other codecs wrote them with (useStoredCodecs), until
// a commit replaced them all, else the table's own.
func (t *table[K, S]) storedCodecs() codecs[K, S] {
	if t.storedWith != nil {
		return *t.storedWith
	}
	return codecs[K, S]{t.keys, t.vals}
}

// readsCodecs reports whether the table can read state stored with the
// codecs codecName calls key and value.
func (t *table[K, S]) readsCodecs(key, value string) bool {
	_, okK := codecNamed[K](key)
	_, okV := codecNamed[S](value)
	return okK && okV
}

// useStoredCodecs makes the table read its stored parts with the codecs
// named key and value, and write its deltas with them, until its next
// checkpoint replaces every part in its own codecs. A delta must match the
// parts it follows: should that commit not happen (a crash after prepare,
// which recovery completes with the delta alone), the store still holds
// parts of one codec, which the next restart reads the same way.
func (t *table[K, S]) useStoredCodecs(key, value string) error {
	k, okK := codecNamed[K](key)
	v, okV := codecNamed[S](value)
	if !okK || !okV {
		return fmt.Errorf("state %s: no codec %s and %s for %s→%s", t.op, key, value, typeName(reflect.TypeFor[K]()), typeName(reflect.TypeFor[S]()))
	}
	t.storedWith = &codecs[K, S]{k, v}
	return nil
}

// fixLength writes the length of what follows b[at] as a uvarint at at,
// where one byte was reserved, moving the bytes when it needs more.
func fixLength(b []byte, at int) []byte {
	if n := len(b) - at - 1; n < 0x80 {
		b[at] = byte(n)
		return b
	}
	return widenLength(b, at)
}

// widenLength is fixLength for lengths of two bytes or more.
func widenLength(b []byte, at int) []byte {
	n := len(b) - at - 1
	var tmp [binary.MaxVarintLen64]byte
	w := binary.PutUvarint(tmp[:], uint64(n))
	b = slices.Insert(b, at+1, tmp[1:w]...)
	copy(b[at:], tmp[:w])
	return b
}

// delta encodes the entries batch changed, or returns false if it changed
// none. It records which segments the delta touches for the checkpoint.
func (t *table[K, S]) delta(batch uint64) (Delta, bool) {
	st := &t.stored
	st.next.batch, st.next.delta, st.next.deltaSize = batch, nil, nil
	if len(t.dirty) == 0 {
		return Delta{}, false
	}
	stored := t.storedCodecs()
	buf := make([]byte, 0, max(64, t.encoded))
	buf = appendHeader(buf, t.format, t.timed, batch, t.nextSeq, len(t.dirty))
	// A slice by segment: a map's update for every changed key cost more
	// than encoding it.
	sizes := make([]int, segmentsOf(t.nextSeq, t.shift))
	next, encoded := uint64(0), 0
	encode := func(i int) {
		encoded++
		from := len(buf)
		e := &t.entries[i]
		seg := int(e.seq() >> t.shift)
		kind := uint64(entrySet)
		switch {
		case !e.live():
			kind = entryRemoved
		case t.format != partFormatV1 && seg < len(st.segs) && e.seq() < st.segs[seg].covered:
			kind = entryValue
		}
		buf = t.appendEntry(buf, i, next, kind, stored)
		next = e.seq() + 1
		sizes[seg] += len(buf) - from
	}
	// Entries are in sequence order. When a good part of them changed (a
	// fifth of a million keys), reading them all in order costs less than
	// reaching the changed ones at random, each a cache miss; a few are
	// sorted first.
	if len(t.dirty) >= len(t.entries)/denseDirty {
		for i := range t.entries {
			if t.entries[i].dirty() {
				encode(i)
			}
		}
	} else {
		slices.Sort(t.dirty)
		for _, i := range t.dirty {
			encode(int(i))
		}
	}
	if invariants && encoded != len(t.dirty) {
		panic(fmt.Sprintf("state %s: %d entries marked changed, %d listed", t.op, encoded, len(t.dirty)))
	}
	t.encoded = len(buf)
	t.changedEntries = len(t.dirty)
	info := &deltaInfo{batch: batch}
	for s, n := range sizes {
		if n > 0 {
			info.segs = append(info.segs, s)
		}
	}
	st.next.delta, st.next.deltaSize = info, sizes
	return Delta{Op: t.op, Batch: batch, Data: buf}, true
}

// denseDirty is the share of a table's entries (one in denseDirty) from
// which its changed entries are found by reading every entry in order
// rather than by their list.
const denseDirty = 16

// checkpoint adds to c what committing batch stores of the table: the
// segments it rewrites and the deltas it drops. delta must have run for
// the batch first.
func (t *table[K, S]) checkpoint(batch uint64, c *Checkpoint) {
	st := &t.stored
	if st.next.batch != batch {
		st.next.batch, st.next.delta, st.next.deltaSize = batch, nil, nil
	}
	st.next.rewritten, st.next.drop, st.next.replace = nil, 0, false
	if t.nextSeq > 2*uint64(t.len())+2<<t.shift {
		// Keys that come and go (a window's) use sequence numbers up;
		// numbering the live ones afresh keeps the segments dense. It
		// moves entries, which lookups from other goroutines (StateView)
		// read.
		t.mu.Lock()
		t.renumber()
		t.mu.Unlock()
		st.replace = true
	}
	nseg := segmentsOf(t.nextSeq, t.shift)
	dirty := func(s int) int {
		d := 0
		if s < len(st.next.deltaSize) {
			d = st.next.deltaSize[s]
		}
		if s < len(st.segs) {
			d += st.segs[s].dirty
		}
		return d
	}
	if st.replace {
		st.next.replace = true
		c.Replace = append(c.Replace, t.op)
		for s := range nseg {
			st.next.rewritten = append(st.next.rewritten, s)
		}
	} else if nseg > 0 {
		// Segments are rewritten on credit, round-robin: each batch earns
		// the bytes its changed entries take in a segment, or its delta's
		// if more, and the next stale segment is rewritten once the credit
		// covers it. A round of deltas then holds no more entries than the
		// state (what a restart merges), nor more bytes (what the store
		// holds); the rewrites come a segment at a time. (Earning the
		// delta's bytes alone, which value-only entries make a third of a
		// segment's, would let three times as many delta entries wait for
		// a restart.)
		credit := st.credit
		if st.next.delta != nil {
			credit += max(t.encoded, t.changedEntries*t.segmentEntryBytes())
		}
		forced := len(st.deltas) >= t.maxDeltas
		start := st.cursor % nseg
		for k := range nseg {
			s := (start + k) % nseg
			if dirty(s) == 0 && (s < len(st.segs) && st.segs[s].batch > 0 || t.segmentEmpty(s)) {
				continue // its stored snapshot (or absence) is current
			}
			size := t.segmentBytes(s)
			if size > credit && !forced {
				break
			}
			st.next.rewritten = append(st.next.rewritten, s)
			credit, forced = max(0, credit-size), false
			st.cursor = s + 1
		}
		st.next.credit = credit
	}
	st.next.covered = t.nextSeq
	for _, s := range st.next.rewritten {
		c.Segments = append(c.Segments, Segment{Op: t.op, Index: uint32(s), Data: t.encodeSegment(s, batch)})
	}
	if st.next.replace {
		return // the replaced deltas go with the operator's old state
	}
	// A delta goes once every segment it touched has a newer snapshot.
	snap := func(s int) uint64 {
		if slices.Contains(st.next.rewritten, s) {
			return batch
		}
		if s < len(st.segs) {
			return st.segs[s].batch
		}
		return 0
	}
	passed := func(d *deltaInfo) bool {
		for _, s := range d.segs {
			if snap(s) < d.batch {
				return false
			}
		}
		return true
	}
	for st.next.drop < len(st.deltas) && passed(&st.deltas[st.next.drop]) {
		c.Drop = append(c.Drop, Delta{Op: t.op, Batch: st.deltas[st.next.drop].batch})
		st.next.drop++
	}
	if d := st.next.delta; d != nil && st.next.drop == len(st.deltas) && passed(d) {
		c.Drop = append(c.Drop, Delta{Op: t.op, Batch: d.batch})
		st.next.delta = nil
	}
}

// checkpointed applies what the committed checkpoint stored.
func (t *table[K, S]) checkpointed() {
	st := &t.stored
	nseg := segmentsOf(t.nextSeq, t.shift)
	if len(st.segs) < nseg {
		st.segs = append(st.segs, make([]segmentInfo, nseg-len(st.segs))...)
	}
	if !st.next.replace {
		st.credit = st.next.credit
	}
	if st.next.replace {
		// Every part is now in the table's own codecs.
		t.storedWith = nil
		st.deltas, st.replace, st.credit = nil, false, 0
		clear(st.segs)
		st.segs = st.segs[:nseg]
	} else {
		st.deltas = st.deltas[st.next.drop:]
		for s, n := range st.next.deltaSize {
			if s < len(st.segs) {
				st.segs[s].dirty += n
			}
		}
		if st.next.delta != nil {
			st.deltas = append(st.deltas, *st.next.delta)
		}
	}
	for _, s := range st.next.rewritten {
		st.segs[s] = segmentInfo{batch: st.next.batch, covered: st.next.covered}
	}
	st.next.delta, st.next.deltaSize, st.next.rewritten, st.next.drop, st.next.replace = nil, nil, nil, 0, false
}

// segmentRange returns the positions of the entries of segment s.
func (t *table[K, S]) segmentRange(s int) (lo, hi int) {
	first, last := uint64(s)<<t.shift, uint64(s+1)<<t.shift
	lo = sort.Search(len(t.entries), func(i int) bool { return t.entries[i].seq() >= first })
	hi = lo + sort.Search(len(t.entries)-lo, func(i int) bool { return t.entries[lo+i].seq() >= last })
	return lo, hi
}

func (t *table[K, S]) segmentEmpty(s int) bool {
	lo, hi := t.segmentRange(s)
	for i := lo; i < hi; i++ {
		if t.entries[i].live() {
			return false
		}
	}
	return true
}

// segmentBytes estimates the encoded size of segment s.
func (t *table[K, S]) segmentBytes(s int) int {
	lo, hi := t.segmentRange(s)
	return (hi - lo) * t.segmentEntryBytes()
}

// segmentEntryBytes is the bytes an entry took in the last segment
// encoded (16 before any).
func (t *table[K, S]) segmentEntryBytes() int {
	if t.segmentEntry == 0 {
		return 16
	}
	return t.segmentEntry
}

func (t *table[K, S]) encodeSegment(s int, batch uint64) []byte {
	own := codecs[K, S]{t.keys, t.vals}
	lo, hi := t.segmentRange(s)
	live := 0
	for i := lo; i < hi; i++ {
		if t.entries[i].live() {
			live++
		}
	}
	b := appendHeader(make([]byte, 0, 16+live*t.segmentEntryBytes()), t.format, t.timed, batch, t.nextSeq, live)
	header := len(b)
	next := uint64(0)
	for i := lo; i < hi; i++ {
		if e := &t.entries[i]; e.live() {
			b = t.appendEntry(b, i, next, entrySet, own)
			next = e.seq() + 1
		}
	}
	if live > 0 {
		t.segmentEntry = max(1, (len(b)-header+live-1)/live)
	}
	return b
}

// renumber gives the live entries the sequence numbers 0, 1, … in their
// order, dropping the dead ones. The whole state is rewritten after it, so
// which entries the batch changed no longer matters.
func (t *table[K, S]) renumber() {
	for _, i := range t.dirty {
		t.entries[i].meta &^= dirtyFlag
	}
	t.dirty = t.dirty[:0]
	t.compact()
	for i := range t.entries {
		e := &t.entries[i]
		e.meta = e.meta&^seqMask | uint64(i)
	}
	t.nextSeq = uint64(len(t.entries))
}

// part is one decoded stored part.
type part struct {
	format  byte
	batch   uint64
	nextSeq uint64
	timed   bool
	count   uint64
	entries []rawEntry // by decodePart, not scanPart
}

// rawEntry is an entry whose key and value are still encoded.
type rawEntry struct {
	seq uint64
	set bool
	// valueOnly: set, without its key, which the segment's snapshot has.
	valueOnly bool
	touched   int64
	key       []byte
	val       []byte
}

var errCorrupt = errors.New("corrupt state part")

func decodePart(b []byte) (part, error) {
	var entries []rawEntry
	p, err := scanPart(b, func(count uint64, e rawEntry) {
		if entries == nil {
			entries = make([]rawEntry, 0, count)
		}
		entries = append(entries, e)
	})
	if err != nil {
		return part{}, err
	}
	p.entries = entries
	return p, nil
}

// partHeader decodes part b's header; rest is its entries.
func partHeader(b []byte) (p part, rest []byte, err error) {
	if len(b) < 2 || b[0] != partFormat && b[0] != partFormatV1 {
		return part{}, nil, fmt.Errorf("%w: unknown format", errCorrupt)
	}
	p.format = b[0]
	p.timed = b[1]&flagTimed != 0
	b = b[2:]
	var ok [3]bool
	for i, v := range []*uint64{&p.batch, &p.nextSeq, &p.count} {
		var n int
		if *v, n = binary.Uvarint(b); n > 0 {
			ok[i], b = true, b[n:]
		}
	}
	if ok != [3]bool{true, true, true} || p.count > uint64(len(b)) {
		return part{}, nil, fmt.Errorf("%w: header", errCorrupt)
	}
	return p, b, nil
}

// scanPart decodes part b's header and calls each for its entries, in
// order, with their count, without keeping them: a restore decodes
// millions of entries straight into its table.
func scanPart(b []byte, each func(count uint64, e rawEntry)) (part, error) {
	p, b, err := partHeader(b)
	if err != nil {
		return part{}, err
	}
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	bytesOf := func() ([]byte, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(b)) {
			return nil, false
		}
		v := b[:n:n]
		b = b[n:]
		return v, true
	}
	next := uint64(0)
	for i := range p.count {
		var (
			e  rawEntry
			ok bool
		)
		if p.format == partFormatV1 {
			if e.seq, ok = uv(); !ok || len(b) == 0 || b[0] > 1 {
				return part{}, fmt.Errorf("%w: entry %d", errCorrupt, i)
			}
			e.set = b[0] == 1
			b = b[1:]
		} else {
			var head uint64
			if head, ok = uv(); !ok || head&3 > entryValue || head>>2 > seqMask || next+head>>2 > seqMask {
				return part{}, fmt.Errorf("%w: entry %d", errCorrupt, i)
			}
			e.seq, e.set, e.valueOnly = next+head>>2, head&3 != entryRemoved, head&3 == entryValue
			next = e.seq + 1
		}
		if e.set && !e.valueOnly {
			if e.key, ok = bytesOf(); !ok {
				return part{}, fmt.Errorf("%w: key of entry %d", errCorrupt, i)
			}
		}
		if e.set {
			if p.timed {
				t, n := binary.Varint(b)
				if n <= 0 {
					return part{}, fmt.Errorf("%w: time of entry %d", errCorrupt, i)
				}
				e.touched, b = t, b[n:]
			}
			if e.val, ok = bytesOf(); !ok {
				return part{}, fmt.Errorf("%w: value of entry %d", errCorrupt, i)
			}
		}
		each(p.count, e)
	}
	if len(b) != 0 {
		return part{}, fmt.Errorf("%w: %d bytes after the entries", errCorrupt, len(b))
	}
	return p, nil
}

// stateLoader collects the stored parts of one operator's state.
type stateLoader struct {
	committed uint64
	segments  map[uint32][]byte
	deltas    map[uint64][]byte
}

func (l *stateLoader) add(p StatePart) error {
	switch p.Kind {
	case SegmentPart:
		l.segments[p.Index] = p.Data
	case DeltaPart:
		if p.Batch <= l.committed { // a later one is a prepared batch's
			l.deltas[p.Batch] = p.Data
		}
	default:
		return fmt.Errorf("%w: part of kind %d", errCorrupt, p.Kind)
	}
	return nil
}

// restoreParts rebuilds the table from the parts l collected: every
// segment, then the deltas newer than it for its entries, in batch order.
func (t *table[K, S]) restoreParts(l *stateLoader, parallelism int) error {
	// The segments' headers first: which deltas are newer than each.
	segs := map[int]part{}
	maxSeg := -1
	nextSeq := uint64(0)
	for id, data := range l.segments {
		p, _, err := partHeader(data)
		if err != nil {
			return fmt.Errorf("state %s: segment %d: %w", t.op, id, err)
		}
		segs[int(id)] = p
		maxSeg = max(maxSeg, int(id))
		nextSeq = max(nextSeq, p.nextSeq)
	}
	batches := make([]uint64, 0, len(l.deltas))
	for b := range l.deltas {
		batches = append(batches, b)
	}
	slices.Sort(batches)
	// overlay holds, by segment, the delta entries newer than its
	// snapshot, in batch order.
	overlay := map[int][]rawEntry{}
	var deltas []deltaInfo
	for _, b := range batches {
		p, err := decodePart(l.deltas[b])
		if err != nil {
			return fmt.Errorf("state %s: delta of batch %d: %w", t.op, b, err)
		}
		nextSeq = max(nextSeq, p.nextSeq)
		info := deltaInfo{batch: b}
		for _, e := range p.entries {
			s := int(e.seq >> t.shift)
			if !slices.Contains(info.segs, s) {
				info.segs = append(info.segs, s)
			}
			maxSeg = max(maxSeg, s)
			if b > segs[s].batch {
				overlay[s] = append(overlay[s], e)
			}
		}
		slices.Sort(info.segs)
		deltas = append(deltas, info)
	}
	// Decoding keys and values is most of a restore's work: by segment,
	// in parallel. A segment no delta is newer than (most of them) is
	// decoded straight into entries; the others are merged with their
	// newer delta entries first.
	decoded := make([][]entry[K, S], maxSeg+1)
	touched := make([][]int64, maxSeg+1)
	stored := t.storedCodecs()
	err := inParallel(maxSeg+1, parallelism, func(s int) error {
		var err error
		add := func(count uint64, e rawEntry) {
			if err == nil && e.valueOnly {
				err = fmt.Errorf("state %s: segment %d: %w: entry %d without its key", t.op, s, errCorrupt, e.seq)
			}
			if decoded[s] == nil {
				decoded[s] = make([]entry[K, S], 0, count)
				if t.timed {
					touched[s] = make([]int64, 0, count)
				}
			}
			if err != nil || !e.set {
				return
			}
			var d entry[K, S]
			if d, err = t.decodeEntry(e, stored); err == nil {
				decoded[s] = append(decoded[s], d)
				if t.timed {
					touched[s] = append(touched[s], e.touched)
				}
			}
		}
		data, stored := l.segments[uint32(s)]
		if len(overlay[s]) == 0 {
			if stored {
				if _, scanErr := scanPart(data, add); scanErr != nil {
					return fmt.Errorf("state %s: segment %d: %w", t.op, s, scanErr)
				}
			}
			return err
		}
		var base []rawEntry
		if stored {
			p, err := decodePart(data)
			if err != nil {
				return fmt.Errorf("state %s: segment %d: %w", t.op, s, err)
			}
			base = p.entries
		}
		merged, err := mergeSegment(base, overlay[s])
		if err != nil {
			return fmt.Errorf("state %s: segment %d: %w", t.op, s, err)
		}
		for _, e := range merged {
			add(uint64(len(merged)), e)
		}
		return err
	})
	if err != nil {
		return err
	}
	n := 0
	for _, d := range decoded {
		n += len(d)
	}
	t.entries = make([]entry[K, S], 0, n)
	if t.timed {
		t.touched = make([]int64, 0, n)
	}
	for s, d := range decoded {
		t.entries = append(t.entries, d...)
		if t.timed {
			t.touched = append(t.touched, touched[s]...)
		}
	}
	t.keyBytes = 0
	for i := range t.entries {
		t.keyBytes += keySize(t.entries[i].key)
	}
	if len(t.entries) > 0 {
		nextSeq = max(nextSeq, t.entries[len(t.entries)-1].seq()+1)
	}
	t.nextSeq = nextSeq
	t.index.fill(len(t.entries), t.keyAt)
	st := &t.stored
	st.segs = make([]segmentInfo, maxSeg+1)
	for s, p := range segs {
		st.segs[s].batch, st.segs[s].covered = p.batch, p.nextSeq
	}
	for s, o := range overlay {
		for _, e := range o {
			st.segs[s].dirty += len(e.key) + len(e.val) + 4
		}
	}
	st.deltas, st.cursor, st.replace = deltas, 0, false
	return nil
}

// mergeSegment applies a segment's newer delta entries, in batch order, to
// its snapshot entries, which are in sequence order; the result is too. A
// value-only entry takes its key from the entry it replaces.
func mergeSegment(base, overlay []rawEntry) ([]rawEntry, error) {
	if len(overlay) == 0 {
		return base, nil
	}
	out := slices.Clone(base)
	for _, e := range overlay {
		i, found := slices.BinarySearchFunc(out, e.seq, func(x rawEntry, seq uint64) int { return cmp.Compare(x.seq, seq) })
		switch {
		case e.valueOnly && (!found || !out[i].set):
			return nil, fmt.Errorf("%w: a delta's entry %d without its key, and no key for it", errCorrupt, e.seq)
		case e.valueOnly:
			out[i].val, out[i].touched = e.val, e.touched
		case found:
			out[i] = e
		default:
			out = slices.Insert(out, i, e)
		}
	}
	return slices.DeleteFunc(out, func(e rawEntry) bool { return !e.set }), nil
}

// decodeEntry decodes a stored entry's key and value.
func (t *table[K, S]) decodeEntry(e rawEntry, c codecs[K, S]) (entry[K, S], error) {
	k, err := c.keys.Decode(e.key)
	if err != nil {
		return entry[K, S]{}, fmt.Errorf("state %s: decode key: %w", t.op, err)
	}
	v, err := c.vals.Decode(e.val)
	if err != nil {
		return entry[K, S]{}, fmt.Errorf("state %s: decode value of key %v: %w", t.op, k, err)
	}
	if e.seq > seqMask {
		return entry[K, S]{}, fmt.Errorf("state %s: sequence %d of key %v out of range", t.op, e.seq, k)
	}
	return entry[K, S]{key: k, val: v, meta: e.seq | liveFlag}, nil
}

// inParallel calls f for 0 … n-1 on up to workers goroutines, and returns
// the errors it returned, joined.
func inParallel(n, workers int, f func(i int) error) error {
	errs := make([]error, n)
	work := make(chan int, n)
	for i := range n {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	for range max(1, min(workers, n)) {
		wg.Go(func() {
			for i := range work {
				errs[i] = f(i)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
