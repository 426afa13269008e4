// Package microbatch is dstream's engine: a typed Go version of Spark Streaming's
// StreamingContext and DStream.
//
// A Job cuts its input into batches, one per batch interval. Batch n has the
// batch time zero + n×interval and a Plan that names, for every input
// partition, the offset range [from, until) it covers. The plan is recorded in
// the Store before the batch runs, so the batch can be recomputed later from
// the plan alone. While the job is behind (catching up on a backlog), the
// next batch is cut and read as the current one computes and commits;
// reading has no side effects, and its plan is still recorded before it runs.
//
// Streams form a graph built before Start: stateless operators (Map, Filter,
// ReduceByKey, Join …) transform each batch; windowed operators see the
// batches of the last window length and emit only at multiples of their
// slide; stateful operators (UpdateStateByKey, MapWithState) carry keyed
// state from batch to batch. Batch time, never the wall clock, drives windows
// and state, so a batch is a pure function of its plan and the state before
// it: the same input gives byte-identical output on every run, whatever
// GOMAXPROCS is.
//
// Memory: a batch's elements live in slices that the next batches reuse when
// nothing keeps them (a window keeps its batches; a ForeachBatch function
// may keep the slice it is given, so its stream's slices are never reused).
// Keyed state is held compactly (an entry is the key, the value and one word;
// keys are indexed by position), and a join with UpdateStateByKey's output
// looks its keys up in the state instead of listing every key each batch.
//
// After the graph ran, a batch commits in three steps: its state changes are
// prepared in the Store (not yet visible), the transactional sinks commit its
// output, then the checkpoint flips to the batch. On restart a prepared batch
// is completed if its output is already in the sinks and run again from its
// plan otherwise, so state is never counted twice and a transactional sink
// never holds a batch twice. Output operations that are not transactional
// (Pprint, ForeachBatch) are at-least-once: a batch replayed after a crash
// prints again.
package microbatch
