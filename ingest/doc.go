// Package ingest turns the partitions of a Kafka topic into a discretized
// stream: a microbatch.Source whose batches are offset ranges.
//
// Cut plans the next batch: for every partition it continues at the previous
// batch's Until and ends at the partition's last stable offset (read
// committed), or earlier when a rate cap (Spark's maxRatePerPartition, or
// the backpressure estimate) limits the batch. Read fetches exactly the
// planned ranges with raw fetch requests, not a consumer group: the plan, not
// group membership, decides what is read, so any run reads the same records
// for the same plan. Transaction markers, aborted records and compacted gaps
// take offsets inside a range but yield no records; Read follows the broker's
// next offset across them, so a range whose last offsets are markers ends
// where it should.
//
// Nothing is reset silently: a planned offset that the broker no longer has
// (retention, truncation, a recreated topic) fails with an OffsetGapError
// naming topic, partition and offsets.
package ingest
