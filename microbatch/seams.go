package microbatch

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Record is one record read from a Source. Its Value belongs to the batch
// that read it: the engine and the graph's operators may keep it for as
// long as that batch (or a window holding it) is in use, so a Source must
// not reuse the memory of a record it emitted; a key kept in state is
// copied first.
type Record struct {
	Partition int32
	Offset    int64
	Value     []byte
	// Origin is, for a record of an exchange between the stages of a
	// sharded job, the input ranges it derives from (nil otherwise).
	Origin []Range
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
	// Planned is the last batch whose plan is recorded: Committed, or
	// further when batches planned together (a group commit) did not
	// commit yet.
	Planned uint64
	// Prepared is the batch, after Committed and at most Planned, whose
	// state deltas are staged but not yet committed, else 0.
	Prepared uint64
	// Epoch is the fencing token of this holder of the job.
	Epoch uint64
	// Graph is the fingerprint of the compiled graph that committed last
	// (nil: none recorded, a new job or one of an older format).
	Graph []byte
	// Base is the reset base: a reset dropped the state of batches up to
	// Base, and their outputs and markers belong to the run before it.
	Base uint64
}

// Segment is a snapshot of part of one stateful operator's state: the
// entries whose sequence numbers fall in one range, as of one batch. The
// engine encodes it; a Store only keeps it, replacing an older segment of
// the same operator and index.
type Segment struct {
	Op    string
	Index uint32
	Data  []byte
}

// Delta is one batch's changes to one stateful operator's state, encoded by
// the engine.
type Delta struct {
	Op    string
	Batch uint64
	Data  []byte
}

// Checkpoint is what Commit makes durable with a batch, besides flipping
// Committed to it.
type Checkpoint struct {
	Batch uint64
	// KeepFrom is the first plan to keep; earlier ones may be dropped.
	KeepFrom uint64
	// Graph is the compiled graph's fingerprint when it differs from the
	// stored one (nil: unchanged).
	Graph []byte
	// Replace lists operators whose stored state Segments replace whole:
	// their older segments and deltas go.
	Replace []string
	// Segments are rewritten snapshots.
	Segments []Segment
	// Drop lists deltas that every segment has passed (Data unused).
	Drop []Delta
}

// StatePart is one stored part of an operator's state, as LoadState finds
// it: a segment or a delta.
type StatePart struct {
	Kind PartKind
	// Index is a segment's index.
	Index uint32
	// Batch is a delta's batch.
	Batch uint64
	// Data is the encoded part; the caller may keep it.
	Data []byte
}

// PartKind tells segments and deltas apart.
type PartKind uint8

// The kinds of StatePart.
const (
	SegmentPart PartKind = iota + 1
	DeltaPart
)

// Store makes a job's plans and checkpoints durable. Every write is a
// compare-and-set on the batch id and on the holder's epoch, so a write
// retried after an ambiguous failure, or sent by a fenced instance, cannot
// corrupt the checkpoint. Errors that retrying may fix (the network, a
// timeout) are returned as they are; ErrConflict is only a compare-and-set
// that found other progress, ErrFenced a newer holder, and errors that
// retrying cannot fix are marked ErrPermanent.
type Store interface {
	// Acquire blocks until this instance holds the job (a standby waits
	// here), fences every earlier holder and returns the job's progress.
	Acquire(ctx context.Context) (Meta, error)
	// Renew extends the holder's lease; ErrFenced when it was lost. It is
	// called from a goroutine of its own, concurrently with the other
	// methods.
	Renew(ctx context.Context) error
	// Release gives the job up so a standby can take over at once.
	Release(ctx context.Context) error
	// RecordPlan records plans, in ID order, all or none: each ID must be
	// the last one recorded plus one, or that of a recorded plan with the
	// same content (an idempotent retry). A group of batches that commit
	// together records its plans in one call.
	RecordPlan(ctx context.Context, plans ...Plan) error
	// Plans returns the recorded plans with from ≤ ID ≤ to, in ID order.
	Plans(ctx context.Context, from, to uint64) ([]Plan, error)
	// LoadState calls fn for every stored part of operator op's state: its
	// segments and its deltas, in no order. (A delta past Committed is a
	// prepared batch's; the engine ignores it.)
	LoadState(ctx context.Context, op string, fn func(StatePart) error) error
	// Prepare stages the deltas of batch (after Committed, at most
	// Planned) without making them visible. A group of batches stages one
	// delta per operator, covering the group, under its last batch.
	Prepare(ctx context.Context, batch uint64, deltas []Delta) error
	// Commit makes batch c.Batch's staged deltas visible, stores c and
	// advances Committed to c.Batch (the Prepared batch), atomically.
	Commit(ctx context.Context, c Checkpoint) error
	// Discard drops the staged deltas of batch.
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
	// Partition is the partition of an exchange topic the message goes to
	// (sinks partition other topics by key).
	Partition int32
	// MayTruncate lets the sink cut the value to what its topic takes
	// (a dead letter of an oversized line), noting the original size in a
	// header, rather than fail the batch.
	MayTruncate bool
}

// Header is a record header of a Message.
type Header struct {
	Key   string
	Value []byte
}

// BatchInfo describes the batch a sink writes: its provenance.
type BatchInfo struct {
	Plan
	// Graph is the hash of the compiled graph's fingerprint.
	Graph string
	// Base is the job's reset base (see Meta.Base).
	Base uint64
	// Provenance is the input ranges the batch's output derives from, when
	// they are not the plan's (a task fed by an exchange); nil otherwise.
	Provenance []Range
}

// OffsetsHeader renders the input ranges the batch derives from (Origin)
// as Plan.OffsetsHeader does: the dstream-offsets of its records.
func (b BatchInfo) OffsetsHeader() string { return Plan{Ranges: b.Origin()}.OffsetsHeader() }

// Origin returns the input ranges the batch derives from: its provenance,
// or its plan's ranges.
func (b BatchInfo) Origin() []Range {
	if b.Provenance != nil {
		return b.Provenance
	}
	return b.Ranges
}

// Sink receives the messages of Write output operations.
type Sink interface {
	// WriteBatch writes all messages of one batch.
	WriteBatch(ctx context.Context, b BatchInfo, msgs []Message) error
}

// TransactionalSink writes every batch all or nothing, even one without
// messages, together with a marker naming the batch and its plan, and finds
// on recovery the batches it holds: so recovery never writes a batch twice,
// and can recompute batches whose checkpoint the Store lost.
type TransactionalSink interface {
	Sink
	// WriteBatches writes consecutive batches, msgs[i] the messages of
	// batches[i], each with its marker, in one transaction: a group of
	// batches that commit together (WriteBatch is a group of one). The
	// engine writes a TransactionalSink only through WriteBatches.
	WriteBatches(ctx context.Context, batches []BatchInfo, msgs [][]Message) error
	// Committed returns the batches after `after` whose output is
	// committed, in ID order, as their markers describe them. It first
	// fences the sink's earlier writers, so that no transaction can still
	// commit behind its back.
	Committed(ctx context.Context, after uint64) ([]BatchInfo, error)
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

// StateLostError reports that the Store is behind a transactional sink (the
// sink holds batches the checkpoint has never seen, so the Store lost data)
// in a way recovery cannot heal: Why says what is missing.
type StateLostError struct {
	Committed uint64 // last batch the Store committed
	SinkLast  uint64 // last batch the sink holds
	Why       string
}

// Is makes a StateLostError permanent.
func (e *StateLostError) Is(target error) bool { return target == ErrPermanent }

func (e *StateLostError) Error() string {
	return fmt.Sprintf("state lost: the checkpoint is at batch %d but the output holds batches up to %d, "+
		"and they cannot be recomputed: %s; refusing to count from a state the job does not have "+
		"(run Redis with appendonly yes; `dstream reset --yes` starts the job over)", e.Committed, e.SinkLast, e.Why)
}

// BuildError reports a graph that cannot run, found before Start.
type BuildError struct {
	Op  string
	Err error
}

func (e *BuildError) Error() string { return fmt.Sprintf("build %s: %v", e.Op, e.Err) }
func (e *BuildError) Unwrap() error { return e.Err }
