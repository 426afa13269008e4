// Package topips is dstream's built-in job: the lecture's third example as a
// product. Every slide it ranks the top-N source IPs by accesses in the
// window, each with its country and its running total since the stream
// began.
//
// Unlike the lecture's literal program, which feeds updateStateByKey the
// windowed counts (so overlapping windows count a line several times), the
// totals here come from every batch's counts: every line counts once.
// Window counts are kept incrementally (ReduceByKeyAndWindow with an
// inverse), so a slide costs the lines that entered and left, not the window.
//
// Lines that do not parse never stop the stream: they go to the dead-letter
// topic, in the same transaction as the batch's results, with headers naming
// the source topic, partition, offset and the reason.
package topips

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/rdd"
)

// Config configures the job.
type Config struct {
	Window time.Duration
	Slide  time.Duration
	TopN   int
	// InputTopic names the source topic in dead-letter headers.
	InputTopic string
	// DeadLetterTopic receives malformed lines ("" drops them, counted).
	DeadLetterTopic string
	// Countries maps IPs to countries; nil for none.
	Countries *rdd.Table[string, string]
	// Pprint prints each ranking to the job's stdout when set.
	Pprint bool
	// OnMalformed is called for every malformed line (for metrics and
	// sampled logs).
	OnMalformed func(rec microbatch.Record, reason error)
}

// Result is one ranked IP of one slide: the value of an output record.
type Result struct {
	BatchTime time.Time `json:"batch_time"`
	Rank      int       `json:"rank"`
	IP        string    `json:"ip"`
	Count     int64     `json:"count"`
	Country   string    `json:"country"`
	Total     int64     `json:"total"`
}

// Unknown is the country of IPs the countries table lacks.
const Unknown = "unknown"

// Dead-letter headers.
const (
	HeaderSourceTopic     = "dstream-source-topic"
	HeaderSourcePartition = "dstream-source-partition"
	HeaderSourceOffset    = "dstream-source-offset"
	HeaderReason          = "dstream-reason"
)

// Pipeline is the job built into a microbatch.Job: its ranked results, and
// lookups of its state while it runs.
type Pipeline struct {
	// Results is the ranked stream, one element per ranked IP and slide.
	Results   *microbatch.Stream[Result]
	totals    *microbatch.StateView[weblog.IP, int64]
	window    *microbatch.StateView[weblog.IP, int64]
	countries *rdd.Table[string, string]
}

// Entry is what the job knows of one IP: its running total, its count in
// the current window and its country.
type Entry struct {
	IP string `json:"ip"`
	// Total counts the IP's lines in every slide committed so far.
	Total int64 `json:"total"`
	// WindowCount counts its lines in the last window computed.
	WindowCount int64  `json:"window_count"`
	Country     string `json:"country"`
	// Batch is the batch the state reflects.
	Batch uint64 `json:"batch"`
}

// Lookup returns what the job knows of ip, as of the last batch it
// computed; ok is false for an IP with no state (never seen, or not a
// valid address).
func (p *Pipeline) Lookup(ip string) (e Entry, ok bool) {
	key, err := weblog.ParseIP(ip)
	if err != nil {
		return Entry{}, false
	}
	total, hasTotal, batch := p.totals.Get(key)
	count, inWindow, windowBatch := p.window.Get(key)
	if !hasTotal && !inWindow {
		return Entry{}, false
	}
	return Entry{IP: key.String(), Total: total, WindowCount: count, Country: p.country(key.String()),
		Batch: max(batch, windowBatch)}, true
}

func (p *Pipeline) country(ip string) string {
	if p.countries != nil {
		if c, ok := p.countries.Get(ip); ok {
			return c
		}
	}
	return Unknown
}

// Build adds the job to j, reading src and writing results and dead letters
// to sink.
//
// IPs are keyed as weblog.IP, a word each rather than a string: state holds
// one entry per distinct IP in the running totals, and the window and
// per-batch counts hash them for every line.
func Build(j *microbatch.Job, src microbatch.Source, sink microbatch.Sink, cfg Config) *Pipeline {
	hits, bad := microbatch.TryMap(j.Records(src), func(r microbatch.Record) (microbatch.Pair[weblog.IP, int64], error) {
		ip, err := weblog.SourceIP(unsafe.String(unsafe.SliceData(r.Value), len(r.Value)))
		return microbatch.KV(ip, int64(1)), err
	})
	if cfg.OnMalformed != nil {
		bad.ForeachBatch(func(_ context.Context, _ microbatch.BatchInfo, batch []microbatch.Failure[microbatch.Record]) error {
			for _, f := range batch {
				cfg.OnMalformed(f.Elem, f.Err)
			}
			return nil
		})
	}
	if cfg.DeadLetterTopic != "" {
		microbatch.Write(bad, sink, func(_ microbatch.BatchInfo, f microbatch.Failure[microbatch.Record]) microbatch.Message {
			return microbatch.Message{Topic: cfg.DeadLetterTopic, Value: f.Elem.Value, MayTruncate: true, Headers: []microbatch.Header{
				{Key: HeaderSourceTopic, Value: []byte(cfg.InputTopic)},
				{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(f.Elem.Partition), 10)},
				{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, f.Elem.Offset, 10)},
				{Key: HeaderReason, Value: []byte(f.Err.Error())},
			}}
		})
	}

	// Every line is counted once, into its batch's counts; the window counts
	// and the totals both start from those, not from the lines. The totals
	// take every batch's counts, whatever the slide: so a changed window or
	// slide leaves them as they are, and only the window counts are rebuilt
	// (docs/checkpoint.md). The operators are named, so that their state
	// stays theirs as the job changes.
	batchCounts := microbatch.ReduceByKey(hits, add)
	// In a sharded job (docs/scale-out.md) each batch's counts go to the
	// task that owns their IPs; there they are merged, and the window
	// counts and totals kept. Unsharded, the exchange passes them on.
	counts := microbatch.ReduceByKey(microbatch.ExchangeByKey(batchCounts, "counts"), add)
	windowCounts := microbatch.ReduceByKeyAndWindow(counts, add, sub, cfg.Window, cfg.Slide,
		func(p microbatch.Pair[weblog.IP, int64]) bool { return p.Value > 0 }).Named("window-counts")
	// A total without new counts stays as it is: the operator need not
	// call the function for the millions of IPs idle in a batch.
	totals := microbatch.UpdateStateByKey(counts, func(values []int64, total int64, _ bool) (int64, bool) {
		for _, v := range values {
			total += v
		}
		return total, true
	}, microbatch.SkipIdleKeys[weblog.IP, int64]()).Named("totals")
	// Each shard ranks its IPs by window count, then looks up the totals of
	// the N it ranked (ranking does not depend on the totals, and joining
	// first would look up every IP of the window: millions, with a large
	// key space); the final task ranks the shards' rankings. An IP's window
	// count and total are whole on its shard, so the global top N is among
	// the local ones.
	local := microbatch.Join(microbatch.Transform(windowCounts, func(batch []microbatch.Pair[weblog.IP, int64]) []microbatch.Pair[weblog.IP, int64] {
		return ranking(batch, cfg.TopN, func(kv microbatch.Pair[weblog.IP, int64]) int64 { return kv.Value })
	}), totals)
	top := microbatch.Transform(microbatch.Gather(local, "top"), func(batch []microbatch.Pair[weblog.IP, microbatch.Pair[int64, int64]]) []microbatch.Pair[weblog.IP, microbatch.Pair[int64, int64]] {
		return ranking(batch, cfg.TopN, func(kv microbatch.Pair[weblog.IP, microbatch.Pair[int64, int64]]) int64 { return kv.Value.Key })
	})
	if cfg.Pprint {
		microbatch.Map(top, func(kv microbatch.Pair[weblog.IP, microbatch.Pair[int64, int64]]) microbatch.Pair[weblog.IP, int64] {
			return microbatch.KV(kv.Key, kv.Value.Key)
		}).Pprint(10)
	}
	p := &Pipeline{countries: cfg.Countries}
	p.Results = microbatch.TransformTime(top,
		func(t time.Time, batch []microbatch.Pair[weblog.IP, microbatch.Pair[int64, int64]]) []Result {
			out := make([]Result, len(batch))
			for i, kv := range batch {
				ip := kv.Key.String()
				out[i] = Result{BatchTime: t.UTC(), Rank: i + 1, IP: ip, Count: kv.Value.Key, Country: p.country(ip), Total: kv.Value.Value}
			}
			return out
		})
	microbatch.Write(p.Results, sink, func(_ microbatch.BatchInfo, r Result) microbatch.Message { return Encode(r) })
	// Both streams are stateful by construction: the views cannot fail.
	p.totals, _ = microbatch.ViewState(totals)
	p.window, _ = microbatch.ViewState(windowCounts)
	return p
}

func add(a, b int64) int64 { return a + b }
func sub(a, b int64) int64 { return a - b }

// rankChunk is the least elements a goroutine of ranking ranks.
const rankChunk = 1 << 16

// ranking returns the n best IPs of batch: by count descending, then IP
// text ascending. It selects instead of sorting the whole window: O(len × n)
// for a small n. A large window (600k IPs at 1M distinct keys) is ranked in
// chunks on all cores, then their bests together, as Spark's takeOrdered
// ranks each partition: IPs are distinct, so the order is total and the n
// best are the same however the window is split.
func ranking[V any](batch []microbatch.Pair[weblog.IP, V], n int, count func(microbatch.Pair[weblog.IP, V]) int64) []microbatch.Pair[weblog.IP, V] {
	chunks := min(runtime.GOMAXPROCS(0), len(batch)/rankChunk)
	if chunks < 2 {
		return rankSerially(batch, n, count)
	}
	bests := make([][]microbatch.Pair[weblog.IP, V], chunks)
	var wg sync.WaitGroup
	for c := range chunks {
		wg.Go(func() {
			bests[c] = rankSerially(batch[len(batch)*c/chunks:len(batch)*(c+1)/chunks], n, count)
		})
	}
	wg.Wait()
	return rankSerially(slices.Concat(bests...), n, count)
}

// rankSerially is ranking on one goroutine.
func rankSerially[V any](batch []microbatch.Pair[weblog.IP, V], n int, count func(microbatch.Pair[weblog.IP, V]) int64) []microbatch.Pair[weblog.IP, V] {
	better := func(a, b microbatch.Pair[weblog.IP, V]) bool {
		if ca, cb := count(a), count(b); ca != cb {
			return ca > cb
		}
		return a.Key.Compare(b.Key) < 0
	}
	best := make([]microbatch.Pair[weblog.IP, V], 0, n+1)
	// Once n are ranked, the last one's count and IP are what an IP must
	// beat; most of a window does not, and is rejected on its count alone,
	// or (ties, as in a window where every IP was seen once) its text.
	var (
		floorCount int64
		floorIP    weblog.IP
		// The last one's text key, when a dotted quad: a tie with it (a
		// window where every IP was seen once ties 600k IPs) is then one
		// integer comparison.
		floorKey   uint32
		floorPlain bool
	)
	for _, kv := range batch {
		if len(best) == n {
			c := count(kv)
			if c < floorCount {
				continue
			}
			if c == floorCount {
				if k, ok := kv.Key.TextKey(); ok && floorPlain {
					if k >= floorKey {
						continue
					}
				} else if kv.Key.Compare(floorIP) >= 0 {
					continue
				}
			}
		}
		i := len(best)
		for i > 0 && better(kv, best[i-1]) {
			i--
		}
		best = slices.Insert(best, i, kv)
		if len(best) > n {
			best = best[:n]
		}
		if len(best) == n {
			floorCount, floorIP = count(best[n-1]), best[n-1].Key
			floorKey, floorPlain = floorIP.TextKey()
		}
	}
	return best
}

// LoadCountries reads a CSV of ip,country lines; blank lines and a header
// line "ip,country" are skipped.
func LoadCountries(r io.Reader) (*rdd.Table[string, string], error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var pairs []microbatch.Pair[string, string]
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("countries: %w", err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) < 2 {
			return nil, fmt.Errorf("countries: line %d: want ip,country", line)
		}
		ip, country := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		if line == 1 && strings.EqualFold(ip, "ip") {
			continue
		}
		pairs = append(pairs, microbatch.KV(ip, country))
	}
	return rdd.NewTable(pairs), nil
}

// Encode renders a result as its output message: key = IP, JSON value.
func Encode(r Result) microbatch.Message {
	v, _ := json.Marshal(r) // Result always encodes
	return microbatch.Message{Key: []byte(r.IP), Value: v}
}
