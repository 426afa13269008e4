// Package sinks holds dstream's output sinks.
//
// Kafka writes each batch's messages in one Kafka transaction under a
// transactional id derived from the job, so a restarted or taken-over
// instance fences the old producer and aborts its open transaction. The
// transaction also holds the batch's marker, in the job's own control
// topic, even for a batch without messages: the batch's plan (batch time,
// offset ranges, topic ids) and the hash of the graph that computed it.
// Every record carries the job and its provenance: the headers dstream-job,
// dstream-batch-id, dstream-batch-time (RFC 3339, UTC) and dstream-offsets
// (partition:from-until,…). Committed reads the markers back from the
// control topic's tail, which is how recovery learns whether a prepared
// batch's output is already committed, and which batches to recompute when
// the checkpoint store lost its last writes; since the control topic is the
// job's, jobs that share output or dead-letter topics never see each other's
// batches. Records that would exceed a topic's max.message.bytes are cut to
// fit when they may be (dead letters), with dstream-truncated-from naming
// their size, or fail the batch permanently otherwise. Together with the
// engine's prepare/commit protocol (see package state) a read_committed
// reader sees every batch exactly once.
//
// Printing (microbatch's Pprint) is at-least-once: a replayed batch prints again.
package sinks
