package microbatch

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// output is an output operation: it consumes a stream's batches.
type output interface {
	node() node
	// keepsBatch: the operation may keep the batch past its call.
	keepsBatch() bool
	// collects: run only collects messages for the batch's commit, with
	// no effect of its own (a Write), so the batch may wait to commit
	// with the batches after it.
	collects() bool
	// run emits the batch; transactional sinks only collect it.
	run(ctx context.Context, r *batchRun) error
}

type outputOp[T any] struct {
	stream *Stream[T]
	f      func(ctx context.Context, r *batchRun, batch []T) error
	// keeps: f may keep the batch past its call.
	keeps bool
	// collect: f only adds messages to the batch's.
	collect bool
}

func (o *outputOp[T]) node() node       { return o.stream }
func (o *outputOp[T]) keepsBatch() bool { return o.keeps }
func (o *outputOp[T]) collects() bool   { return o.collect }

func (o *outputOp[T]) run(ctx context.Context, r *batchRun) error {
	if !o.stream.has {
		return nil
	}
	return o.f(ctx, r, o.stream.out)
}

func addOutput[T any](s *Stream[T], f func(ctx context.Context, r *batchRun, batch []T) error) *outputOp[T] {
	o := &outputOp[T]{stream: s, f: f}
	s.job.outputs = append(s.job.outputs, o)
	return o
}

// pprintDashes is the rule PySpark prints around a batch's time.
const pprintDashes = "-------------------------------------------"

// Pprint prints the first n elements of every batch as PySpark's pprint
// does: a rule, "Time: YYYY-MM-DD HH:MM:SS", a rule, one element per line as
// Python's print() shows it (a string bare, anything else as its repr, so a
// pair of strings prints ('a', 'b')), "..." when the batch had more, and an
// empty line.
// Printing is at-least-once: a batch replayed after a crash prints again.
func (s *Stream[T]) Pprint(n int) {
	addOutput(s, func(_ context.Context, r *batchRun, batch []T) error {
		var b strings.Builder
		formatPprint(&b, r.plan.Time.In(r.job.location), batch, n)
		_, err := r.job.stdout.Write([]byte(b.String()))
		if err != nil {
			return fmt.Errorf("pprint: %w", err)
		}
		return nil
	})
}

func formatPprint[T any](b *strings.Builder, t time.Time, batch []T, n int) {
	b.WriteString(pprintDashes)
	b.WriteString("\nTime: ")
	b.WriteString(pyTime(t))
	b.WriteByte('\n')
	b.WriteString(pprintDashes)
	b.WriteByte('\n')
	for i, v := range batch {
		if i == n {
			b.WriteString("...\n")
			break
		}
		pyStr(b, reflect.ValueOf(&v).Elem())
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
}

// pyTime formats t as Python's str(datetime): microseconds only when set.
func pyTime(t time.Time) string {
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02 15:04:05")
	}
	return t.Format("2006-01-02 15:04:05.000000")
}

// ForeachBatch calls f with every batch of s, in the order output operations
// were declared. Like Spark's foreachRDD it is at-least-once: a batch replayed
// after a crash is passed again.
func (s *Stream[T]) ForeachBatch(f func(ctx context.Context, b BatchInfo, batch []T) error) {
	o := addOutput(s, func(ctx context.Context, r *batchRun, batch []T) error {
		return f(ctx, r.info(), batch)
	})
	o.keeps = true
}

// Write sends every batch of s to sink, each element encoded as one Message.
// A TransactionalSink gets a batch's messages in one transaction after the
// batch's state is prepared, which makes the output exactly-once.
func Write[T any](s *Stream[T], sink Sink, encode func(b BatchInfo, v T) Message) {
	j := s.job
	idx := -1
	for i, known := range j.sinks {
		if known == sink {
			idx = i
		}
	}
	if idx < 0 {
		idx = len(j.sinks)
		j.sinks = append(j.sinks, sink)
	}
	o := addOutput(s, func(_ context.Context, r *batchRun, batch []T) error {
		info := r.info()
		for _, v := range batch {
			r.messages[idx] = append(r.messages[idx], encode(info, v))
		}
		return nil
	})
	o.collect = true
}
