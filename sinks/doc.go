// Package sinks holds dstream's output sinks.
//
// Kafka writes each batch's messages in one Kafka transaction under a
// transactional id derived from the job, so a restarted or taken-over
// instance fences the old producer and aborts its open transaction. Every
// record carries its provenance: the headers dstream-batch-id,
// dstream-batch-time (RFC 3339, UTC) and dstream-offsets
// (partition:from-until,…). LastBatch reads the highest committed batch id
// back from the tails of the topic and of the other topics the sink writes
// (dead letters), which is how recovery learns whether a prepared batch's
// output is already committed. Together with the engine's
// prepare/commit protocol (see package state) a read_committed reader sees
// every batch exactly once.
//
// Printing (microbatch's Pprint) is at-least-once: a replayed batch prints again.
package sinks
