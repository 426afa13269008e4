package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/weblog"
)

const (
	partitions = 4
	interval   = 10 * time.Second // batch interval and slide of the reference job
	window     = 30 * time.Second
	topN       = 3
)

// epoch is T0: the event time of offset 0 of every partition, aligned to the
// batch interval, so that batch b (1-based) covers the event times
// [T0+(b-1)·10s, T0+b·10s) and ends at its batch time T0+b·10s.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// dataset is a pre-loaded input topic and everything needed to check a
// contender's answer without trusting any contender.
type dataset struct {
	topic   string
	lines   int64
	parts   int     // partitions
	ends    []int64 // end offset of every partition (records in it)
	perPart int64   // records of a partition that one batch takes
	batches int     // batches that drain the topic at perPart
	ips     []string
	seq     [][]uint32 // by partition and offset: the line's IP, as an index into ips
	totals  []int64    // lines per IP index
	// cycle, when set, is the cyclingLines behind a topic whose answer
	// follows from its shape (line i has IP number i mod cycle.n), so that
	// nothing per IP is recorded: ips, seq and totals stay empty.
	cycle *cyclingLines
	// countries maps half of the IPs to a country code (the rest are
	// "unknown"); written as CSV to countriesFile.
	countries     map[string]string
	countriesFile string
	keepSeq       bool
}

// ratePerPartition is the rate cap (records/s per partition) that makes a
// batch of one interval take perPart records of every partition.
func (d *dataset) ratePerPartition() int64 { return d.perPart / int64(interval/time.Second) }

// timestamp is the event time the pre-load gives offset off of a partition:
// perPart records span one interval.
func (d *dataset) timestamp(off int64) time.Time {
	return epoch.Add(time.Duration(off * int64(interval/time.Millisecond) / d.perPart * int64(time.Millisecond)))
}

// batchRange is the offsets [from, until) of partition p in batch b
// (1-based), by the ingest rate-cap rule.
func (d *dataset) batchRange(p, b int) (int64, int64) {
	from := min(int64(b-1)*d.perPart, d.ends[p])
	until := min(int64(b)*d.perPart, d.ends[p])
	return from, until
}

// withBatches returns the dataset as batches of about batches of its lines
// each drain it: the same topic and answer, another rate cap.
func (d *dataset) withBatches(batches int) *dataset {
	c := *d
	c.perPart, c.batches = sizeBatches(d.lines, batches, d.parts)
	return &c
}

// sizeBatches picks the per-partition batch size so that lines drain in
// about batches batches: a multiple of the interval in seconds, so that the
// rate cap is a whole number of records per second.
func sizeBatches(lines int64, batches, parts int) (perPart int64, n int) {
	secs := int64(interval / time.Second)
	per := (lines + int64(parts) - 1) / int64(parts)
	perPart = max(secs, (per+int64(batches)-1)/int64(batches))
	perPart = (perPart + secs - 1) / secs * secs
	return perPart, int((per + perPart - 1) / perPart)
}

// lineSource yields the lines to pre-load: the weblog generator for the
// throughput runs, or distinct IPs in turn for the state-size runs.
type lineSource interface {
	next(dst []byte) []byte
}

type generatorLines struct{ g *weblog.Generator }

func (g generatorLines) next(dst []byte) []byte { return g.g.Append(dst) }

// cyclingLines gives every line the next of n distinct IPs in turn, so that
// a run's state holds exactly n keys (the Zipf generator would leave most of
// a large key space unused), and every batch of b lines changes min(b, n)
// keys.
type cyclingLines struct {
	n, i int
}

func (c *cyclingLines) next(dst []byte) []byte {
	k := c.i % c.n
	c.i++
	dst = append(dst, "2016-12-06T08:58:35.318+0000 "...)
	dst = appendCycleIP(dst, k)
	dst = append(dst, " 200 GET /codemove/TTCENCUFMH3C 0.026"...)
	return dst
}

// appendCycleIP appends IP number k of cyclingLines: 10.0.0.7 onwards, up to
// 2^24 of them.
func appendCycleIP(dst []byte, k int) []byte {
	dst = strconv.AppendInt(dst, int64(10+k>>16), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(k>>8&0xff), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(k&0xff), 10)
	return append(dst, ".7"...)
}

// cycleIndex is the inverse of appendCycleIP: the number of the IP, or
// false for text appendCycleIP never writes.
func cycleIndex(ip string) (int, bool) {
	f := strings.Split(ip, ".")
	if len(f) != 4 || f[3] != "7" {
		return 0, false
	}
	var n [3]int
	for i := range n {
		v, err := strconv.Atoi(f[i])
		if err != nil || v < 0 || v > 255 || strconv.Itoa(v) != f[i] {
			return 0, false
		}
		n[i] = v
	}
	if n[0] < 10 {
		return 0, false
	}
	return (n[0]-10)<<16 | n[1]<<8 | n[2], true
}

// checkCycleTotals checks the running totals of a run over all lines of a
// cyclingLines topic of n IPs: IP k counts lines/n lines, one more for
// k < lines mod n. It is the harness's answer, computed from the topic's
// shape, not from any contender.
func checkCycleTotals(n int, lines int64, each func(yield func(ip string, total int64) bool)) (ok bool, detail string) {
	seen := make([]bool, n)
	var counted, bad, unknown, keys int64
	example := ""
	each(func(ip string, total int64) bool {
		keys++
		counted += total
		k, ok := cycleIndex(ip)
		if !ok || k >= n {
			unknown++
			if example == "" {
				example = fmt.Sprintf("%s is no IP of the input", ip)
			}
			return true
		}
		want := lines / int64(n)
		if int64(k) < lines%int64(n) {
			want++
		}
		if seen[k] {
			bad++
			if example == "" {
				example = fmt.Sprintf("%s twice", ip)
			}
		} else if total != want {
			bad++
			if example == "" {
				example = fmt.Sprintf("%s: %d, want %d", ip, total, want)
			}
		}
		seen[k] = true
		return true
	})
	want := min(int64(n), lines)
	if bad == 0 && unknown == 0 && keys == want && counted == lines {
		return true, fmt.Sprintf("%d lines, %d IPs: every total right", counted, keys)
	}
	return false, fmt.Sprintf("%d lines counted of %d, %d IPs of %d; %d totals wrong, %d unknown IPs (e.g. %s)",
		counted, lines, keys, want, bad, unknown, example)
}

// ipField returns the second space-separated field of line.
func ipField(line []byte) []byte {
	i := 0
	for i < len(line) && line[i] != ' ' {
		i++
	}
	j := i + 1
	for j < len(line) && line[j] != ' ' {
		j++
	}
	if i >= len(line) {
		return nil
	}
	return line[i+1 : min(j, len(line))]
}

// loadSpec says what preload writes.
type loadSpec struct {
	topic   string
	lines   int64
	batches int // batches of one interval that drain the topic
	parts   int // partitions (default 4)
	src     lineSource
	// keepSeq records every line's IP, for rankings to check against.
	keepSeq bool
}

// preload creates the topic and produces lines to it, line i to partition
// i mod parts, each stamped with its event time. It returns the dataset
// with the expected answers: from what it recorded of every line, or, for
// a cyclingLines source without keepSeq, from the topic's shape.
func preload(ctx context.Context, brokers string, spec loadSpec, dir string) (*dataset, error) {
	parts := cmp.Or(spec.parts, partitions)
	topic, lines, src, keepSeq := spec.topic, spec.lines, spec.src, spec.keepSeq
	d := &dataset{topic: topic, lines: lines, parts: parts, ends: make([]int64, parts), keepSeq: keepSeq}
	d.perPart, d.batches = sizeBatches(lines, spec.batches, parts)
	analytic := false
	if c, ok := src.(*cyclingLines); ok && !keepSeq {
		d.cycle, analytic = c, true
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(250_000),
		kgo.ProducerBatchMaxBytes(1<<20),
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// Event times lie in the past: keep the records whatever their age.
	forever := "-1"
	if _, err := adm.CreateTopic(ctx, int32(parts), 1, map[string]*string{"retention.ms": &forever}, topic); err != nil {
		return nil, fmt.Errorf("create topic %s: %w", topic, err)
	}
	index := map[string]uint32{}
	if keepSeq {
		d.seq = make([][]uint32, parts)
		for p := range d.seq {
			d.seq[p] = make([]uint32, 0, lines/int64(parts)+1)
		}
	}
	var (
		mu       sync.Mutex
		firstErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}
	}
	next := make([]int64, parts)
	for i := int64(0); i < lines; i++ {
		line := src.next(nil)
		var k uint32
		if !analytic {
			ip := ipField(line)
			var ok bool
			k, ok = index[string(ip)]
			if !ok {
				k = uint32(len(d.ips))
				index[string(ip)] = k
				d.ips = append(d.ips, string(ip))
				d.totals = append(d.totals, 0)
			}
			d.totals[k]++
		}
		p := int32(i % int64(parts))
		off := next[p]
		next[p]++
		if keepSeq {
			d.seq[p] = append(d.seq[p], k)
		}
		cl.Produce(ctx, &kgo.Record{Partition: p, Value: line, Timestamp: d.timestamp(off)}, promise)
		if i%1_000_000 == 0 && i > 0 {
			mu.Lock()
			err := firstErr
			mu.Unlock()
			if err != nil {
				return nil, fmt.Errorf("produce to %s: %w", topic, err)
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, fmt.Errorf("produce to %s: %w", topic, firstErr)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	for p := range parts {
		o, _ := ends.Lookup(topic, int32(p))
		d.ends[p] = o.Offset
		if o.Offset != next[p] {
			return nil, fmt.Errorf("%s[%d] ends at %d, produced %d", topic, p, o.Offset, next[p])
		}
	}
	// Countries for every other IP, in order of first appearance (of the
	// first 10k IPs of a topic without recorded IPs: the countries table is
	// an input, not state, and the same for every size).
	codes := []string{"PT", "ES", "FR", "DE", "IT", "NL", "BE", "IE", "GB", "US", "CA", "BR", "JP", "IN", "AU", "PL"}
	d.countries = map[string]string{}
	var sb strings.Builder
	ips := d.ips
	if analytic {
		for k := range min(d.cycle.n, 10_000) {
			ips = append(ips, string(appendCycleIP(nil, k)))
		}
	}
	for i, ip := range ips {
		if i%2 == 0 {
			c := codes[i/2%len(codes)]
			d.countries[ip] = c
			sb.WriteString(ip + "," + c + "\n")
		}
	}
	d.countriesFile = dir + "/countries-" + topic + ".csv"
	if err := os.WriteFile(d.countriesFile, []byte(sb.String()), 0o644); err != nil {
		return nil, err
	}
	return d, nil
}

// result is one ranked IP of one window, as every contender reports it.
type result struct {
	Batch   int    `json:"batch"` // the window ends at the batch's time
	Rank    int    `json:"rank"`
	IP      string `json:"ip"`
	Count   int64  `json:"count"`
	Total   int64  `json:"total"`
	Country string `json:"country"`
}

// expected recomputes the top-N of every window of the reference job, with
// running totals as of the window's batch, from the pre-loaded sequence.
func (d *dataset) expected() [][]result {
	perBatch := make([]map[uint32]int64, d.batches+1)
	for b := 1; b <= d.batches; b++ {
		m := map[uint32]int64{}
		for p := range d.parts {
			from, until := d.batchRange(p, b)
			for _, k := range d.seq[p][from:until] {
				m[k]++
			}
		}
		perBatch[b] = m
	}
	w := int(window / interval)
	totals := map[uint32]int64{}
	out := make([][]result, d.batches+1)
	for b := 1; b <= d.batches; b++ {
		for k, c := range perBatch[b] {
			totals[k] += c
		}
		counts := map[uint32]int64{}
		for x := max(1, b-w+1); x <= b; x++ {
			for k, c := range perBatch[x] {
				counts[k] += c
			}
		}
		ranked := make([]result, 0, len(counts))
		for k, c := range counts {
			ranked = append(ranked, result{IP: d.ips[k], Count: c, Total: totals[k]})
		}
		slices.SortFunc(ranked, func(a, b result) int {
			if c := cmp.Compare(b.Count, a.Count); c != 0 {
				return c
			}
			return strings.Compare(a.IP, b.IP)
		})
		ranked = ranked[:min(topN, len(ranked))]
		for i := range ranked {
			ranked[i].Batch, ranked[i].Rank = b, i+1
			ranked[i].Country = cmp.Or(d.countries[ranked[i].IP], "unknown")
		}
		out[b] = ranked
	}
	return out
}

// checkTotals compares a contender's final per-IP totals with the input.
func (d *dataset) checkTotals(got map[string]int64) (ok bool, detail string) {
	if d.cycle != nil {
		return checkCycleTotals(d.cycle.n, d.lines, func(yield func(string, int64) bool) {
			for ip, n := range got {
				if !yield(ip, n) {
					return
				}
			}
		})
	}
	var lines int64
	for _, c := range got {
		lines += c
	}
	bad := 0
	example := ""
	for k, ip := range d.ips {
		if got[ip] != d.totals[k] {
			bad++
			if example == "" {
				example = fmt.Sprintf("%s: %d, want %d", ip, got[ip], d.totals[k])
			}
		}
	}
	extra := 0
	if len(got) > len(d.ips) {
		extra = len(got) - len(d.ips)
	}
	if bad == 0 && extra == 0 {
		return true, fmt.Sprintf("%d lines, %d IPs: every total right", lines, len(got))
	}
	return false, fmt.Sprintf("%d lines counted of %d; %d of %d IP totals wrong (e.g. %s), %d unknown IPs",
		lines, d.lines, bad, len(d.ips), example, extra)
}

// checkResults compares a contender's window rankings with the expected
// ones for batches 1..upTo. withTotals also compares running totals and
// countries.
func checkResults(want [][]result, got map[int][]result, upTo int, withTotals bool) (ok bool, detail string) {
	return checkRankings(want, got, upTo, withTotals, withTotals)
}

// checkRankings compares a contender's window rankings with the expected
// ones for batches 1..upTo: ranks, IPs and counts, and running totals and
// countries as asked.
func checkRankings(want [][]result, got map[int][]result, upTo int, totals, countries bool) (ok bool, detail string) {
	bad, example := 0, ""
	for b := 1; b <= upTo; b++ {
		g := got[b]
		slices.SortFunc(g, func(x, y result) int { return x.Rank - y.Rank })
		w := want[b]
		same := len(g) == len(w)
		for i := 0; same && i < len(w); i++ {
			same = g[i].Rank == w[i].Rank && g[i].IP == w[i].IP && g[i].Count == w[i].Count &&
				(!totals || g[i].Total == w[i].Total) && (!countries || g[i].Country == w[i].Country)
		}
		if !same {
			bad++
			if example == "" {
				example = fmt.Sprintf("window %d: got %v, want %v", b, g, w)
			}
		}
	}
	if bad == 0 {
		return true, fmt.Sprintf("all %d windows' top-%d right", upTo, topN)
	}
	return false, fmt.Sprintf("%d of %d windows wrong; %s", bad, upTo, example)
}

// readTotals reads "ip<TAB or space>count" lines.
func readTotals(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		n, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, sc.Text(), err)
		}
		out[fields[0]] += n
	}
	return out, sc.Err()
}

func writeTotals(path string, totals map[string]int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for ip, n := range totals {
		fmt.Fprintf(w, "%s %d\n", ip, n)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
