// Package state keeps a dstream job's plans and checkpoints in Redis: the
// durable microbatch.Store.
//
// Layout. All keys of job J share the hash tag {dstream:J}, so a job lives in
// one slot and also works on Redis Cluster: …:meta (committed, planned and
// prepared batch ids, epoch, format version, committed offsets), …:lease
// (the active instance), …:plans (batch id → plan), …:pending (the staged
// changes of the prepared batch, one string) and …:state:<op> (one hash per
// stateful operator). Commits are incremental: a batch writes only the keys
// it changed.
//
// Fencing. Acquire takes the lease (a key with a TTL the holder renews) and
// increments the epoch in the same Lua script. Every later write first
// compares the caller's epoch with the stored one, atomically with the write:
// small writes are Lua scripts; Prepare and Commit, which carry a batch's
// changes, read …:meta under WATCH and write in a MULTI/EXEC transaction
// that Redis drops if …:meta changed meanwhile (moving 10k keys as plain
// commands costs a tenth of moving them through Lua). So an instance that
// lost the job (paused past its lease, partitioned) cannot write again: it
// gets microbatch.ErrFenced. The lease keeps two healthy
// replicas from fencing each other in a loop; the epoch keeps a stale one
// harmless. Every write is also a compare-and-set on the batch id, so a write
// retried after an ambiguous failure (go-redis retries on network errors)
// either finds its own effect and succeeds, or fails with ErrConflict.
//
// Exactly-once. For batch n the engine (package microbatch) runs:
//
//  1. RecordPlan(n): the plan is durable before any record is read.
//  2. Prepare(n, changes): the state changes go to …:pending, invisible.
//  3. The transactional sink commits batch n's output in one Kafka
//     transaction; every record carries dstream-batch-id n.
//  4. Commit(n): one script applies …:pending to the state hashes and sets
//     committed = n.
//
// A crash before 3 completes leaves the output without n: recovery discards
// the pending changes and runs n again from its recorded plan, and since a
// batch is a pure function of its plan and the state before it, it produces
// the same output and state. A crash between 3 and 4 leaves n in the output
// and in …:pending: recovery sees dstream-batch-id n at the topic's tail (after
// fencing the old producer, so no transaction can still commit behind it) and
// completes the commit without writing again. The state thus reflects each
// batch once and the topic holds each batch once. If the topic holds a batch
// beyond committed+1, Redis lost data (no persistence, a flush): the engine
// refuses to run rather than count from zero. An instance running when the
// checkpoint vanishes stops at its next write with ErrCheckpointLost.
//
// Redis must keep its data: run it with AOF (appendonly yes) and
// maxmemory-policy noeviction. Check warns loudly when it is not so.
package state
