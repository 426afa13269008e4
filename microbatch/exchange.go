package microbatch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Task says which part of a sharded job a Job runs (docs/scale-out.md).
// The graph splits into stages at its exchanges (ExchangeByKey, Gather);
// stage 0 reads the job's inputs, every later stage the exchange before
// it. A keyed stage (stage 0, and the stage after an ExchangeByKey) has
// Shards tasks; the stage after a Gather has one. Without WithTask, or with
// Shards 1 and no Exchange, a Job runs the whole graph, its exchanges
// passing batches on.
type Task struct {
	// Stage and Index name the task within the graph.
	Stage, Index int
	// Shards is how many tasks a keyed stage has: the partitions of the
	// exchange topics an ExchangeByKey writes.
	Shards int
	// Exchange returns the source of this task's partition of exchange
	// name, which upstream tasks feed.
	Exchange func(name string, partition int32, upstream int) BatchSource
	// Topic names the topic of exchange name, for the messages this task
	// sends it.
	Topic func(name string) string
	// Sink is the transactional sink the task's exchange messages go to
	// (the job's; a stage that writes nothing else needs it too).
	Sink TransactionalSink
}

// WithTask makes the job run one task of a sharded job.
func WithTask(t Task) Option { return func(j *Job) { j.task = &t } }

// BatchSource is a Source whose records say which batch they belong to: an
// exchange between the stages of a sharded job. It cuts a given batch,
// whatever the clock says, once it is complete.
type BatchSource interface {
	Source
	// CutBatch plans batch id after the ranges of the previous one,
	// waiting until the batch is complete; it returns its batch time.
	CutBatch(ctx context.Context, id uint64, after []Range) ([]Range, time.Time, error)
}

// exchanger is the engine's view of an exchange node.
type exchanger interface {
	node
	exchange() *exchangeBase
	// encode splits the parent's output of the batch into one blob per
	// downstream partition: whether it had output, then its elements.
	encode(partitions int) [][]byte
	// receiver is the exchange's receiving side, an input of its stage.
	receiver() input
	// origins returns the input ranges the last batch read derives from.
	origins() []Range
}

// exchangeBase is what every exchange node holds, whatever its type.
type exchangeBase struct {
	name   string
	byKey  bool
	parent node
	// Set by compile for a sharded task: the node receives (it is an
	// input of the task's stage) or sends (its parent is in the task's
	// stage).
	src        BatchSource
	topicName  string
	upstream   int
	partitions int
	// origin is the input ranges the last batch read derives from.
	origin []Range
}

func (e *exchangeBase) exchange() *exchangeBase { return e }

type exchangeStream[T any] struct {
	*Stream[T]
	exchangeBase
	parentS   *Stream[T]
	codec     Codec[T]
	partition func(v T, n int) int
	loaded    []T
	has       bool
}

// ExchangeByKey ends a stage of a sharded job: each pair goes to the task of
// the next stage that owns its key (partition hash(key) mod Shards of the
// exchange topic named after name), in the batch's transaction. Reduce
// first (ReduceByKey): the exchange then carries each batch's partial
// aggregates, not its elements. Unsharded, it passes batches on.
func ExchangeByKey[K comparable, V any](s *Stream[Pair[K, V]], name string) *Stream[Pair[K, V]] {
	keys := DefaultCodec[K]()
	var buf []byte
	e := newExchange(s, name, true, func(p Pair[K, V], n int) int {
		buf = keys.Append(buf[:0], p.Key)
		return int(stableHash(buf) % uint64(n))
	})
	e.codec = pairCodec[K, V]{keys: keys, vals: DefaultCodec[V]()}
	return e.Stream
}

// Gather ends a stage of a sharded job: every task's batch goes to the one
// task of the next stage, for operators over a whole batch (a ranking of the
// shards' local rankings). Unsharded, it passes batches on.
func Gather[T any](s *Stream[T], name string) *Stream[T] {
	return newExchange(s, name, false, func(T, int) int { return 0 }).Stream
}

// ShardOf returns the shard of a sharded job that owns key (of those an
// ExchangeByKey sends to): the hash of the key's encoded form, not Go's
// hash, since every process and version must send a key to the same task.
func ShardOf[K any](key K, shards int) int {
	return int(stableHash(DefaultCodec[K]().Append(nil, key)) % uint64(shards))
}

// Exchanges returns the exchanges of the graph built on j, each with its
// partitions when the job is sharded in shards.
func (j *Job) Exchanges(shards int) map[string]int {
	out := map[string]int{}
	for _, n := range j.nodes {
		if x := n.base().exch; x != nil {
			out[x.exchange().name] = 1
			if x.exchange().byKey {
				out[x.exchange().name] = shards
			}
		}
	}
	return out
}

// ExchangesInto returns the exchanges that task index of stage (a stage
// after the first) reads, each with the partition it reads: where a reset
// starts the task.
func (j *Job) ExchangesInto(stage, index int) (map[string]int32, error) {
	stages, _, _, err := j.stages()
	if err != nil {
		return nil, err
	}
	out := map[string]int32{}
	for _, n := range j.nodes {
		if x := n.base().exch; x != nil && stages[n.base()] == stage {
			out[x.exchange().name] = 0
			if x.exchange().byKey {
				out[x.exchange().name] = int32(index)
			}
		}
	}
	return out, nil
}

// stableHash is FNV-1a: the same on every machine and in every version.
func stableHash(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func newExchange[T any](s *Stream[T], name string, byKey bool, partition func(T, int) int) *exchangeStream[T] {
	e := &exchangeStream[T]{parentS: s, codec: DefaultCodec[T](), partition: partition}
	e.exchangeBase = exchangeBase{name: name, byKey: byKey, parent: s}
	e.Stream = newStream[T](s.job, "exchange", s.slide, s)
	e.Stream.name = name
	e.Stream.output = outPassThrough
	e.Stream.exch = e
	e.Stream.compute = func(*batchRun) ([]T, bool) {
		if e.src != nil { // receiving: the batch read from the exchange
			return e.loaded, e.has
		}
		e.Stream.distinct = s.distinct
		return s.out, s.has
	}
	if !validName.MatchString(name) {
		s.job.fail("exchange", fmt.Errorf("name %q: use 1 to 64 letters, digits, '.', '_' or '-'", name))
	}
	return e
}

func (e *exchangeStream[T]) encode(partitions int) [][]byte {
	blobs := make([][]byte, partitions)
	for i := range blobs {
		blobs[i] = []byte{0}
	}
	if !e.parentS.has {
		return blobs
	}
	for i := range blobs {
		blobs[i][0] = 1
	}
	for _, v := range e.parentS.out {
		p := e.partition(v, partitions)
		at := len(blobs[p])
		blobs[p] = append(blobs[p], 0)
		blobs[p] = e.codec.Append(blobs[p], v)
		blobs[p] = fixLength(blobs[p], at)
	}
	return blobs
}

// errExchange marks a malformed exchange record.
var errExchange = errors.New("malformed exchange record")

// decode decodes the blobs of records into a batch, with the input ranges
// they derive from.
func (e *exchangeStream[T]) decode(records []Record, into []T) (batch []T, has bool, origin []Range, err error) {
	batch = into[:0]
	for _, r := range records {
		origin = append(origin, r.Origin...)
		b := r.Value
		if len(b) == 0 || b[0] > 1 {
			return nil, false, nil, fmt.Errorf("exchange %s: %w at offset %d: %w", e.name, errExchange, r.Offset, ErrPermanent)
		}
		has = has || b[0] == 1
		for b = b[1:]; len(b) > 0; {
			n, l := binary.Uvarint(b)
			if l <= 0 || uint64(len(b)-l) < n {
				return nil, false, nil, fmt.Errorf("exchange %s: %w at offset %d: %w", e.name, errExchange, r.Offset, ErrPermanent)
			}
			v, err := e.codec.Decode(b[l : l+int(n)])
			if err != nil {
				return nil, false, nil, fmt.Errorf("exchange %s: decode at offset %d: %w: %w", e.name, r.Offset, err, ErrPermanent)
			}
			batch = append(batch, v)
			b = b[l+int(n):]
		}
	}
	return batch, has, mergeRanges(origin), nil
}

// mergeRanges sorts ranges by topic and partition.
func mergeRanges(rs []Range) []Range {
	slices.SortFunc(rs, func(a, b Range) int {
		if a.Topic != b.Topic {
			if a.Topic < b.Topic {
				return -1
			}
			return 1
		}
		return int(a.Partition) - int(b.Partition)
	})
	return slices.CompactFunc(rs, func(a, b Range) bool { return a == b })
}

// The receiving side of an exchange is an input of its stage's task.

func (e *exchangeStream[T]) topic() string { return e.topicName }

func (e *exchangeStream[T]) cut(context.Context, []Range) ([]Range, error) {
	return nil, errors.New("microbatch: an exchange is cut by batch id")
}

func (e *exchangeStream[T]) cutBatch(ctx context.Context, id uint64, after []Range) ([]Range, time.Time, error) {
	return e.src.CutBatch(ctx, id, after)
}

func (e *exchangeStream[T]) recordCount() int { return len(e.loaded) }

func (e *exchangeStream[T]) receiver() input  { return e }
func (e *exchangeStream[T]) origins() []Range { return e.origin }

func (e *exchangeStream[T]) reader() func(ctx context.Context, ranges []Range) (func(), error) {
	into := e.loaded[:0:0]
	return func(ctx context.Context, ranges []Range) (func(), error) {
		var recs []Record
		if err := e.src.Read(ctx, ranges, func(r Record) { recs = append(recs, r) }); err != nil {
			return nil, err
		}
		batch, has, origin, err := e.decode(recs, into)
		if err != nil {
			return nil, err
		}
		return func() { e.loaded, e.has, e.origin = batch, has, origin }, nil
	}
}

// sendOutput is the output operation of a task that ends its stage at an
// exchange: the parent's batch, split by downstream partition, goes to the
// exchange topic in the batch's transaction, one message per partition,
// empty or not, so that downstream tasks can tell when a batch is complete.
type sendOutput struct {
	e    exchanger
	sink int // index of the task's sink in the job's sinks
}

func (o sendOutput) node() node       { return o.e.exchange().parent }
func (o sendOutput) keepsBatch() bool { return false }
func (o sendOutput) collects() bool   { return true }

func (o sendOutput) run(_ context.Context, r *batchRun) error {
	x := o.e.exchange()
	for p, blob := range o.e.encode(x.partitions) {
		r.messages[o.sink] = append(r.messages[o.sink], Message{Topic: x.topicName, Partition: int32(p), Value: blob})
	}
	return nil
}
