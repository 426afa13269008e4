package ingest

import (
	"encoding/binary"
	"hash/crc32"
	"slices"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dstream-io/dstream/microbatch"
)

// The v2 record batch header (KIP-98): base offset, length, leader epoch,
// magic, crc, attributes, last offset delta, first and max timestamps,
// producer id and epoch, base sequence, record count.
const (
	batchHeaderLen  = 61
	batchCRCFrom    = 21
	attrCompression = 0x07
	attrTxn         = 0x10
	attrControl     = 0x20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// decodeV2 decodes the committed records of a read_committed fetch of one
// partition straight into dstream's records, appended to dst: those at
// offsets in [pos, until), with values that share the fetched (or
// decompressed) memory. It returns the offset to fetch next. It reads exactly what
// kgo.ProcessFetchPartition reads (FuzzDecodeV2 holds it to that), with
// the same primitives, but only in the clean case — v2 batches (all a
// broker of Kafka 3+ writes) whose lengths, checksums, compression and
// records all check out. For anything else it reports ok=false and the
// caller leaves the response to kgo, errors and all. Decoding this way
// costs no allocation per record: kgo makes a Record of 180 bytes for each.
func decodeV2(dst []microbatch.Record, rp *kmsg.FetchResponseTopicPartition, partition int32, pos, until int64, decom kgo.Decompressor) (recs []microbatch.Record, next int64, ok bool) {
	var aborted map[int64][]int64 // producer id → first offsets of its aborted transactions
	for _, a := range rp.AbortedTransactions {
		if aborted == nil {
			aborted = make(map[int64][]int64)
		}
		aborted[a.ProducerID] = append(aborted[a.ProducerID], a.FirstOffset)
	}
	for pid := range aborted {
		slices.Sort(aborted[pid])
	}
	recs = dst
	// next only grows: records and batches below it are skipped, as kgo
	// skips them.
	next = pos
	in := rp.RecordBatches
	for len(in) > 17 {
		// The batch's size, with the 12 bytes before its length field, in
		// int32 as the protocol (and kgo) computes it.
		total := int32(binary.BigEndian.Uint32(in[8:])) + 12
		if total < 0 || int(total) > len(in) {
			break // the fetch cut the last batch short: fetch it again
		}
		batch := in[:total]
		in = in[total:]
		if total < batchHeaderLen || batch[16] != 2 ||
			crc32.Checksum(batch[batchCRCFrom:], castagnoli) != binary.BigEndian.Uint32(batch[17:]) {
			return nil, pos, false
		}
		base := int64(binary.BigEndian.Uint64(batch))
		attrs := binary.BigEndian.Uint16(batch[21:])
		last := base + int64(int32(binary.BigEndian.Uint32(batch[23:])))
		producer := int64(binary.BigEndian.Uint64(batch[43:]))
		count := int32(binary.BigEndian.Uint32(batch[57:]))
		if base < 0 || count < 0 {
			return nil, pos, false
		}
		if last < next {
			continue
		}
		raw := batch[batchHeaderLen:]
		if c := attrs & attrCompression; c != 0 {
			var err error
			if raw, err = decom.Decompress(raw, kgo.CompressionCodecType(c)); err != nil {
				return nil, pos, false
			}
		}
		control := attrs&attrControl != 0
		abort := attrs&attrTxn != 0 && len(aborted[producer]) > 0 && base >= aborted[producer][0]
		markerSeen := false
		for range count {
			rec, rest, ok := record(raw)
			if !ok {
				return nil, pos, false
			}
			raw = rest
			// An abort marker ends its producer's oldest aborted
			// transaction (one per control batch).
			if abort && control && !markerSeen && len(rec.key) >= 4 && rec.key[2] == 0 && rec.key[3] == 0 {
				aborted[producer] = aborted[producer][1:]
				markerSeen = true
			}
			offset := base + int64(rec.offsetDelta)
			if offset < next {
				continue
			}
			if !control && !abort && offset < until {
				recs = append(recs, microbatch.Record{Partition: partition, Offset: offset, Value: rec.value})
			}
			next = offset + 1
		}
		next = max(next, last+1)
	}
	return recs, next, true
}

// v2Record is what decodeV2 needs of a record.
type v2Record struct {
	offsetDelta int32
	key, value  []byte
}

// record decodes the first record of raw as kgo does (kgo's
// readRawRecordsDirect, with kbin's varints), without its Reader: most of a
// record's varints are one byte, read inline here.
func record(raw []byte) (rec v2Record, rest []byte, ok bool) {
	length, used := varint(raw)
	end := used + int(length)
	if used <= 0 || length < 0 || len(raw) < end {
		return rec, nil, false
	}
	b := raw[used:end]
	if len(b) < 1 { // attributes
		return rec, nil, false
	}
	b = b[1:]
	var n int
	if _, n = varlong(b); n <= 0 { // timestamp delta
		return rec, nil, false
	}
	b = b[n:]
	if rec.offsetDelta, n = varint(b); n <= 0 {
		return rec, nil, false
	}
	b = b[n:]
	if rec.key, b, ok = varintBytes(b); !ok {
		return rec, nil, false
	}
	if rec.value, b, ok = varintBytes(b); !ok {
		return rec, nil, false
	}
	headers, n := varint(b)
	if n <= 0 || len(b)-n < int(headers) {
		return rec, nil, false
	}
	b = b[n:]
	for range headers { // headers are not read, only checked
		if _, b, ok = varintBytes(b); !ok {
			return rec, nil, false
		}
		if _, b, ok = varintBytes(b); !ok {
			return rec, nil, false
		}
	}
	return rec, raw[end:], true
}

// varintBytes reads a varint-length-prefixed field, nil for a negative
// length, as kbin.Reader.VarintBytes does.
func varintBytes(b []byte) (field, rest []byte, ok bool) {
	l, n := varint(b)
	if n <= 0 {
		return nil, nil, false
	}
	b = b[n:]
	if l < 0 {
		return nil, b, true
	}
	if len(b) < int(l) {
		return nil, nil, false
	}
	return b[:l:l], b[l:], true
}

// varint is kbin.Varint with a fast path for one byte.
func varint(b []byte) (int32, int) {
	if len(b) > 0 && b[0] < 0x80 {
		x := uint32(b[0])
		return int32((x >> 1) ^ -(x & 1)), 1
	}
	return kbin.Varint(b)
}

// varlong is kbin.Varlong with a fast path for one byte.
func varlong(b []byte) (int64, int) {
	if len(b) > 0 && b[0] < 0x80 {
		x := uint64(b[0])
		return int64((x >> 1) ^ -(x & 1)), 1
	}
	return kbin.Varlong(b)
}
