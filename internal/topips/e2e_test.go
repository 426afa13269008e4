package topips_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/internal/wiring"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/rdd"
	"github.com/dstream-io/dstream/sinks"
	"github.com/dstream-io/dstream/state"
)

type runner func() int

func (r runner) Run() int { return r() }

func TestMain(m *testing.M) {
	os.Exit(kafkatest.Main(runner(func() int {
		return redistest.Main(m, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"})
	}), kafkatest.Options{}))
}

const (
	partitions = 4
	capPerPart = 40 // records per partition per 1 s batch
	window     = 3 * time.Second
	slide      = time.Second
	topN       = 3
)

// t0 makes the first batch time 2026-01-01T00:00:01Z.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.UTC)

var seq atomic.Int64

// fixture is an input topic of known lines on the real broker, empty output
// and dead-letter topics, and the job's checkpoint in the real Redis.
type fixture struct {
	broker         *kafkatest.Broker
	redis          *redistest.Server
	in, out, dlq   string
	job            string
	lines          [][]string // per partition, by offset
	malformed      int
	countries      *rdd.Table[string, string]
	countriesByIP  map[string]string
	uninterrupted  map[uint64][]topips.Result
	batchesToDrain uint64
}

func newFixture(t *testing.T, perPartition int) *fixture {
	t.Helper()
	f := &fixture{broker: kafkatest.Shared(t), redis: redistest.Shared(t)}
	n := seq.Add(1)
	f.in, f.out, f.dlq, f.job = fmt.Sprintf("logs-%d", n), fmt.Sprintf("top-%d", n), fmt.Sprintf("dlq-%d", n), fmt.Sprintf("job-%d", n)
	ctx := context.Background()
	for _, tp := range []struct {
		name string
		n    int32
	}{{f.in, partitions}, {f.out, 2}, {f.dlq, 1}} {
		if err := f.broker.CreateTopic(ctx, tp.name, tp.n, nil); err != nil {
			t.Fatal(err)
		}
	}
	gen := weblog.NewGenerator(uint64(n), 40)
	bad := []string{"", "garbage", "2016-12-06T08:58:35.318+0000 999.1.1.1 200 GET / 0.1", "d 1.2.3.4 200 GET /\xff 0.1"}
	f.lines = make([][]string, partitions)
	var recs []*kgo.Record
	for p := range partitions {
		for i := range perPartition {
			line := gen.Line()
			if (i+p)%23 == 7 {
				line = bad[(i+p)%len(bad)]
				f.malformed++
			}
			f.lines[p] = append(f.lines[p], line)
			recs = append(recs, &kgo.Record{Topic: f.in, Partition: int32(p), Value: []byte(line)})
		}
	}
	cl, err := f.broker.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Countries for half of the IPs; the others are "unknown".
	f.countriesByIP = map[string]string{}
	var pairs []microbatch.Pair[string, string]
	for _, part := range f.lines {
		for _, l := range part {
			if e, err := weblog.Parse(l); err == nil && len(f.countriesByIP) < 20 {
				if _, ok := f.countriesByIP[e.IP]; !ok {
					f.countriesByIP[e.IP] = "C" + strconv.Itoa(len(f.countriesByIP))
					pairs = append(pairs, microbatch.KV(e.IP, f.countriesByIP[e.IP]))
				}
			}
		}
	}
	f.countries = rdd.NewTable(pairs)
	f.batchesToDrain = uint64((perPartition+capPerPart-1)/capPerPart) + uint64(window/time.Second) - 1
	f.uninterrupted = f.expected(f.batchesToDrain)
	return f
}

// expected recomputes every batch's ranking from the input lines, the
// rate-cap formula and the window, independently of the engine.
func (f *fixture) expected(batches uint64) map[uint64][]topips.Result {
	first := t0.Truncate(time.Second).Add(time.Second)
	perBatch := make([]map[string]int64, batches+1)
	for b := uint64(1); b <= batches; b++ {
		perBatch[b] = map[string]int64{}
		for p := range partitions {
			for off := int(b-1) * capPerPart; off < int(b)*capPerPart && off < len(f.lines[p]); off++ {
				if e, err := weblog.Parse(f.lines[p][off]); err == nil {
					perBatch[b][e.IP]++
				}
			}
		}
	}
	out := map[uint64][]topips.Result{}
	totals := map[string]int64{}
	w := uint64(window / time.Second)
	for b := uint64(1); b <= batches; b++ {
		for ip, c := range perBatch[b] {
			totals[ip] += c
		}
		counts := map[string]int64{}
		for k := b - min(b-1, w-1); k <= b; k++ {
			for ip, c := range perBatch[k] {
				counts[ip] += c
			}
		}
		var ranked []topips.Result
		for ip, c := range counts {
			ranked = append(ranked, topips.Result{IP: ip, Count: c})
		}
		slices.SortFunc(ranked, func(a, b topips.Result) int {
			if c := cmp.Compare(b.Count, a.Count); c != 0 {
				return c
			}
			return strings.Compare(a.IP, b.IP)
		})
		ranked = ranked[:min(topN, len(ranked))]
		for i := range ranked {
			ranked[i].Rank = i + 1
			ranked[i].BatchTime = first.Add(time.Duration(b-1) * time.Second)
			ranked[i].Total = totals[ranked[i].IP]
			ranked[i].Country = cmp.Or(f.countriesByIP[ranked[i].IP], topips.Unknown)
		}
		out[b] = ranked
	}
	return out
}

func (f *fixture) store(t *testing.T) *state.Redis {
	t.Helper()
	s, err := state.NewRedis(f.redis.Client(), state.Config{Job: f.job, LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs the job for up to batches new batches with store.
func (f *fixture) run(t *testing.T, batches uint64, store microbatch.Store) error {
	t.Helper()
	ctx := context.Background()
	cl, err := f.broker.Client(kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	kafkaSrc, err := ingest.New(cl, ingest.Config{Topic: f.in, BatchInterval: time.Second, MaxRatePerPartition: capPerPart})
	if err != nil {
		t.Fatal(err)
	}
	src := &planCheckingSource{Source: kafkaSrc, t: t, plans: f.store(t)}
	sink, err := wiring.NewSink(ctx, wiring.SinkConfig{Job: f.job, Output: f.out, DeadLetters: f.dlq}, []kgo.Opt{kgo.SeedBrokers(f.broker.Addr())}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	job := microbatch.NewJob(time.Second, microbatch.WithClock(microbatch.NewVirtualClock(t0)),
		microbatch.WithBatchLimit(batches), microbatch.WithStdout(io.Discard))
	job.Checkpoint(store)
	topips.Build(job, src, sink, topips.Config{Window: window, Slide: slide, TopN: topN,
		InputTopic: f.in, DeadLetterTopic: f.dlq, Countries: f.countries})
	return job.Run(ctx)
}

// readAll reads every committed record of topic.
func (f *fixture) readAll(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := f.broker.Client()
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	offsets := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		offsets[o.Partition] = kgo.NewOffset().AtStart()
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	rd, err := f.broker.Client(kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out []*kgo.Record
	for len(remaining) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: %v (still waiting for %v)", topic, err, remaining)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := remaining[r.Partition]; ok && r.Offset >= end-1 {
				delete(remaining, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkOutput asserts that the output topic holds exactly the expected
// results, each batch once, with provenance headers.
func (f *fixture) checkOutput(t *testing.T, want map[uint64][]topips.Result) {
	t.Helper()
	got := map[uint64][]topips.Result{}
	for _, r := range f.readAll(t, f.out) {
		id, err := strconv.ParseUint(header(r, sinks.HeaderBatchID), 10, 64)
		if err != nil {
			t.Fatalf("record without batch id header: %v", r.Headers)
		}
		var res topips.Result
		if err := json.Unmarshal(r.Value, &res); err != nil {
			t.Fatalf("value %q: %v", r.Value, err)
		}
		if string(r.Key) != res.IP {
			t.Errorf("key %q for ip %q", r.Key, res.IP)
		}
		if bt := header(r, sinks.HeaderBatchTime); bt != res.BatchTime.Format(time.RFC3339Nano) {
			t.Errorf("batch %d: batch-time header %q, value %v", id, bt, res.BatchTime)
		}
		ranges, err := microbatch.ParseOffsetsHeader(f.in, header(r, sinks.HeaderOffsets))
		if err != nil || len(ranges) != partitions {
			t.Fatalf("batch %d: offsets header %q: %v", id, header(r, sinks.HeaderOffsets), err)
		}
		for _, rg := range ranges {
			from := min(int64(id-1)*capPerPart, int64(len(f.lines[rg.Partition])))
			until := min(int64(id)*capPerPart, int64(len(f.lines[rg.Partition])))
			if rg.From != from || rg.Until != until {
				t.Errorf("batch %d partition %d: range [%d,%d), want [%d,%d)", id, rg.Partition, rg.From, rg.Until, from, until)
			}
		}
		got[id] = append(got[id], res)
	}
	for id := range got {
		slices.SortFunc(got[id], func(a, b topips.Result) int { return a.Rank - b.Rank })
	}
	for id := uint64(1); id <= uint64(len(want)); id++ {
		g, w := got[id], want[id]
		if len(g) != len(w) {
			t.Errorf("batch %d: %d results, want %d (duplicated or lost): %+v", id, len(g), len(w), g)
			continue
		}
		for i := range w {
			if !g[i].BatchTime.Equal(w[i].BatchTime) || g[i].Rank != w[i].Rank || g[i].IP != w[i].IP ||
				g[i].Count != w[i].Count || g[i].Country != w[i].Country || g[i].Total != w[i].Total {
				t.Errorf("batch %d rank %d: got %+v, want %+v", id, i+1, g[i], w[i])
			}
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected batch %d in output: %+v", id, got[id])
		}
	}
}

func (f *fixture) checkDeadLetters(t *testing.T) {
	t.Helper()
	recs := f.readAll(t, f.dlq)
	if len(recs) != f.malformed {
		t.Fatalf("%d dead letters, want %d", len(recs), f.malformed)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		p, _ := strconv.Atoi(header(r, topips.HeaderSourcePartition))
		off, err := strconv.Atoi(header(r, topips.HeaderSourceOffset))
		if err != nil || p >= partitions || off >= len(f.lines[p]) {
			t.Fatalf("dead letter headers %v", r.Headers)
		}
		if string(r.Value) != f.lines[p][off] || header(r, topips.HeaderSourceTopic) != f.in || header(r, topips.HeaderReason) == "" {
			t.Errorf("dead letter %q at %d:%d; input there is %q; headers %v", r.Value, p, off, f.lines[p][off], r.Headers)
		}
		key := fmt.Sprint(p, ":", off)
		if seen[key] {
			t.Errorf("dead letter %s twice", key)
		}
		seen[key] = true
	}
}

// TestTopIPsEndToEnd runs the job on the real broker and Redis and compares
// every result read back from the output topic with a recomputation.
func TestTopIPsEndToEnd(t *testing.T) {
	f := newFixture(t, 150)
	if err := f.run(t, f.batchesToDrain, f.store(t)); err != nil {
		t.Fatal(err)
	}
	f.checkOutput(t, f.uninterrupted)
	f.checkDeadLetters(t)
}

// crashingStore fails one step of the commit protocol of one batch, as a
// process killed at that instant would leave things.
type crashingStore struct {
	microbatch.Store
	batch uint64
	at    string
	// group is the batches whose plans were recorded last: a group that
	// commits together (the step of its commit fails for any of them).
	group []uint64
}

// hits reports whether the step for batch id (a group's last batch) is the
// crash's.
func (s *crashingStore) hits(id uint64) bool {
	return id == s.batch || len(s.group) > 0 && id == s.group[len(s.group)-1] && slices.Contains(s.group, s.batch)
}

// errCrash is permanent: a crashed process does not retry.
var errCrash = fmt.Errorf("injected crash: %w", microbatch.ErrPermanent)

func (s *crashingStore) RecordPlan(ctx context.Context, plans ...microbatch.Plan) error {
	s.group = s.group[:0]
	for _, p := range plans {
		s.group = append(s.group, p.ID)
	}
	has := slices.Contains(s.group, s.batch)
	if has && s.at == "before-plan" {
		return errCrash
	}
	err := s.Store.RecordPlan(ctx, plans...)
	if err == nil && has && s.at == "after-plan" {
		return errCrash
	}
	return err
}

func (s *crashingStore) Prepare(ctx context.Context, batch uint64, deltas []microbatch.Delta) error {
	err := s.Store.Prepare(ctx, batch, deltas)
	if err == nil && s.hits(batch) && s.at == "after-prepare" {
		return errCrash
	}
	return err
}

func (s *crashingStore) Commit(ctx context.Context, c microbatch.Checkpoint) error {
	if s.hits(c.Batch) && s.at == "after-sink" {
		return errCrash // the output transaction committed, the checkpoint did not
	}
	err := s.Store.Commit(ctx, c)
	if err == nil && s.hits(c.Batch) && s.at == "after-commit" {
		return errCrash
	}
	return err
}

// TestResumeAfterCrash crashes the job at every step of the commit protocol
// of a batch, restarts it with a new store instance and producer, and checks
// that the output is exactly that of an uninterrupted run: nothing lost,
// nothing doubled, totals counted once, reading resumed from the offsets in
// Redis.
func TestResumeAfterCrash(t *testing.T) {
	for _, at := range []string{"clean-stop", "before-plan", "after-plan", "after-prepare", "after-sink", "after-commit"} {
		t.Run(at, func(t *testing.T) {
			f := newFixture(t, 120)
			const crashBatch = 3
			first := f.store(t)
			var err error
			if at == "clean-stop" {
				err = f.run(t, crashBatch, first)
			} else {
				err = f.run(t, 100, &crashingStore{Store: first, batch: crashBatch, at: at})
				if !errors.Is(err, errCrash) {
					t.Fatalf("first run: %v, want the injected crash", err)
				}
			}
			if err != nil && at == "clean-stop" {
				t.Fatal(err)
			}
			second := f.store(t)
			if err := f.run(t, f.batchesToDrain, second); err != nil {
				t.Fatal(err)
			}
			f.checkOutput(t, f.uninterrupted)
			f.checkDeadLetters(t)
			plans, err := second.Plans(context.Background(), 1, f.batchesToDrain)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(plans); i++ {
				for j, r := range plans[i].Ranges {
					if prev := plans[i-1].Ranges[j]; r.From != prev.Until {
						t.Errorf("plan %d partition %d starts at %d, previous ended at %d", plans[i].ID, r.Partition, r.From, prev.Until)
					}
				}
			}
		})
	}
}

// TestReplayIsByteIdentical recomputes every batch from the plans recorded in
// Redis, with a fresh job and no store, and compares the messages with the
// records the live run committed to the output topic, byte for byte.
func TestReplayIsByteIdentical(t *testing.T) {
	f := newFixture(t, 100)
	store := f.store(t)
	if err := f.run(t, f.batchesToDrain, store); err != nil {
		t.Fatal(err)
	}
	live := map[uint64][]string{}
	for _, r := range f.readAll(t, f.out) {
		id, _ := strconv.ParseUint(header(r, sinks.HeaderBatchID), 10, 64)
		live[id] = append(live[id], string(r.Key)+"="+string(r.Value))
	}
	plans, err := store.Plans(context.Background(), 1, f.batchesToDrain)
	if err != nil || uint64(len(plans)) != f.batchesToDrain {
		t.Fatalf("%d plans, err %v; want %d", len(plans), err, f.batchesToDrain)
	}
	cl, err := f.broker.Client(kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	src, err := ingest.New(cl, ingest.Config{Topic: f.in})
	if err != nil {
		t.Fatal(err)
	}
	job := microbatch.NewJob(time.Second, microbatch.WithStdout(io.Discard))
	topips.Build(job, src, discard{}, topips.Config{Window: window, Slide: slide, TopN: topN,
		InputTopic: f.in, DeadLetterTopic: f.dlq, Countries: f.countries})
	replayed := map[uint64][]string{}
	err = job.Replay(context.Background(), plans, func(b microbatch.BatchInfo, msgs []microbatch.Message) error {
		for _, m := range msgs {
			if m.Topic == "" {
				replayed[b.ID] = append(replayed[b.ID], string(m.Key)+"="+string(m.Value))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= f.batchesToDrain; id++ {
		l, r := live[id], replayed[id]
		slices.Sort(l)
		slices.Sort(r)
		if !slices.Equal(l, r) {
			t.Errorf("batch %d: replay\n%v\nlive\n%v", id, r, l)
		}
		if len(r) == 0 {
			t.Errorf("batch %d: replay produced nothing", id)
		}
	}
}

type discard struct{}

func (discard) WriteBatch(context.Context, microbatch.BatchInfo, []microbatch.Message) error {
	return errors.New("replay must not write")
}

// planCheckingSource fails the test if the engine reads ranges that no
// recorded plan names, other than batches that follow the last recorded one
// batch after batch: while the job catches up, batches wait for the commit
// in flight (a group of at most 16, whose plans are recorded when it
// commits), the next computes and the one after that is read.
type planCheckingSource struct {
	microbatch.Source
	t     *testing.T
	plans microbatch.Store // a second instance, only read
	read  [][]microbatch.Range
}

func (s *planCheckingSource) Read(ctx context.Context, ranges []microbatch.Range, emit func(microbatch.Record)) error {
	plans, err := s.plans.Plans(ctx, 1, 1000)
	if err != nil {
		return err
	}
	for _, p := range plans {
		if slices.Equal(p.Ranges, ranges) {
			return s.Source.Read(ctx, ranges, emit)
		}
	}
	// Before the first plan is recorded: the first batch and the next.
	ok := len(plans) == 0 && len(s.read) < 2
	if len(plans) > 0 {
		// The batches read since the last recorded plan, one after the other.
		chain := [][]microbatch.Range{plans[len(plans)-1].Ranges}
		for found := true; found && len(chain) < maxAhead; {
			found = false
			for _, r := range s.read {
				if continues(chain[len(chain)-1], r) {
					chain, found = append(chain, r), true
					break
				}
			}
		}
		ok = slices.ContainsFunc(chain, func(r []microbatch.Range) bool { return continues(r, ranges) })
	}
	if !ok {
		s.t.Errorf("read of %v, which neither a recorded plan names nor follows the last recorded plan batch after batch (recorded: %d plans)", ranges, len(plans))
	}
	s.read = append(s.read, ranges)
	return s.Source.Read(ctx, ranges, emit)
}

// maxAhead bounds the batches read past the last recorded plan: a group
// waiting to commit (16), the batch computing and the one read ahead.
const maxAhead = 18

// continues reports whether next starts every partition where last ends.
func continues(last, next []microbatch.Range) bool {
	if len(last) != len(next) {
		return false
	}
	for i := range last {
		if last[i].Partition != next[i].Partition || last[i].Until != next[i].From {
			return false
		}
	}
	return true
}
