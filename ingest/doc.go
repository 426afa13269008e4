// Package ingest turns the partitions of a Kafka topic into a discretized
// stream: a microbatch.Source whose batches are offset ranges.
//
// Cut plans the next batch, one range per partition in partition order: each
// continues at the previous batch's Until and ends at the partition's last
// stable offset (read committed, so an open transaction holds it back), or
// earlier under a rate cap: max(1, ⌊MaxRatePerPartition × interval⌋) offsets
// per partition (Spark's maxRatePerPartition), and with backpressure
// ⌊limit × interval⌋ offsets in all, shared in proportion to each
// partition's backlog. Every Cut asks the broker for the topic's partitions,
// so a partition added to the topic joins the next batch, at its earliest
// offset.
//
// Read fetches exactly the planned ranges with raw fetch requests, not a
// consumer group: the plan, not group membership, decides what is read, so
// any run reads the same records for the same plan, partition by partition
// in offset order. Transaction markers, aborted records and compacted gaps
// take offsets inside a range but yield no records; Read follows the
// broker's next offset across them, so a range whose last offsets are
// markers ends where it should. Partitions are fetched at once and emitted
// as soon as the partitions before them are; record values share the
// fetched memory.
//
// Replay is exact as long as the broker keeps the records: on a compacted
// topic, a plan read again after the cleaner has run yields only the records
// it left.
//
// Nothing is reset silently: a planned offset that the broker no longer has
// (retention, DeleteRecords) fails with an OffsetGapError naming topic,
// partition and offsets; offsets past a partition's end (truncation) and a
// topic deleted and created again under a running source fail too. These
// errors are microbatch.ErrPermanent: retrying cannot bring the records back.
package ingest
