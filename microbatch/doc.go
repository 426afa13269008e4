// Package microbatch is dstream's engine: a typed Go version of Spark Streaming's
// StreamingContext and DStream.
//
// A Job cuts its input into batches, one per batch interval. Batch n has the
// batch time zero + n×interval and a Plan that names, for every input
// partition, the offset range [from, until) it covers. The plan is recorded in
// the Store before any record is read, so the batch can be recomputed later
// from the plan alone.
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
// After the graph ran, a batch commits in three steps: its state changes are
// prepared in the Store (not yet visible), the transactional sinks commit its
// output, then the checkpoint flips to the batch. On restart a prepared batch
// is completed if its output is already in the sinks and run again from its
// plan otherwise, so state is never counted twice and a transactional sink
// never holds a batch twice. Output operations that are not transactional
// (Pprint, ForeachBatch) are at-least-once: a batch replayed after a crash
// prints again.
package microbatch
