package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dstream-io/dstream/microbatch"
)

// readAhead is how many fetched chunks of a partition wait for the emitter
// while it is still busy with the partitions before it.
const readAhead = 4

// maxStalls bounds the fetches in a row that make no progress (a broker
// recovering, a leader moving) before Read gives up with a retriable error.
const maxStalls = 40

// Read implements microbatch.Source. The first fetch asks each leader for
// all its partitions' ranges in one request, and for up to three ranges
// more of each (4 MiB at most): while a job catches up, the next batches'
// records come with it, and what a fetch brought past its range serves the
// read of the range that follows (a broker's cost is mostly per request: a
// fetch a partition a batch cost it several times a consumer's). Every partition whose range
// that did not cover is then fetched by a goroutine of its own, and its
// records are emitted as soon as the partitions before it are done:
// partition by partition in partition order, each in offset order, the same
// on every read of the same ranges.
// The records' values share the fetched memory; nothing is copied.
//
// If Read fails, it may already have emitted some records of the ranges.
func (s *Source) Read(ctx context.Context, ranges []microbatch.Range, emit func(microbatch.Record)) error {
	return s.read(ctx, ranges, func(recs []microbatch.Record) {
		for _, rec := range recs {
			emit(rec)
		}
	})
}

// AppendRecords implements microbatch.RecordAppender: Read, appending the
// records to dst a fetched chunk at a time rather than calling back for each.
func (s *Source) AppendRecords(ctx context.Context, ranges []microbatch.Range, dst []microbatch.Record) ([]microbatch.Record, error) {
	err := s.read(ctx, ranges, func(recs []microbatch.Record) { dst = append(dst, recs...) })
	return dst, err
}

// read fetches ranges and passes their records to emit, a fetched chunk of
// a partition at a time, in the order Read documents.
func (s *Source) read(ctx context.Context, ranges []microbatch.Range, emit func(recs []microbatch.Record)) error {
	ranges, err := s.readable(ranges)
	if err != nil || len(ranges) == 0 {
		return err
	}
	s.mu.Lock()
	needMeta := s.mu.leaders == nil
	s.mu.Unlock()
	if needMeta {
		if _, err := s.refreshMetadata(ctx); err != nil {
			return err
		}
	}
	// A plan cut from a topic deleted since names records it no longer has.
	if was, now := recordedID(ranges), s.topicID(); was != "" && now != "" && was != now {
		return &TopicRecreatedError{Topic: s.cfg.Topic, Was: was, Now: now}
	}

	readCtx, stop := context.WithCancel(ctx)
	defer stop()
	first := s.fetchFirst(readCtx, ranges)
	chunks := make([]chan []microbatch.Record, len(ranges))
	errs := make([]error, len(ranges))
	var wg sync.WaitGroup
	for i, r := range ranges {
		chunks[i] = make(chan []microbatch.Record, readAhead)
		wg.Go(func() {
			defer close(chunks[i])
			if errs[i] = s.readRange(readCtx, r, first[i], chunks[i]); errs[i] != nil {
				stop()
			}
		})
	}
emitting:
	for i := range ranges {
		for recs := range chunks[i] {
			if ctx.Err() != nil {
				break emitting
			}
			emit(recs)
		}
		if errs[i] != nil { // set before chunks[i] was closed
			break
		}
	}
	stop()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	// A partition stopped because another one failed has nothing to say.
	var failed []error
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			failed = append(failed, err)
		}
	}
	return errors.Join(failed...)
}

// readable returns the non-empty ranges in partition order, or an error
// for ranges that this source cannot have cut.
func (s *Source) readable(ranges []microbatch.Range) ([]microbatch.Range, error) {
	out := make([]microbatch.Range, 0, len(ranges))
	for _, r := range ranges {
		switch {
		case r.Topic != s.cfg.Topic:
			return nil, fmt.Errorf("ingest: read %s[%d]: this source reads %s (%w)", r.Topic, r.Partition, s.cfg.Topic, microbatch.ErrPermanent)
		case r.From > r.Until || r.From < 0:
			return nil, fmt.Errorf("ingest: read %s[%d]: invalid range [%d, %d) (%w)", r.Topic, r.Partition, r.From, r.Until, microbatch.ErrPermanent)
		case r.From < r.Until:
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b microbatch.Range) int { return int(a.Partition) - int(b.Partition) })
	for i := 1; i < len(out); i++ {
		if out[i].Partition == out[i-1].Partition {
			return nil, fmt.Errorf("ingest: read %s[%d]: two ranges of one partition (%w)", s.cfg.Topic, out[i].Partition, microbatch.ErrPermanent)
		}
	}
	return out, nil
}

// fetchAhead is how many more ranges of the size of the one a fetch is for
// it asks for too, within aheadBytes: while a job catches up, the next
// batches' records come with the fetch of this one, and their reads take
// no request (see keep). Ranges of several MiB take one request each
// anyway, and records kept ahead would only hold memory longer (a window
// keeps its batches' records, and with them the fetches they came in).
const (
	fetchAhead = 3
	aheadBytes = 4 << 20
)

// fetchUntil is the offset up to which a fetch for r asks for records:
// r's end and up to fetchAhead ranges more, within aheadBytes.
func (s *Source) fetchUntil(r microbatch.Range) int64 {
	n := r.Until - r.From
	perOffset := math.Float64frombits(s.perOffset.Load())
	if n <= 0 || perOffset <= 0 {
		return r.Until
	}
	return r.Until + n*min(fetchAhead, int64(aheadBytes/(perOffset*float64(n))))
}

// keep keeps the batches of a fetch for range r from tail on, which hold
// offsets at or past r's end, for the read of the range that follows r.
// The log does not change below the last stable offset, so they are what a
// fetch at r's end would return, but for the aborted transactions the
// broker lists with them: those of the whole fetch, some of which may end
// before the kept batches (and would drop the producer's later records).
// So a fetch that lists any is not kept.
func (s *Source) keep(r microbatch.Range, rp *kmsg.FetchResponseTopicPartition, tail int) {
	kept := *rp
	kept.RecordBatches = rp.RecordBatches[tail:]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.kept == nil {
		s.mu.kept = map[int32]keptFetch{}
	}
	s.mu.kept[r.Partition] = keptFetch{from: r.Until, topicID: r.TopicID, rp: &kept}
}

// leftover returns, and forgets, what a fetch of the range before r kept
// for r (nil if nothing).
func (s *Source) leftover(r microbatch.Range) *kmsg.FetchResponseTopicPartition {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.mu.kept[r.Partition]
	if !ok {
		return nil
	}
	delete(s.mu.kept, r.Partition)
	if k.from != r.From || k.topicID != r.TopicID {
		return nil
	}
	return k.rp
}

// keptFetch is the part of a fetch kept for the next range of a partition,
// which starts at from.
type keptFetch struct {
	from    int64
	topicID string
	rp      *kmsg.FetchResponseTopicPartition
}

// maxFirstFetch bounds what the first fetch of a read asks one leader for,
// within the client's limit on a response (kgo.BrokerMaxReadBytes): the
// partitions past it fetch on their own.
const maxFirstFetch = 64 << 20

// prefetched is the answer of a fetch of one partition at offset at, made
// before readRange needed it.
type prefetched struct {
	at int64
	rp *kmsg.FetchResponseTopicPartition
}

// fetchFirst fetches the start of every range, one request per leader, and
// returns by range what it has for it, in offset order: what the fetch of
// the range before kept (see keep) and, unless that covers the range, the
// answer of the request from where it ends. Anything unusable (an error, no
// records, no leader known) is left out: readRange fetches it itself, and
// handles it as it handles any fetch.
func (s *Source) fetchFirst(ctx context.Context, ranges []microbatch.Range) [][]prefetched {
	out := make([][]prefetched, len(ranges))
	at := make([]int64, len(ranges)) // where the request for range i fetches
	byLeader := map[int32][]int{}
	for i, r := range ranges {
		at[i] = r.From
		if kept := s.leftover(r); kept != nil {
			out[i] = append(out[i], prefetched{at: r.From, rp: kept})
			sc := scanBatches(kept.RecordBatches, r.Until)
			if sc.done || sc.next >= r.Until || sc.next <= r.From {
				continue // it covers the range (or is of no use, and readRange fetches)
			}
			at[i] = sc.next
		}
		if leader, ok := s.leader(r.Partition); ok {
			byLeader[leader] = append(byLeader[leader], i)
		}
	}
	var wg sync.WaitGroup
	for leader, idx := range byLeader {
		var parts []fetchPart
		total := int64(0)
		for _, i := range idx {
			r := ranges[i]
			size := s.fetchSize(at[i], s.fetchUntil(r))
			if total+int64(size) > maxFirstFetch {
				break
			}
			total += int64(size)
			parts = append(parts, fetchPart{partition: r.Partition, offset: at[i], size: size})
		}
		if len(parts) < 2 {
			continue // readRange's own fetch is the same request
		}
		wg.Go(func() {
			resp, err := s.fetchParts(ctx, leader, parts, int32(total))
			if err != nil {
				return // each partition fetches on its own, and reports it
			}
			for _, i := range idx {
				rp := findPartition(resp, ranges[i].Partition)
				if rp != nil && rp.ErrorCode == 0 && len(rp.RecordBatches) > 0 {
					out[i] = append(out[i], prefetched{at: at[i], rp: rp})
				}
			}
		})
	}
	wg.Wait()
	return out
}

// readRange fetches the records of one partition in [r.From, r.Until) and
// sends them to out, one chunk per fetch. first are fetches made already;
// one is used when the read reaches its offset.
func (s *Source) readRange(ctx context.Context, r microbatch.Range, first []prefetched, out chan<- []microbatch.Record) error {
	pos, stalls := r.From, 0
	stall := func(why string, err error, wait time.Duration) error {
		stalls++
		if stalls > maxStalls {
			return fmt.Errorf("ingest: fetch %s[%d] at %d: no progress after %d tries: %s: %w", s.cfg.Topic, r.Partition, pos, stalls, why, err)
		}
		s.log.Debug().Err(err).Int32("partition", r.Partition).Int64("offset", pos).Str("why", why).Msg("fetch made no progress; retrying")
		wait = max(wait, min(time.Duration(stalls)*50*time.Millisecond, 2*time.Second))
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	for pos < r.Until {
		leader, ok := s.leader(r.Partition)
		if !ok {
			if err := stall("no leader known", kerr.LeaderNotAvailable, 0); err != nil {
				return err
			}
			if err := s.refresh(ctx); err != nil {
				return err
			}
			continue
		}
		var rp *kmsg.FetchResponseTopicPartition
		for rp == nil && len(first) > 0 {
			if first[0].at == pos {
				rp = first[0].rp
			}
			first = first[1:]
		}
		if rp == nil {
			resp, err := s.fetch(ctx, leader, r.Partition, pos, s.fetchSize(pos, s.fetchUntil(r)))
			if err != nil {
				return err
			}
			if rp = findPartition(resp, r.Partition); rp == nil {
				// A throttled broker answers without partitions.
				if err := stall("no partition in the response", kerr.ThrottlingQuotaExceeded, time.Duration(resp.ThrottleMillis)*time.Millisecond); err != nil {
					return err
				}
				continue
			}
		}
		scanned := scanBatches(rp.RecordBatches, r.Until)
		// Only a fetch that asked for the ranges after r keeps its tail: the
		// slack of one that did not is a small part of the next range, and
		// keeping it would keep the whole fetch in memory a batch longer.
		if scanned.tail >= 0 && len(rp.AbortedTransactions) == 0 && s.fetchUntil(r) > r.Until {
			s.keep(r, rp, scanned.tail)
		}
		rp.RecordBatches = scanned.raw
		s.learn(pos, scanned)
		recs, next, err := s.process(rp, r, pos, scanned)
		switch {
		case errors.Is(err, kerr.OffsetOutOfRange):
			return s.outOfRange(ctx, r.Partition, pos)
		case err != nil && kerr.IsRetriable(err):
			if err := stall("retriable error; refreshing metadata", err, 0); err != nil {
				return err
			}
			if err := s.refresh(ctx); err != nil {
				return err
			}
			continue
		case err != nil:
			return fmt.Errorf("ingest: fetch %s[%d] at %d: %w", s.cfg.Topic, r.Partition, pos, err)
		}
		if len(recs) > 0 {
			select {
			case out <- recs:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		switch {
		case scanned.done:
			return nil
		case next > pos:
			pos, stalls = next, 0
		case len(rp.RecordBatches) == 0 && rp.LastStableOffset >= r.Until:
			// The broker has nothing at or past pos below its last stable
			// offset, which is at or past the range's end: the rest of
			// the range was compacted away.
			return nil
		default:
			// Nothing past pos yet: the range was planned below the last
			// stable offset, so this only happens while a broker recovers.
			if err := stall("empty fetch below the planned end", kerr.OffsetNotAvailable, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// process returns the committed records of a fetched partition at offsets
// in [pos, r.Until) and the offset to fetch next. Clean v2 batches are
// decoded by decodeV2; anything else goes through kgo.ProcessFetchPartition,
// which reports what is wrong.
func (s *Source) process(rp *kmsg.FetchResponseTopicPartition, r microbatch.Range, pos int64, scanned batches) ([]microbatch.Record, int64, error) {
	if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
		return nil, pos, err
	}
	// Room for the offsets the fetch's complete batches span in the range,
	// within its byte count (headers are not checked yet).
	room := min(max(0, min(scanned.next, r.Until)-pos), int64(len(rp.RecordBatches)))
	if recs, next, ok := decodeV2(make([]microbatch.Record, 0, room), rp, r.Partition, pos, r.Until, s.decom); ok {
		return recs, next, nil
	}
	fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset:         pos,
		IsolationLevel: kgo.ReadCommitted(),
		Topic:          s.cfg.Topic,
		Partition:      r.Partition,
	}, rp, s.decom, nil)
	if fp.Err != nil {
		return nil, next, fp.Err
	}
	recs := make([]microbatch.Record, 0, len(fp.Records))
	for _, rec := range fp.Records {
		if rec.Offset < r.Until {
			recs = append(recs, microbatch.Record{Partition: r.Partition, Offset: rec.Offset, Value: rec.Value})
		}
	}
	return recs, next, nil
}

// batches is what scanBatches learned of a fetched partition's records.
type batches struct {
	raw  []byte // the batches that start before the range's end
	done bool   // a batch at or past the range's end was dropped
	// tail is where in the scanned bytes the first complete batch holding
	// offsets at or past the range's end starts (-1: none): what the next
	// range reads first.
	tail int
	// Of the complete v2 batches in raw: their bytes, the offset after
	// the last one (0 if none) and the largest one's bytes.
	bytes, next, largest int64
}

// scanBatches drops the record batches of a fetched partition that start
// at or past until, so that nothing beyond the range is decompressed or
// decoded, and measures the rest from their headers. Only v2 record
// batches are dropped: the offset heading an older message set is its
// last, not its first.
func scanBatches(raw []byte, until int64) batches {
	const headerLen = 8 + 4 + 4 + 1 + 4 + 2 + 4 // base offset, length, leader epoch, magic, crc, attributes, last offset delta
	b := batches{raw: raw, tail: -1}
	for at := 0; len(raw)-at >= headerLen; {
		if raw[at+16] != 2 {
			break
		}
		base := int64(binary.BigEndian.Uint64(raw[at:]))
		size := 12 + int64(int32(binary.BigEndian.Uint32(raw[at+8:])))
		complete := size >= headerLen && int64(len(raw)-at) >= size
		if base >= until {
			b.raw, b.done = raw[:at], true
			if complete && b.tail < 0 {
				b.tail = at
			}
			break
		}
		if !complete {
			break // corrupt, or cut short by the fetch's size
		}
		b.bytes += size
		b.next = base + int64(int32(binary.BigEndian.Uint32(raw[at+23:]))) + 1
		if b.next > until && b.tail < 0 {
			b.tail = at
		}
		b.largest = max(b.largest, size)
		at += int(size)
	}
	return b
}

// fetchSize is what to ask for to read the offsets [pos, until) in one
// fetch, from the bytes per offset of the last fetch: enough with a tenth
// and a batch to spare, within [64 KiB, PartitionFetchBytes].
func (s *Source) fetchSize(pos, until int64) int32 {
	perOffset := math.Float64frombits(s.perOffset.Load())
	if perOffset <= 0 {
		return s.cfg.PartitionFetchBytes
	}
	want := perOffset*float64(until-pos)*1.1 + math.Float64frombits(s.largestBatch.Load())
	return int32(min(max(want, 64<<10), float64(s.cfg.PartitionFetchBytes)))
}

// learn remembers the bytes per offset and the largest batch of a fetch
// at pos.
func (s *Source) learn(pos int64, b batches) {
	if b.bytes == 0 || b.next <= pos {
		return
	}
	s.perOffset.Store(math.Float64bits(float64(b.bytes) / float64(b.next-pos)))
	s.largestBatch.Store(math.Float64bits(float64(b.largest)))
}

// outOfRange explains a fetch at pos that the broker refused as out of
// range: pos is below the partition's log start (deleted) or past its end
// (truncated).
func (s *Source) outOfRange(ctx context.Context, partition int32, pos int64) error {
	leaders, err := s.refreshMetadata(ctx)
	if err != nil {
		return fmt.Errorf("ingest: %s[%d]: offset %d is out of range: %w", s.cfg.Topic, partition, pos, err)
	}
	starts, ends, err := s.partitionOffsets(ctx, leaders)
	if err != nil {
		return fmt.Errorf("ingest: %s[%d]: offset %d is out of range: %w", s.cfg.Topic, partition, pos, err)
	}
	if start, ok := starts[partition]; ok && pos < start {
		return &OffsetGapError{Topic: s.cfg.Topic, Partition: partition, Want: pos, Got: start}
	}
	if end, ok := ends[partition]; ok && pos > end {
		return fmt.Errorf("ingest: %s[%d]: offset %d is planned but the partition ends at %d: "+
			"was the topic recreated or truncated? reset the job's checkpoint to start over (%w)",
			s.cfg.Topic, partition, pos, end, microbatch.ErrPermanent)
	}
	// The partition changed between the fetch and the listing; the next
	// read will tell.
	return fmt.Errorf("ingest: fetch %s[%d] at %d: %w", s.cfg.Topic, partition, pos, kerr.OffsetOutOfRange)
}

// refresh refreshes the metadata while a read retries, failing only if it
// fails for good (the topic was recreated).
func (s *Source) refresh(ctx context.Context) error {
	_, err := s.refreshMetadata(ctx)
	if errors.Is(err, microbatch.ErrPermanent) {
		return err
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("refresh metadata")
	}
	return nil
}

// leader returns the partition's leader, if the metadata names one.
func (s *Source) leader(partition int32) (int32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.mu.leaders[partition]
	return l, ok && l >= 0
}

// fetch sends one sessionless read_committed fetch request for one
// partition to its leader.
func (s *Source) fetch(ctx context.Context, leader, partition int32, offset int64, size int32) (*kmsg.FetchResponse, error) {
	return s.fetchParts(ctx, leader, []fetchPart{{partition: partition, offset: offset, size: size}}, size)
}

// fetchPart is one partition of a fetch request: where, and at most how
// much.
type fetchPart struct {
	partition int32
	offset    int64
	size      int32
}

// fetchParts fetches parts from leader in one request of at most size
// bytes.
func (s *Source) fetchParts(ctx context.Context, leader int32, parts []fetchPart, size int32) (*kmsg.FetchResponse, error) {
	s.mu.Lock()
	topicID := s.mu.topicID
	s.mu.Unlock()
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 250
	req.MinBytes = 1
	req.MaxBytes = size
	req.IsolationLevel = 1
	req.SessionEpoch = -1 // no fetch session: every request is complete
	t := kmsg.NewFetchRequestTopic()
	t.Topic, t.TopicID = s.cfg.Topic, topicID
	for _, part := range parts {
		p := kmsg.NewFetchRequestTopicPartition()
		p.Partition = part.partition
		p.FetchOffset = part.offset
		p.PartitionMaxBytes = part.size
		p.CurrentLeaderEpoch = -1
		p.LogStartOffset = -1
		t.Partitions = append(t.Partitions, p)
	}
	req.Topics = append(req.Topics, t)
	fail := func(err error) error {
		if len(parts) > 1 {
			return fmt.Errorf("ingest: fetch %d partitions of %s: %w", len(parts), s.cfg.Topic, err)
		}
		return fmt.Errorf("ingest: fetch %s[%d] at %d: %w", s.cfg.Topic, parts[0].partition, parts[0].offset, err)
	}
	resp, err := s.cl.Broker(int(leader)).RetriableRequest(ctx, req)
	if err != nil {
		return nil, fail(err)
	}
	fr := resp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(fr.ErrorCode); err != nil {
		return nil, fail(err)
	}
	return fr, nil
}

// findPartition returns the response's data of partition, or nil.
func findPartition(resp *kmsg.FetchResponse, partition int32) *kmsg.FetchResponseTopicPartition {
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			if resp.Topics[i].Partitions[j].Partition == partition {
				return &resp.Topics[i].Partitions[j]
			}
		}
	}
	return nil
}
