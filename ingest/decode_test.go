package ingest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dstream-io/dstream/microbatch"
)

// v2batch encodes a record batch: values at base, base+1, …; attrs as in
// the header (compression, transactional, control).
func v2batch(t testing.TB, base int64, attrs int16, producer int64, keys, values []string) []byte {
	t.Helper()
	var body []byte
	for i, v := range values {
		var rec []byte
		rec = append(rec, 0)                     // attributes
		rec = binary.AppendVarint(rec, int64(i)) // timestamp delta
		rec = binary.AppendVarint(rec, int64(i)) // offset delta
		if keys == nil {
			rec = binary.AppendVarint(rec, -1)
		} else {
			rec = binary.AppendVarint(rec, int64(len(keys[i])))
			rec = append(rec, keys[i]...)
		}
		rec = binary.AppendVarint(rec, int64(len(v)))
		rec = append(rec, v...)
		rec = binary.AppendVarint(rec, 1) // one header, which the decoder skips
		rec = binary.AppendVarint(rec, 1)
		rec = append(rec, 'h')
		rec = binary.AppendVarint(rec, 0)
		body = binary.AppendVarint(body, int64(len(rec)))
		body = append(body, rec...)
	}
	if c := attrs & attrCompression; c != 0 {
		codec := map[int16]kgo.CompressionCodec{1: kgo.GzipCompression(), 2: kgo.SnappyCompression(),
			3: kgo.Lz4Compression(), 4: kgo.ZstdCompression()}[c]
		comp, err := kgo.DefaultCompressor(codec)
		if err != nil {
			t.Fatal(err)
		}
		compressed, _ := comp.Compress(new(bytes.Buffer), body)
		body = slices.Clone(compressed)
	}
	b := binary.BigEndian.AppendUint64(nil, uint64(base))
	b = binary.BigEndian.AppendUint32(b, 0) // length, below
	b = binary.BigEndian.AppendUint32(b, 0) // leader epoch
	b = append(b, 2)
	b = binary.BigEndian.AppendUint32(b, 0) // crc, below
	b = binary.BigEndian.AppendUint16(b, uint16(attrs))
	b = binary.BigEndian.AppendUint32(b, uint32(max(0, len(values)-1)))
	b = binary.BigEndian.AppendUint64(b, 1000)
	b = binary.BigEndian.AppendUint64(b, 1000)
	b = binary.BigEndian.AppendUint64(b, uint64(producer))
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(values)))
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// marker is a control batch ending producer's transaction at offset.
func marker(t testing.TB, offset, producer int64, commit bool) []byte {
	typ := "\x00\x00\x00\x00"
	if commit {
		typ = "\x00\x00\x00\x01"
	}
	return v2batch(t, offset, attrTxn|attrControl, producer, []string{typ}, []string{"\x00\x00\x00\x00\x00\x00"})
}

func vals(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

// kgoRecords is what franz-go's own processing reads: the reference.
func kgoRecords(rp kmsg.FetchResponseTopicPartition, pos, until int64) ([]string, int64, error) {
	fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: pos, IsolationLevel: kgo.ReadCommitted(),
		Topic: "t", Partition: rp.Partition}, &rp, kgo.DefaultDecompressor(), nil)
	var out []string
	for _, r := range fp.Records {
		if r.Offset < until {
			out = append(out, fmt.Sprintf("%d:%s", r.Offset, r.Value))
		}
	}
	return out, next, fp.Err
}

func decoded(recs []microbatch.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%d:%s", r.Offset, r.Value))
	}
	return out
}

func TestDecodeV2AgreesWithKgo(t *testing.T) {
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	plain := v2batch(t, 0, 0, -1, nil, vals("a", 5))
	const p1, p2 = 7, 8
	for _, test := range []struct {
		name       string
		raw        []byte
		aborted    []kmsg.FetchResponseTopicPartitionAbortedTransaction
		pos, until int64
		wantOK     bool
		want       int // records
	}{
		{"plain", plain, nil, 0, 100, true, 5},
		{"from the middle of a batch", plain, nil, 2, 100, true, 3},
		{"until the middle of a batch", plain, nil, 0, 3, true, 3},
		{"two batches", cat(plain, v2batch(t, 5, 0, -1, []string{"k0", "k1"}, vals("b", 2))), nil, 0, 100, true, 7},
		{"gzip", v2batch(t, 0, 1, -1, nil, vals("g", 50)), nil, 0, 100, true, 50},
		{"snappy", v2batch(t, 0, 2, -1, nil, vals("s", 50)), nil, 0, 100, true, 50},
		{"lz4", v2batch(t, 0, 3, -1, nil, vals("l", 50)), nil, 0, 100, true, 50},
		{"zstd", v2batch(t, 0, 4, -1, nil, vals("z", 50)), nil, 0, 100, true, 50},
		{"committed transaction", cat(v2batch(t, 0, attrTxn, p1, nil, vals("c", 3)), marker(t, 3, p1, true)), nil, 0, 100, true, 3},
		{"aborted transaction", cat(v2batch(t, 0, attrTxn, p1, nil, vals("x", 3)), marker(t, 3, p1, false), v2batch(t, 4, 0, -1, nil, vals("after", 2))),
			[]kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: p1, FirstOffset: 0}}, 0, 100, true, 2},
		{"aborted then committed, interleaved with another producer", cat(
			v2batch(t, 0, attrTxn, p1, nil, vals("x", 2)),
			v2batch(t, 2, attrTxn, p2, nil, vals("y", 2)),
			marker(t, 4, p1, false),
			v2batch(t, 5, attrTxn|2, p1, nil, vals("z", 3)),
			marker(t, 8, p2, true),
			marker(t, 9, p1, true)),
			[]kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: p1, FirstOffset: 0}}, 0, 100, true, 5},
		{"last batch cut short", cat(plain, v2batch(t, 5, 0, -1, nil, vals("b", 3))[:70]), nil, 0, 100, true, 5},
		{"batch wholly before pos", cat(plain, v2batch(t, 5, 0, -1, nil, vals("b", 3))), nil, 6, 100, true, 2},
		{"bad checksum", func() []byte { b := slices.Clone(plain); b[len(b)-1] ^= 1; return b }(), nil, 0, 100, false, 0},
		{"not v2", func() []byte { b := slices.Clone(plain); b[16] = 1; return b }(), nil, 0, 100, false, 0},
	} {
		t.Run(test.name, func(t *testing.T) {
			rp := kmsg.FetchResponseTopicPartition{Partition: 3, RecordBatches: test.raw, AbortedTransactions: test.aborted}
			recs, next, ok := decodeV2(nil, &rp, 3, test.pos, test.until, kgo.DefaultDecompressor())
			if ok != test.wantOK {
				t.Fatalf("ok = %v, want %v", ok, test.wantOK)
			}
			if !ok {
				return
			}
			want, wantNext, err := kgoRecords(rp, test.pos, test.until)
			if err != nil {
				t.Fatalf("kgo: %v", err)
			}
			if got := decoded(recs); !slices.Equal(got, want) || len(got) != test.want {
				t.Errorf("decoded %v, kgo reads %v (want %d records)", got, want, test.want)
			}
			if next != wantNext {
				t.Errorf("next %d, kgo's %d", next, wantNext)
			}
			for _, r := range recs {
				if r.Partition != 3 {
					t.Fatalf("record %v: partition %d", r, r.Partition)
				}
			}
		})
	}
}

// FuzzDecodeV2 checks that whatever decodeV2 accepts, it reads exactly as
// franz-go does.
func FuzzDecodeV2(f *testing.F) {
	f.Add(v2batch(f, 0, 0, -1, nil, vals("a", 3)), int64(0), int64(100), int64(-1))
	f.Add(v2batch(f, 10, 2, -1, nil, vals("s", 20)), int64(12), int64(25), int64(-1))
	f.Add(bytes.Join([][]byte{v2batch(f, 0, attrTxn, 5, nil, vals("x", 2)), marker(f, 2, 5, false), v2batch(f, 3, 0, -1, nil, vals("y", 1))}, nil),
		int64(0), int64(100), int64(5))
	f.Fuzz(func(t *testing.T, raw []byte, pos, until, abortedProducer int64) {
		if abortedProducer%2 == 0 {
			// Mutations break checksums, which would stop both readers
			// before the records: mend them, to fuzz what lies behind.
			raw = mendChecksums(raw)
		}
		rp := kmsg.FetchResponseTopicPartition{Partition: 1, RecordBatches: raw}
		if abortedProducer >= 0 {
			rp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: abortedProducer, FirstOffset: pos}}
		}
		recs, next, ok := decodeV2(nil, &rp, 1, pos, until, kgo.DefaultDecompressor())
		if !ok {
			return
		}
		want, wantNext, err := kgoRecords(rp, pos, until)
		if err != nil {
			t.Fatalf("decodeV2 accepted what kgo rejects (%v): %v", err, decoded(recs))
		}
		if got := decoded(recs); !slices.Equal(got, want) || next != wantNext {
			t.Fatalf("decoded %v, next %d; kgo reads %v, next %d", got, next, want, wantNext)
		}
	})
}

// mendChecksums recomputes the checksum of every whole v2 batch of raw.
func mendChecksums(raw []byte) []byte {
	raw = slices.Clone(raw)
	for in := raw; len(in) > 17; {
		total := int32(binary.BigEndian.Uint32(in[8:])) + 12
		if total < batchHeaderLen || int(total) > len(in) {
			break
		}
		binary.BigEndian.PutUint32(in[17:], crc32.Checksum(in[batchCRCFrom:total], castagnoli))
		in = in[total:]
	}
	return raw
}
