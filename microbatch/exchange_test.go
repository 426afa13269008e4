package microbatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// partitionedSource is an in-memory Source of P partitions, batch b of
// partition p being the offsets [b, b+1) of it; only serves the partitions
// own says (a stage-0 task's).
type partitionedSource struct {
	lines [][][]string // [partition][batch] lines
	own   func(p int32) bool
}

func (s partitionedSource) Topic() string { return "in" }

func (s partitionedSource) Cut(_ context.Context, after []Range) ([]Range, error) {
	next := map[int32]int64{}
	for _, r := range after {
		next[r.Partition] = r.Until
	}
	var out []Range
	for p := range s.lines {
		if !s.own(int32(p)) {
			continue
		}
		from := next[int32(p)]
		out = append(out, Range{Topic: "in", Partition: int32(p), From: from, Until: min(from+1, int64(len(s.lines[p])))})
	}
	return out, nil
}

func (s partitionedSource) Read(_ context.Context, ranges []Range, emit func(Record)) error {
	for _, r := range ranges {
		for b := r.From; b < r.Until; b++ {
			for i, l := range s.lines[r.Partition][b] {
				emit(Record{Partition: r.Partition, Offset: b*1000 + int64(i), Value: []byte(l)})
			}
		}
	}
	return nil
}

// memExchange is an in-memory broker for the exchanges of a sharded job:
// each task's sink appends its batch's exchange messages to the topics'
// partition logs, all at once (a transaction), and remembers its markers.
type memExchange struct {
	mu   sync.Mutex
	logs map[string][]exRecord // "topic/partition" → records, by offset
}

type exRecord struct {
	batch  uint64
	time   time.Time
	task   string
	value  []byte
	origin []Range
}

type memTaskSink struct {
	*MemorySink
	x    *memExchange
	task string
}

func (s memTaskSink) WriteBatch(ctx context.Context, b BatchInfo, msgs []Message) error {
	return s.WriteBatches(ctx, []BatchInfo{b}, [][]Message{msgs})
}

func (s memTaskSink) WriteBatches(ctx context.Context, batches []BatchInfo, msgs [][]Message) error {
	if err := s.MemorySink.WriteBatches(ctx, batches, msgs); err != nil {
		return err
	}
	s.x.mu.Lock()
	defer s.x.mu.Unlock()
	for i, b := range batches {
		for _, m := range msgs[i] {
			if strings.HasPrefix(m.Topic, "x.") {
				key := fmt.Sprintf("%s/%d", m.Topic, m.Partition)
				s.x.logs[key] = append(s.x.logs[key], exRecord{batch: b.ID, time: b.Time, task: s.task, value: m.Value, origin: slices.Clone(b.Origin())})
			}
		}
	}
	return nil
}

type memExchangeSource struct {
	x        *memExchange
	key      string
	topic    string
	upstream int
}

func (s memExchangeSource) Topic() string { return s.topic }

func (s memExchangeSource) Cut(context.Context, []Range) ([]Range, error) {
	panic("an exchange is cut by batch")
}

func (s memExchangeSource) CutBatch(ctx context.Context, id uint64, after []Range) ([]Range, time.Time, error) {
	from := int64(0)
	if len(after) > 0 {
		from = slices.MinFunc(after, func(a, b Range) int { return cmp.Compare(a.From, b.From) }).From
	}
	for {
		s.x.mu.Lock()
		var out []Range
		var t time.Time
		for o := from; o < int64(len(s.x.logs[s.key])); o++ {
			if r := s.x.logs[s.key][o]; r.batch == id {
				out = append(out, Range{Topic: s.topic, Partition: 0, From: o, Until: o + 1})
				t = r.time
			}
		}
		s.x.mu.Unlock()
		if len(out) == s.upstream {
			return out, t, nil
		}
		select {
		case <-ctx.Done():
			return nil, time.Time{}, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (s memExchangeSource) Read(_ context.Context, ranges []Range, emit func(Record)) error {
	s.x.mu.Lock()
	defer s.x.mu.Unlock()
	for _, r := range ranges {
		for o := r.From; o < r.Until; o++ {
			rec := s.x.logs[s.key][o]
			emit(Record{Offset: o, Value: rec.value, Origin: rec.origin})
		}
	}
	return nil
}

// shardedGraph is a word count in the shape of the reference job: counts
// per batch exchanged by key, window counts and running totals per key on
// the keyed stage, each shard's top 3 with totals gathered, ranked again.
func shardedGraph(j *Job, src Source, sink Sink) {
	words := FlatMap(j.Lines(src), strings.Fields)
	perBatch := ReduceByKey(Map(words, func(w string) Pair[string, int] { return KV(w, 1) }), add)
	counts := ExchangeByKey(perBatch, "counts")
	merged := ReduceByKey(counts, add)
	window := ReduceByKeyAndWindow(merged, add, sub, 3*time.Second, time.Second, func(p Pair[string, int]) bool { return p.Value > 0 }).Named("window")
	totals := UpdateStateByKey(merged, sumUpdate).Named("totals")
	top := func(b []Pair[string, Pair[int, int]]) []Pair[string, Pair[int, int]] {
		s := slices.Clone(b)
		slices.SortFunc(s, func(x, y Pair[string, Pair[int, int]]) int {
			if c := cmp.Compare(y.Value.Key, x.Value.Key); c != 0 {
				return c
			}
			return strings.Compare(x.Key, y.Key)
		})
		return s[:min(3, len(s))]
	}
	local := Transform(Join(window, totals), top)
	ranked := Transform(Gather(local, "top"), top)
	Write(ranked, sink, func(b BatchInfo, p Pair[string, Pair[int, int]]) Message {
		return Message{Value: fmt.Appendf(nil, "%d %s count=%d total=%d from=%s", b.ID, p.Key, p.Value.Key, p.Value.Value, b.OffsetsHeader())}
	})
}

// TestShardedJobGivesTheSameAnswers runs the graph unsharded, then as a
// sharded job of 2 and 3 shards (2S+1 tasks, each a Job on its own store
// and sink, exchanging through an in-memory broker): the last stage's
// output must be the unsharded job's, batch by batch, provenance included.
func TestShardedJobGivesTheSameAnswers(t *testing.T) {
	const partitions, batches = 6, 12
	rng := rand.New(rand.NewPCG(3, 4))
	lines := make([][][]string, partitions)
	for p := range lines {
		for range batches {
			var b []string
			for range rng.IntN(5) {
				var ws []string
				for range 1 + rng.IntN(4) {
					ws = append(ws, string(rune('a'+rng.IntN(8))))
				}
				b = append(b, strings.Join(ws, " "))
			}
			lines[p] = append(lines[p], b)
		}
	}
	all := func(int32) bool { return true }
	newJob := func(opts ...Option) *Job {
		j := NewJob(time.Second, append([]Option{WithClock(NewVirtualClock(epoch)), WithBatchLimit(batches), WithStdout(io.Discard)}, opts...)...)
		j.Checkpoint(NewMemoryStore())
		return j
	}
	unsharded := NewMemorySink()
	j := newJob()
	shardedGraph(j, partitionedSource{lines, all}, unsharded)
	runJob(t, j)
	want := values(unsharded)
	if len(want) < 20 {
		t.Fatalf("the unsharded job wrote %d results: the test needs more", len(want))
	}

	for _, shards := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d shards", shards), func(t *testing.T) {
			x := &memExchange{logs: map[string][]exRecord{}}
			exchange := func(name string, partition int32, upstream int) BatchSource {
				return memExchangeSource{x: x, key: fmt.Sprintf("x.%s/%d", name, partition), topic: "x." + name, upstream: upstream}
			}
			var tasks []*Job
			var final *MemorySink
			for stage, n := range []int{shards, shards, 1} {
				for i := range n {
					sink := memTaskSink{MemorySink: NewMemorySink(), x: x, task: fmt.Sprintf("%d-%d", stage, i)}
					if stage == 2 {
						final = sink.MemorySink
					}
					j := newJob(WithTask(Task{Stage: stage, Index: i, Shards: shards, Exchange: exchange,
						Topic: func(name string) string { return "x." + name }, Sink: sink}))
					own := func(p int32) bool { return int(p)%shards == i }
					shardedGraph(j, partitionedSource{lines, own}, sink)
					tasks = append(tasks, j)
				}
			}
			for _, j := range tasks {
				if err := j.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			for _, j := range tasks {
				if ended, err := j.AwaitTerminationOrTimeout(time.Minute); !ended || err != nil {
					t.Fatalf("a task did not finish its %d batches: %v", batches, err)
				}
			}
			if got := values(final); !slices.Equal(got, want) {
				t.Errorf("the sharded job's output differs from the unsharded job's:\n%s", lineDiff(strings.Join(got, "\n"), strings.Join(want, "\n")))
			}
		})
	}
}

// TestTaskSinkIsTheJobsSink checks that a task whose exchange sink is not
// the transactional sink its outputs write to is refused at Start: its
// batches would commit in two transactions, and a crash between them would
// leave the batch's marker committed and its exchange records lost.
func TestTaskSinkIsTheJobsSink(t *testing.T) {
	x := &memExchange{logs: map[string][]exRecord{}}
	exchange := func(name string, partition int32, upstream int) BatchSource {
		return memExchangeSource{x: x, key: fmt.Sprintf("x.%s/%d", name, partition), topic: "x." + name, upstream: upstream}
	}
	lines := [][][]string{{{"a b", "b"}}}
	for _, same := range []bool{true, false} {
		out := memTaskSink{MemorySink: NewMemorySink(), x: x, task: "1-0"}
		exchangeSink := out
		if !same {
			exchangeSink = memTaskSink{MemorySink: NewMemorySink(), x: x, task: "1-0"}
		}
		j := NewJob(time.Second, WithClock(NewVirtualClock(epoch)), WithBatchLimit(1), WithStdout(io.Discard),
			WithTask(Task{Stage: 1, Index: 0, Shards: 2, Exchange: exchange,
				Topic: func(name string) string { return "x." + name }, Sink: exchangeSink}))
		j.Checkpoint(NewMemoryStore())
		shardedGraph(j, partitionedSource{lines, func(int32) bool { return true }}, out)
		err := j.Start(context.Background())
		if same {
			if err != nil {
				t.Fatalf("one sink for exchanges and outputs: %v", err)
			}
			j.Stop(false)
			continue
		}
		var be *BuildError
		if !errors.As(err, &be) || !strings.Contains(err.Error(), "one transaction") {
			t.Errorf("two transactional sinks in a task: %v, want a BuildError naming one transaction", err)
		}
	}
}
