package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The raw fetch limit: what the broker can serve. dstream reads faster than
// a plain franz-go consumer (it skips kgo's per-record allocation), so that
// consumer is no ceiling; the broker's fetch path is. This contender asks
// for the same partitions and offset ranges with raw Fetch requests and
// throws the bytes away: no decompression, no record decoding, no
// checksum. It walks the record batches' fixed headers only, to know where
// the next fetch starts and to check that it saw every offset once.

// fetchPartitionMaxBytes is how much of one partition a response may carry:
// large, so that round trips weigh little (the broker sends the log
// segment's bytes as they lie on disk).
const fetchPartitionMaxBytes = 32 << 20

// runFetch runs the raw fetch limit as a child process of its own.
func (b *bench) runFetch(ctx context.Context) error {
	r, rep, err := b.fetchRow(ctx, b.main, "fetch")
	if err != nil {
		return err
	}
	b.rows = append(b.rows, r)
	b.notes = append(b.notes, fmt.Sprintf("fetch (raw limit): %.0f MB of record batches (as stored: compressed) at %.0f MB/s",
		float64(rep.Bytes)/1e6, float64(rep.Bytes)/1e6/rep.Seconds))
	return nil
}

// fetchRow runs the raw fetch limit on d as a child named name.
func (b *bench) fetchRow(ctx context.Context, d *dataset, name string) (row, childReport, error) {
	report := filepath.Join(b.dir, name+"-report.json")
	cpu0 := b.brokerCPU()
	p, err := start(b.dir, name, exec.CommandContext(ctx, b.self, "child-fetch",
		"-brokers", b.broker.Addr(), "-topic", d.topic, "-ends", endsFlag(d.ends),
		"-report", report), false)
	if err != nil {
		return row{}, childReport{}, err
	}
	if err := p.wait(30 * time.Minute); err != nil {
		return row{}, childReport{}, err
	}
	r, err := readReport(report)
	if err != nil {
		return row{}, childReport{}, err
	}
	ok, detail := true, fmt.Sprintf("%d lines in %d record batches, every offset once (bytes not decoded, so IPs not counted)", r.Lines, r.Batches)
	if r.Lines != d.lines || r.Problem != "" {
		ok, detail = false, fmt.Sprintf("%d lines of %d; %s", r.Lines, d.lines, r.Problem)
	}
	return row{name: name, lines: r.Lines, seconds: r.Seconds, rss: p.peakRSS(), correct: ok, detail: detail,
		cpu: p.cpuSeconds(), brokerCPU: b.brokerCPU() - cpu0}, r, nil
}

// childFetch reads every partition of the topic up to its end offset with
// raw Fetch requests, one connection and one request in flight per
// partition, and discards the record batches.
func childFetch(args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	brokers := fs.String("brokers", "", "")
	topic := fs.String("topic", "", "")
	endsArg := fs.String("ends", "", "end offset of every partition, comma-separated")
	reportPath := fs.String("report", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var ends []int64
	for _, s := range strings.Split(*endsArg, ",") {
		end, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		ends = append(ends, end)
	}
	ctx := context.Background()
	// The topic id, which Fetch v13+ names topics by: looked up before the
	// clock starts, as a consumer learns it from its metadata.
	adm, err := kgo.NewClient(kgo.SeedBrokers(*brokers))
	if err != nil {
		return err
	}
	details, err := kadm.NewClient(adm).ListTopics(ctx, *topic)
	adm.Close()
	if err != nil {
		return err
	}
	id := details[*topic].ID

	start := time.Now()
	results := make([]fetchResult, len(ends))
	var wg sync.WaitGroup
	for p, end := range ends {
		wg.Go(func() { results[p] = fetchPartition(ctx, *brokers, *topic, id, int32(p), end) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	var r childReport
	r.Seconds = elapsed.Seconds()
	var problems []string
	for _, res := range results {
		r.Lines += res.records
		r.Batches += res.batches
		r.Bytes += res.bytes
		if res.err != nil {
			problems = append(problems, res.err.Error())
		}
	}
	r.Problem = strings.Join(problems, "; ")
	fmt.Printf("fetch: %d lines, %d bytes in %v\n", r.Lines, r.Bytes, elapsed)
	return writeReport(*reportPath, r)
}

type fetchResult struct {
	records, bytes int64
	batches        int
	err            error
}

// fetchPartition fetches [0, end) of one partition.
func fetchPartition(ctx context.Context, brokers, topic string, id [16]byte, p int32, end int64) (res fetchResult) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.BrokerMaxReadBytes(2*fetchPartitionMaxBytes))
	if err != nil {
		res.err = err
		return res
	}
	defer cl.Close()
	var next int64
	for next < end {
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis = 500
		req.MinBytes = 1
		req.MaxBytes = fetchPartitionMaxBytes
		// No session: a fetch session saves resending the partition list,
		// which is one partition here.
		req.SessionEpoch = -1
		t := kmsg.NewFetchRequestTopic()
		t.Topic, t.TopicID = topic, id
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = p, next, fetchPartitionMaxBytes
		t.Partitions = append(t.Partitions, fp)
		req.Topics = append(req.Topics, t)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			res.err = fmt.Errorf("partition %d at %d: %w", p, next, err)
			return res
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			res.err = fmt.Errorf("partition %d at %d: %w", p, next, err)
			return res
		}
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					res.err = fmt.Errorf("partition %d at %d: %w", p, next, err)
					return res
				}
				n, records, batches, err := walkBatches(rp.RecordBatches, next, end)
				if err != nil {
					res.err = fmt.Errorf("partition %d: %w", p, err)
					return res
				}
				next = n
				res.records += records
				res.batches += batches
				res.bytes += int64(len(rp.RecordBatches))
			}
		}
	}
	return res
}

// walkBatches steps over the complete record batches in b, which must
// start at offset next, using only their fixed v2 headers: base offset
// (8 bytes), length (4), … last offset delta (4 at byte 23), … record
// count (4 at byte 57). It returns the offset after the last batch and the
// records of the batches that start before end. A response may end in a
// partial batch, which the next fetch reads again.
func walkBatches(b []byte, next, end int64) (after, records int64, batches int, err error) {
	const header = 61
	for len(b) >= 12 {
		base := int64(binary.BigEndian.Uint64(b))
		length := int(binary.BigEndian.Uint32(b[8:]))
		if len(b) < 12+length {
			break
		}
		if 12+length < header {
			return next, records, batches, fmt.Errorf("batch at %d: %d bytes, shorter than a v2 header", base, length)
		}
		if magic := b[16]; magic != 2 {
			return next, records, batches, fmt.Errorf("batch at %d: magic %d, not 2", base, magic)
		}
		if base != next {
			return next, records, batches, fmt.Errorf("batch at %d, want one at %d: offsets skipped or repeated", base, next)
		}
		last := base + int64(binary.BigEndian.Uint32(b[23:]))
		if base < end {
			records += int64(binary.BigEndian.Uint32(b[57:]))
			batches++
		}
		next = last + 1
		b = b[12+length:]
	}
	if batches == 0 && next < end && len(b) > 0 {
		return next, records, batches, errors.New("a batch larger than the fetch's maximum")
	}
	return next, records, batches, nil
}
