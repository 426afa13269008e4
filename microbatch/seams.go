package microbatch

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Record is one record read from a Source.
type Record struct {
	Partition int32
	Offset    int64
	Value     []byte
}

// Source is an input the engine cuts into batches. A Source is replayable:
// Read of the same ranges yields the same records on every call, which is
// what lets a recorded Plan stand in for the data it names. The engine calls
// Cut and Read one at a time, but not always from the same goroutine: while
// the job is behind, the next batch is cut and read as the last one computes.
type Source interface {
	// Topic names the input; every Range the source cuts carries it.
	Topic() string
	// Cut returns the ranges of the next batch. after holds the ranges of
	// the previous batch (nil on a fresh start): each partition continues
	// at its Until.
	Cut(ctx context.Context, after []Range) ([]Range, error)
	// Read calls emit for every record in ranges, partition by partition,
	// in offset order.
	Read(ctx context.Context, ranges []Range, emit func(Record)) error
}

// RecordAppender is a Source that can append the records of ranges to a
// slice itself, in Read's order, without a call per record: the engine
// reads a Records input with it when the Source has it.
type RecordAppender interface {
	AppendRecords(ctx context.Context, ranges []Range, dst []Record) ([]Record, error)
}

// Meta is what a Store knows of a job's progress.
type Meta struct {
	// Committed is the last batch whose output and state are committed
	// (0: none yet).
	Committed uint64
	// Planned is the last batch whose plan is recorded; Planned is
	// Committed or Committed+1.
	Planned uint64
	// Prepared is Committed+1 when that batch's state changes are staged
	// but not yet committed, else 0.
	Prepared uint64
	// Epoch is the fencing token of this holder of the job.
	Epoch uint64
}

// Change is one keyed state change of a stateful operator: the new encoded
// value of Key, or its removal.
type Change struct {
	Op     string
	Key    []byte
	Value  []byte
	Delete bool
}

// Store makes a job's plans and checkpoints durable. Every write is a
// compare-and-set on the batch id and on the holder's epoch, so a write
// retried after an ambiguous failure, or sent by a fenced instance, cannot
// corrupt the checkpoint.
type Store interface {
	// Acquire blocks until this instance holds the job (a standby waits
	// here), fences every earlier holder and returns the job's progress.
	Acquire(ctx context.Context) (Meta, error)
	// Renew extends the holder's lease; ErrFenced when it was lost.
	Renew(ctx context.Context) error
	// Release gives the job up so a standby can take over at once.
	Release(ctx context.Context) error
	// RecordPlan records plan p; p.ID must be Planned+1, or equal to a
	// recorded plan with the same content (an idempotent retry).
	RecordPlan(ctx context.Context, p Plan) error
	// Plans returns the recorded plans with from ≤ ID ≤ to, in ID order.
	Plans(ctx context.Context, from, to uint64) ([]Plan, error)
	// LoadState calls fn for every committed key of operator op.
	LoadState(ctx context.Context, op string, fn func(key, value []byte) error) error
	// Prepare stages the state changes of batch (Committed+1) without
	// making them visible.
	Prepare(ctx context.Context, batch uint64, changes []Change) error
	// Commit makes batch's staged changes visible and advances Committed
	// to batch, atomically. Plans before keepFrom may be dropped.
	Commit(ctx context.Context, batch, keepFrom uint64) error
	// Discard drops the staged changes of batch.
	Discard(ctx context.Context, batch uint64) error
}

// Message is one output record for a Sink.
type Message struct {
	// Topic overrides the sink's topic (for dead letters written in the
	// same transaction as the results); empty for the sink's own topic.
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
}

// Header is a record header of a Message.
type Header struct {
	Key   string
	Value []byte
}

// BatchInfo describes the batch a sink writes: its provenance.
type BatchInfo struct {
	Plan
}

// Sink receives the messages of Write output operations.
type Sink interface {
	// WriteBatch writes all messages of one batch.
	WriteBatch(ctx context.Context, b BatchInfo, msgs []Message) error
}

// TransactionalSink writes a batch all or nothing and remembers which batches
// it holds, so that recovery never writes a batch twice.
type TransactionalSink interface {
	Sink
	// LastBatch returns the highest batch id whose messages are committed
	// (0: none).
	LastBatch(ctx context.Context) (uint64, error)
}

// Clock tells the engine when batch times are reached.
type Clock interface {
	Now() time.Time
	// Wait blocks until Now() ≥ t or ctx is done.
	Wait(ctx context.Context, t time.Time) error
}

var (
	// ErrFenced means a newer instance took the job over: this one must
	// stop without writing.
	ErrFenced = errors.New("fenced: another instance holds this job")
	// ErrConflict means a checkpoint write did not match the stored
	// progress (wrong batch id).
	ErrConflict = errors.New("checkpoint conflict")
	// ErrPermanent marks errors that retrying cannot fix (errors.Is):
	// the job stops at once instead of retrying.
	ErrPermanent = errors.New("permanent error")
)

// StateLostError reports that the Store is behind a transactional sink: the
// sink holds batches the checkpoint has never seen, so the Store lost data
// (for example a Redis restart without persistence).
type StateLostError struct {
	Committed uint64 // last batch the Store committed
	SinkLast  uint64 // last batch the sink holds
}

// Is makes a StateLostError permanent.
func (e *StateLostError) Is(target error) bool { return target == ErrPermanent }

func (e *StateLostError) Error() string {
	return fmt.Sprintf("state lost: the checkpoint is at batch %d but the output already holds batch %d; "+
		"the store lost data (is Redis persistence on?); refusing to continue, "+
		"reset the job's checkpoint and output topic to start over", e.Committed, e.SinkLast)
}

// BuildError reports a graph that cannot run, found before Start.
type BuildError struct {
	Op  string
	Err error
}

func (e *BuildError) Error() string { return fmt.Sprintf("build %s: %v", e.Op, e.Err) }
func (e *BuildError) Unwrap() error { return e.Err }
