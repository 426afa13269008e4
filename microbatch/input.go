package microbatch

import (
	"context"
	"fmt"
	"unsafe"
)

// input is a stream fed by a Source: the roots of the graph.
type input interface {
	node
	topic() string
	cut(ctx context.Context, after []Range) ([]Range, error)
	// reader returns a read of ranges into memory of the input's own, which
	// returns install: install makes what was read the input's batch. The
	// read may run on a goroutine of its own, while the job computes the
	// batch before; reader and install run on the job's.
	reader() func(ctx context.Context, ranges []Range) (install func(), err error)
	recordCount() int
}

type sourceInput[T any] struct {
	*Stream[T]
	src     Source
	convert func(Record) T
	// raw marks an input of the records as they are (Records): convert is
	// the identity, and a RecordAppender may fill the batch itself.
	raw    bool
	loaded []T
}

func (in *sourceInput[T]) topic() string    { return in.src.Topic() }
func (in *sourceInput[T]) recordCount() int { return len(in.loaded) }

// closeSource closes the source if it holds resources.
func (in *sourceInput[T]) closeSource() error {
	if c, ok := in.src.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

func (in *sourceInput[T]) cut(ctx context.Context, after []Range) ([]Range, error) {
	return in.src.Cut(ctx, after)
}

func (in *sourceInput[T]) reader() func(ctx context.Context, ranges []Range) (func(), error) {
	// Memory of an earlier batch if nothing keeps it (a window over the
	// input does), else a fresh slice sized like the last batch.
	buf := in.buffer(len(in.loaded))
	return func(ctx context.Context, ranges []Range) (func(), error) {
		batch := buf[:0]
		if records, ok := any(&batch).(*[]Record); ok && in.raw {
			if ra, ok := in.src.(RecordAppender); ok {
				var err error
				*records, err = ra.AppendRecords(ctx, ranges, *records)
				return func() { in.loaded = batch }, err
			}
		}
		err := in.src.Read(ctx, ranges, func(rec Record) {
			batch = append(batch, in.convert(rec))
		})
		return func() { in.loaded = batch }, err
	}
}

func addSource[T any](j *Job, src Source, op string, convert func(Record) T) *sourceInput[T] {
	for _, in := range j.inputs {
		if in.topic() == src.Topic() {
			j.fail(op, fmt.Errorf("two inputs read %q: give each input its own topic", src.Topic()))
		}
	}
	in := &sourceInput[T]{src: src, convert: convert}
	in.Stream = newStream[T](j, op, 1)
	in.Stream.output = outReused
	in.Stream.compute = func(*batchRun) ([]T, bool) { return in.loaded, true }
	j.inputs = append(j.inputs, in)
	return in
}

// Lines returns a stream of the records of src as text, one element per
// record, like Spark's socketTextStream or a Kafka stream's values. The
// strings share the records' memory: converting them costs no copy.
func (j *Job) Lines(src Source) *Stream[string] {
	return addSource(j, src, "lines", func(r Record) string {
		return unsafe.String(unsafe.SliceData(r.Value), len(r.Value))
	}).Stream
}

// Records returns a stream of the raw records of src, with their partitions
// and offsets.
func (j *Job) Records(src Source) *Stream[Record] {
	in := addSource(j, src, "records", func(r Record) Record { return r })
	in.raw = true
	return in.Stream
}

// queueInput feeds one queued batch per interval, like Spark's queueStream
// with oneAtATime: batch i of the plan is the range [i, i+1) of its queue, so
// queued input replays exactly like Kafka input.
type queueInput[T any] struct {
	*Stream[T]
	name   string
	queue  [][]T
	loaded []T
}

func (q *queueInput[T]) topic() string    { return q.name }
func (q *queueInput[T]) recordCount() int { return len(q.loaded) }

func (q *queueInput[T]) cut(_ context.Context, after []Range) ([]Range, error) {
	next := int64(0)
	if len(after) > 0 {
		next = after[0].Until
	}
	until := min(next+1, int64(len(q.queue)))
	return []Range{{Topic: q.name, From: next, Until: until}}, nil
}

func (q *queueInput[T]) reader() func(ctx context.Context, ranges []Range) (func(), error) {
	buf := q.buffer(len(q.loaded))
	return func(_ context.Context, ranges []Range) (func(), error) {
		batch := buf[:0]
		for _, r := range ranges {
			for i := r.From; i < r.Until; i++ {
				if i < 0 || i >= int64(len(q.queue)) {
					return nil, fmt.Errorf("queue %s: batch %d of %d is not queued", q.name, i, len(q.queue))
				}
				batch = append(batch, q.queue[i]...)
			}
		}
		return func() { q.loaded = batch }, nil
	}
}

// QueueStream returns a stream that yields batches[0] at the first batch
// time, batches[1] at the second, and so on, then empty batches: Spark's
// queueStream, for tests and for feeding recorded data.
func QueueStream[T any](j *Job, batches [][]T) *Stream[T] {
	q := &queueInput[T]{name: fmt.Sprintf("queue-%d", len(j.inputs)), queue: batches}
	q.Stream = newStream[T](j, "queueStream", 1)
	q.Stream.output = outReused
	q.Stream.compute = func(*batchRun) ([]T, bool) { return q.loaded, true }
	j.inputs = append(j.inputs, q)
	return q.Stream
}
