package chaos

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/sinks"
	"github.com/dstream-io/dstream/state"
)

// Spec describes the top-ips job whose output Check verifies.
type Spec struct {
	Input, Output, DeadLetter string
	Interval, Window, Slide   time.Duration
	TopN                      int
	// Countries is the job's countries table (nil: every IP is unknown).
	Countries map[string]string
	// Job, if set, is the job whose records ReadOutput keeps (dstream-job):
	// other jobs may share the output and dead-letter topics.
	Job string
	// Change, if set, is a change of the window and slide the job was
	// restarted with: the batches after Change.After have the new ones.
	Change *WindowChange
}

// WindowChange is a window and slide in effect after batch After.
type WindowChange struct {
	After         uint64
	Window, Slide time.Duration
}

// windowAt returns the window length and slide, in batches, of batch b.
func (s Spec) windowAt(b uint64) (length, slide uint64) {
	if s.Change != nil && b > s.Change.After {
		return uint64(s.Change.Window / s.Interval), uint64(s.Change.Slide / s.Interval)
	}
	return uint64(s.Window / s.Interval), uint64(s.Slide / s.Interval)
}

// Input is the input topic as read back: the IP of every line, by
// partition and offset.
type Input struct {
	Lines     int64
	ips       []string
	index     map[string]int32
	parts     map[int32]*partInput
	malformed map[lineAt]string // the raw malformed lines
}

type lineAt struct {
	partition int32
	offset    int64
}

type partInput struct {
	start int64   // log start offset
	ids   []int32 // by offset-start: an index into Input.ips, or one of:
}

const (
	noRecord = -1 // an offset without a record (a control record, a gap)
	badLine  = -2 // a line weblog.Parse rejects
)

// ReadInput reads every record of the input topic.
func ReadInput(ctx context.Context, opts []kgo.Opt, topic string) (*Input, error) {
	in := &Input{parts: map[int32]*partInput{}, malformed: map[lineAt]string{}, index: map[string]int32{}}
	index := in.index
	starts, ends, err := bounds(ctx, opts, topic)
	if err != nil {
		return nil, err
	}
	for p, s := range starts {
		ids := make([]int32, ends[p]-s)
		for i := range ids {
			ids[i] = noRecord
		}
		in.parts[p] = &partInput{start: s, ids: ids}
	}
	err = readTopic(ctx, opts, topic, starts, ends, func(r *kgo.Record) {
		pi := in.parts[r.Partition]
		in.Lines++
		e, err := weblog.Parse(string(r.Value))
		if err != nil {
			pi.ids[r.Offset-pi.start] = badLine
			in.malformed[lineAt{r.Partition, r.Offset}] = string(r.Value)
			return
		}
		id, ok := index[e.IP]
		if !ok {
			id = int32(len(in.ips))
			index[e.IP] = id
			in.ips = append(in.ips, e.IP)
		}
		pi.ids[r.Offset-pi.start] = id
	})
	return in, err
}

// Ends returns the end offset of every partition: what a processor that
// drained the input has planned.
func (in *Input) Ends() map[int32]int64 {
	out := map[int32]int64{}
	for p, pi := range in.parts {
		out[p] = pi.start + int64(len(pi.ids))
	}
	return out
}

// Totals counts the lines of every IP in the whole input.
func (in *Input) Totals() map[string]int64 {
	out := make(map[string]int64, len(in.ips))
	for _, pi := range in.parts {
		for _, id := range pi.ids {
			if id >= 0 {
				out[in.ips[id]]++
			}
		}
	}
	return out
}

// TotalsBetween counts every IP's lines in [from, until) of each partition.
func (in *Input) TotalsBetween(from, until map[int32]int64) (map[string]int64, error) {
	counts := make([]int64, len(in.ips))
	touched, err := in.count(counts, nil, from, until, 1)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(touched))
	for _, id := range touched {
		out[in.ips[id]] = counts[id]
	}
	return out, nil
}

func (in *Input) starts() map[int32]int64 {
	out := map[int32]int64{}
	for p, pi := range in.parts {
		out[p] = pi.start
	}
	return out
}

// count adds sign times the lines of [from[p], until[p]) to counts (by IP
// index), appending IPs counted the first time to touched.
func (in *Input) count(counts []int64, touched []int32, from, until map[int32]int64, sign int64) ([]int32, error) {
	for p, pi := range in.parts {
		lo, hi := from[p], until[p]
		if lo < pi.start || hi > pi.start+int64(len(pi.ids)) || lo > hi {
			return touched, fmt.Errorf("partition %d: range [%d,%d) outside the input [%d,%d)", p, lo, hi, pi.start, pi.start+int64(len(pi.ids)))
		}
		for _, id := range pi.ids[lo-pi.start : hi-pi.start] {
			if id < 0 {
				continue
			}
			if counts[id] == 0 && sign > 0 {
				touched = append(touched, id)
			}
			counts[id] += sign
		}
	}
	return touched, nil
}

// bounds lists the start and end (last stable) offsets of topic.
func bounds(ctx context.Context, opts []kgo.Opt, topic string) (starts, ends map[int32]int64, err error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	e, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = e.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("chaos: end offsets of %s: %w", topic, err)
	}
	s, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = s.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("chaos: start offsets of %s: %w", topic, err)
	}
	starts, ends = map[int32]int64{}, map[int32]int64{}
	e.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	s.Each(func(o kadm.ListedOffset) { starts[o.Partition] = o.Offset })
	return starts, ends, nil
}

// readTopic calls fn for every committed data record of topic in
// [starts, ends), read with read_committed isolation.
func readTopic(ctx context.Context, opts []kgo.Opt, topic string, starts, ends map[int32]int64, fn func(*kgo.Record)) error {
	offsets := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	for p, end := range ends {
		if end > starts[p] {
			offsets[p] = kgo.NewOffset().At(starts[p])
			remaining[p] = end
		}
	}
	if len(remaining) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(slices.Clip(opts),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("chaos: read %s: %w (still waiting for %v)", topic, err, remaining)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("chaos: read %s: %w", topic, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if r.Offset >= end-1 {
				delete(remaining, r.Partition)
			}
			if !r.Attrs.IsControl() {
				fn(r)
			}
		})
	}
	return nil
}

// Output is what a read_committed reader sees of the job's output and
// dead-letter topics.
type Output struct {
	results     []outRecord
	deadLetters []outRecord
}

type outRecord struct {
	key                   string
	value                 []byte
	batch, time, offsets  string
	srcPartition, srcOffs string
}

// ResultRecord is a result record of the output: its batch id and value.
type ResultRecord struct {
	Batch string
	Value []byte
}

// Results returns the result records, in the order they were read.
func (o *Output) Results() []ResultRecord {
	out := make([]ResultRecord, len(o.results))
	for i, r := range o.results {
		out[i] = ResultRecord{Batch: r.batch, Value: r.value}
	}
	return out
}

// BatchIDs returns the ids of the batches with results, sorted, once for
// every time a batch was written (its rank-1 record): a batch written twice
// shows twice.
func (o *Output) BatchIDs() []uint64 {
	var ids []uint64
	for _, r := range o.results {
		var res topips.Result
		if json.Unmarshal(r.value, &res) != nil || res.Rank != 1 {
			continue
		}
		if id, err := strconv.ParseUint(r.batch, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// ReadOutput reads every committed record of the output and dead-letter
// topics.
func ReadOutput(ctx context.Context, opts []kgo.Opt, spec Spec) (*Output, error) {
	out := &Output{}
	for _, topic := range []string{spec.Output, spec.DeadLetter} {
		if topic == "" {
			continue
		}
		starts, ends, err := bounds(ctx, opts, topic)
		if err != nil {
			return nil, err
		}
		err = readTopic(ctx, opts, topic, starts, ends, func(r *kgo.Record) {
			o := outRecord{key: string(r.Key), value: r.Value}
			job := ""
			for _, h := range r.Headers {
				switch h.Key {
				case sinks.HeaderJob:
					job = string(h.Value)
				case sinks.HeaderBatchID:
					o.batch = string(h.Value)
				case sinks.HeaderBatchTime:
					o.time = string(h.Value)
				case sinks.HeaderOffsets:
					o.offsets = string(h.Value)
				case topips.HeaderSourcePartition:
					o.srcPartition = string(h.Value)
				case topips.HeaderSourceOffset:
					o.srcOffs = string(h.Value)
				}
			}
			if spec.Job != "" && job != spec.Job {
				return // another job's
			}
			if topic == spec.Output {
				out.results = append(out.results, o)
			} else {
				out.deadLetters = append(out.deadLetters, o)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Report is the verdict on one output. Lost, Duplicated and Wrong count
// batches (and dead-letter lines); all are zero when the output is exactly
// once and correct.
type Report struct {
	// Batches is the number of distinct batch ids with results; Last is
	// the highest.
	Batches     int
	Last        uint64
	Lost        int
	Duplicated  int
	Wrong       int
	DeadLetters int
	// Until is where the last batch with results ended, per partition.
	Until map[int32]int64
	// Problems describes the first findings.
	Problems []string
}

// OK reports whether nothing was lost, duplicated or wrong.
func (r *Report) OK() bool { return r.Lost == 0 && r.Duplicated == 0 && r.Wrong == 0 }

func (r *Report) String() string {
	return fmt.Sprintf("batches=%d lost=%d duplicated=%d wrong=%d", r.Batches, r.Lost, r.Duplicated, r.Wrong)
}

func (r *Report) problem(counter *int, format string, args ...any) {
	*counter++
	if len(r.Problems) < 30 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

type batchOut struct {
	id      uint64
	recs    []topips.Result
	time    time.Time
	from    map[int32]int64
	until   map[int32]int64
	invalid bool
}

// Check verifies out against a recomputation from in: every batch id from
// the first slide to the last batch with results appears once (a batch may
// lack results only if its window holds no valid line); every batch's
// results are the top-N of its window, recomputed from the input over the
// offsets its dstream-offsets header names, with the totals over every line
// up to the batch's end; batch times step by the interval; and every
// malformed line up to the last batch is a dead letter exactly once.
func Check(in *Input, out *Output, spec Spec) *Report {
	rep := &Report{}
	for _, at := range []uint64{0, ^uint64(0)} {
		lengthB, slideB := spec.windowAt(at)
		if spec.Interval <= 0 || lengthB == 0 || slideB == 0 || lengthB%slideB != 0 {
			rep.problem(&rep.Wrong, "spec: windows and slides must be multiples of the interval %v, the window of the slide", spec.Interval)
			return rep
		}
	}

	batches := map[uint64]*batchOut{}
	heads := map[uint64][2]string{}
	ranks := map[uint64]map[int]int{}
	for _, r := range out.results {
		id, err := strconv.ParseUint(r.batch, 10, 64)
		if err != nil || id == 0 {
			rep.problem(&rep.Wrong, "result without a valid %s header: %q", sinks.HeaderBatchID, r.batch)
			continue
		}
		b := batches[id]
		if b == nil {
			b = &batchOut{id: id}
			batches[id] = b
			heads[id] = [2]string{r.time, r.offsets}
			ranks[id] = map[int]int{}
			b.time, err = time.Parse(time.RFC3339Nano, r.time)
			if err != nil {
				rep.problem(&rep.Wrong, "batch %d: %s header %q: %v", id, sinks.HeaderBatchTime, r.time, err)
				b.invalid = true
			}
			ranges, err := microbatch.ParseOffsetsHeader(spec.Input, r.offsets)
			if err != nil || len(ranges) != len(in.parts) {
				rep.problem(&rep.Wrong, "batch %d: %s header %q: want every one of %d partitions (%v)", id, sinks.HeaderOffsets, r.offsets, len(in.parts), err)
				b.invalid = true
			}
			b.from, b.until = map[int32]int64{}, map[int32]int64{}
			for _, rg := range ranges {
				b.from[rg.Partition], b.until[rg.Partition] = rg.From, rg.Until
			}
		} else if heads[id] != [2]string{r.time, r.offsets} {
			// Two different runs of the batch: a duplicate at best.
			rep.problem(&rep.Wrong, "batch %d: records with different provenance: %v and %v", id, heads[id], [2]string{r.time, r.offsets})
			b.invalid = true
		}
		var res topips.Result
		if err := json.Unmarshal(r.value, &res); err != nil {
			rep.problem(&rep.Wrong, "batch %d: value %q: %v", id, r.value, err)
			b.invalid = true
			continue
		}
		if r.key != res.IP {
			rep.problem(&rep.Wrong, "batch %d: key %q for IP %q", id, r.key, res.IP)
			b.invalid = true
		}
		if !res.BatchTime.Equal(b.time) {
			rep.problem(&rep.Wrong, "batch %d: batch_time %v, header %v", id, res.BatchTime, b.time)
			b.invalid = true
		}
		ranks[id][res.Rank]++
		b.recs = append(b.recs, res)
	}

	ids := slices.Sorted(maps.Keys(batches))
	rep.Batches = len(ids)
	if len(ids) > 0 {
		rep.Last = ids[len(ids)-1]
		rep.Until = batches[rep.Last].until
	}
	dup := map[uint64]bool{}
	for _, id := range ids {
		for rank, n := range ranks[id] {
			if n > 1 && !dup[id] {
				dup[id] = true
				rep.problem(&rep.Duplicated, "batch %d: rank %d appears %d times", id, rank, n)
			}
		}
	}

	// untilOf is where batch x ended: known for batches with results, and
	// for others when the batches with results around them leave no room.
	untilOf := func(x uint64) (map[int32]int64, bool) {
		if x == 0 {
			return in.starts(), true
		}
		if b, ok := batches[x]; ok && !b.invalid {
			return b.until, true
		}
		i, _ := slices.BinarySearch(ids, x)
		if i == len(ids) {
			return nil, false
		}
		next := batches[ids[i]]
		prev := in.starts()
		if i > 0 {
			if batches[ids[i-1]].invalid {
				return nil, false
			}
			prev = batches[ids[i-1]].until
		}
		if next.invalid || !maps.Equal(prev, next.from) {
			return nil, false
		}
		return prev, true
	}

	counts := make([]int64, len(in.ips))
	var touched []int32
	window := func(b uint64) ([]topips.Result, error) {
		lengthB, _ := spec.windowAt(b)
		from, ok1 := untilOf(b - min(b, lengthB))
		until, ok2 := untilOf(b)
		if !ok1 || !ok2 {
			return nil, errors.New("the window's offsets cannot be told from the output")
		}
		for _, id := range touched {
			counts[id] = 0
		}
		touched = touched[:0]
		var err error
		if touched, err = in.count(counts, touched, from, until, 1); err != nil {
			return nil, err
		}
		var ranked []topips.Result
		for _, id := range touched {
			if counts[id] > 0 {
				ranked = append(ranked, topips.Result{IP: in.ips[id], Count: counts[id]})
			}
		}
		slices.SortFunc(ranked, func(a, b topips.Result) int {
			if c := cmp.Compare(b.Count, a.Count); c != 0 {
				return c
			}
			return strings.Compare(a.IP, b.IP)
		})
		return ranked[:min(spec.TopN, len(ranked))], nil
	}

	// Missing batches.
	for b := uint64(1); b <= rep.Last; b++ {
		if _, slideB := spec.windowAt(b); b%slideB != 0 {
			continue
		}
		if _, ok := batches[b]; ok {
			continue
		}
		want, err := window(b)
		if err != nil || len(want) > 0 {
			rep.problem(&rep.Lost, "batch %d: no results in the output (window: %d results expected, %v)", b, len(want), err)
		}
	}

	// Every batch with results against the recomputation.
	totals := make([]int64, len(in.ips))
	cum := in.starts()
	var t0 time.Time
	for _, id := range ids {
		b := batches[id]
		if b.invalid {
			continue // already counted
		}
		_, slideB := spec.windowAt(id)
		if id%slideB != 0 {
			rep.problem(&rep.Wrong, "batch %d has results but is not at a slide (every %d batches)", id, slideB)
			continue
		}
		if t0.IsZero() {
			t0 = b.time.Add(-time.Duration(id-1) * spec.Interval)
			if !t0.Equal(t0.Truncate(spec.Interval)) {
				rep.problem(&rep.Wrong, "batch %d at %v: batch times are not aligned to the interval", id, b.time)
			}
		}
		if want := t0.Add(time.Duration(id-1) * spec.Interval); !b.time.Equal(want) {
			rep.problem(&rep.Wrong, "batch %d at %v, want %v", id, b.time, want)
			continue
		}
		if prev, ok := untilOf(id - 1); ok && slideB == 1 && !maps.Equal(prev, b.from) {
			rep.problem(&rep.Wrong, "batch %d starts at %v, the batch before ended at %v", id, b.from, prev)
			continue
		}
		want, err := window(id)
		if err != nil {
			rep.problem(&rep.Wrong, "batch %d: %v", id, err)
			continue
		}
		for p, u := range b.until {
			if u < cum[p] {
				err = fmt.Errorf("partition %d ends at %d, before the previous batch's end %d", p, u, cum[p])
			}
		}
		if err == nil {
			_, err = in.count(totals, nil, cum, b.until, 1)
		}
		if err != nil {
			rep.problem(&rep.Wrong, "batch %d: %v", id, err)
			continue
		}
		cum = b.until
		if dup[id] {
			continue
		}
		got := slices.SortedFunc(slices.Values(b.recs), func(a, b topips.Result) int { return a.Rank - b.Rank })
		ok := len(got) == len(want)
		for i := 0; ok && i < len(want); i++ {
			w := want[i]
			w.Rank, w.BatchTime = i+1, b.time
			w.Country = cmp.Or(spec.Countries[w.IP], topips.Unknown)
			w.Total = totals[in.index[w.IP]]
			g := got[i]
			ok = g.Rank == w.Rank && g.IP == w.IP && g.Count == w.Count && g.Country == w.Country && g.Total == w.Total
		}
		if !ok {
			rep.problem(&rep.Wrong, "batch %d: results %+v, want the top %d of %+v (totals to %v)", id, got, spec.TopN, want, b.until)
		}
	}

	// Dead letters: each malformed line once, in the batch that read it.
	seen := map[lineAt]int{}
	for _, r := range out.deadLetters {
		p, err1 := strconv.ParseInt(r.srcPartition, 10, 32)
		off, err2 := strconv.ParseInt(r.srcOffs, 10, 64)
		at := lineAt{int32(p), off}
		raw, ok := in.malformed[at]
		if err1 != nil || err2 != nil || !ok || raw != string(r.value) {
			rep.problem(&rep.Wrong, "dead letter %q from %s:%s is not a malformed input line", r.value, r.srcPartition, r.srcOffs)
			continue
		}
		if id, err := strconv.ParseUint(r.batch, 10, 64); err != nil {
			rep.problem(&rep.Wrong, "dead letter %d:%d without batch id", p, off)
		} else if b, ok := batches[id]; ok && !b.invalid && (off < b.from[at.partition] || off >= b.until[at.partition]) {
			rep.problem(&rep.Wrong, "dead letter %d:%d in batch %d, which read [%d,%d)", p, off, id, b.from[at.partition], b.until[at.partition])
		}
		seen[at]++
		if seen[at] == 2 {
			rep.problem(&rep.Duplicated, "dead letter %d:%d appears more than once", p, off)
		}
	}
	rep.DeadLetters = len(seen)
	for at := range in.malformed {
		if seen[at] == 0 && at.offset < rep.Until[at.partition] {
			rep.problem(&rep.Lost, "malformed line %d:%d is not in the dead letters", at.partition, at.offset)
		}
	}
	return rep
}

// CheckTotals compares the running totals the job checkpointed in Redis
// with the input's counts per IP up to the end of the committed batch:
// every line counted once. Run it when no processor holds the job.
func CheckTotals(ctx context.Context, rdb state.Client, job string, spec Spec, in *Input) (committed uint64, problems []string, err error) {
	store, err := state.NewRedis(rdb, state.Config{Job: job})
	if err != nil {
		return 0, nil, err
	}
	meta, err := store.Progress(ctx)
	if err != nil {
		return 0, nil, err
	}
	c := meta.Committed
	if c == 0 {
		return 0, nil, nil
	}
	plans, err := store.Plans(ctx, c, c)
	if err != nil || len(plans) != 1 {
		return c, nil, fmt.Errorf("chaos: plan of committed batch %d: %v", c, err)
	}
	until := map[int32]int64{}
	for _, r := range plans[0].Ranges {
		until[r.Partition] = r.Until
	}
	want := make([]int64, len(in.ips))
	if _, err := in.count(want, nil, in.starts(), until, 1); err != nil {
		return c, nil, err
	}
	totals, err := microbatch.ReadState[weblog.IP, int64](ctx, store, "totals", c)
	if err != nil {
		return c, nil, fmt.Errorf("chaos: read the totals: %w", err)
	}
	got := map[string]int64{}
	for _, kv := range totals {
		got[kv.Key.String()] = kv.Value
	}
	for id, ip := range in.ips {
		if want[id] != got[ip] {
			problems = append(problems, fmt.Sprintf("total of %s is %d, the input has %d up to %v", ip, got[ip], want[id], until))
		}
		delete(got, ip)
	}
	for ip, n := range got {
		if n != 0 {
			problems = append(problems, fmt.Sprintf("total of %s is %d, not an IP of the input", ip, n))
		}
	}
	return c, problems, nil
}

// MarkerCounts reads a job's control topic and counts the committed markers
// of each task's batches, by "task@batch" (the task is "" for an unsharded
// job). A batch commits in one transaction, so every count is 1.
func MarkerCounts(ctx context.Context, opts []kgo.Opt, topic string) (map[string]int, error) {
	starts, ends, err := bounds(ctx, opts, topic)
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	err = readTopic(ctx, opts, topic, starts, ends, func(r *kgo.Record) {
		var task, batch string
		for _, h := range r.Headers {
			switch h.Key {
			case sinks.HeaderTask:
				task = string(h.Value)
			case sinks.HeaderBatchID:
				batch = string(h.Value)
			}
		}
		counts[task+"@"+batch]++
	})
	return counts, err
}
