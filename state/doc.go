// Package state keeps a dstream job's plans and checkpoints in Redis: the
// durable microbatch.Store, in checkpoint format 2 (docs/checkpoint.md).
//
// Layout. All keys of job J share the hash tag {dstream:J}, so a job lives in
// one slot: on a Redis Cluster on one master, whose scripts and WATCH/MULTI
// transactions see all of it, while jobs spread over the masters. …:meta
// (format version, epoch, committed, planned and prepared batch ids, the
// reset base, the fingerprint of the graph that committed last, the
// committed offsets), …:lease (the active instance), …:plans (batch id →
// plan, with topic ids), …:pending (the operators with deltas of the
// prepared batch) and …:st:<op>, one hash per stateful operator holding its
// segments (s<i>) and deltas (d<n>) as the engine encodes them: a few large
// values per operator, not one per key.
//
// Fencing. Acquire takes the lease (a key with a TTL the holder renews) and
// increments the epoch in the same Lua script. Every later write first
// compares the caller's epoch with the stored one, atomically with the write:
// small writes are Lua scripts; Prepare, Commit and Discard, which carry a
// batch's state, read …:meta under WATCH and write in a MULTI/EXEC
// transaction that Redis drops if …:meta changed meanwhile. So an instance
// that lost the job (paused past its lease, partitioned) cannot write again:
// it gets microbatch.ErrFenced. The lease keeps two healthy replicas from
// fencing each other in a loop; the epoch keeps a stale one harmless. Every
// write is also a compare-and-set on the batch id, so a write retried after
// an ambiguous failure (go-redis retries on network errors) either finds its
// own effect and succeeds, or fails with microbatch.ErrConflict. Only such a
// compare-and-set failure is a conflict: a network error or a timeout is
// returned as it is, and the engine retries it.
//
// Exactly-once. For batch n the engine (package microbatch) runs:
//
//  1. RecordPlan(n): the plan is durable before the batch runs.
//  2. Prepare(n, deltas): the deltas go to the state hashes as d<n>, which
//     loads ignore until n commits.
//  3. The transactional sink commits batch n's output and its marker (in
//     the job's control topic) in one Kafka transaction.
//  4. Commit(n): committed = n, rewritten segments, dropped deltas, in one
//     transaction.
//
// Batches that wait for the commit before them (a job catching up) commit
// as a group m..n in the same four steps: their plans in one RecordPlan, one
// delta per operator covering the group as d<n>, their outputs and markers in
// one Kafka transaction, one Commit(n); a crash then leaves the whole group
// or none of it, and recovery reruns its batches one by one from their plans.
//
// A crash before 3 completes leaves the output without n: recovery discards
// the deltas and runs n again from its recorded plan, and since a batch is a
// pure function of its plan and the state before it, it produces the same
// output and state. A crash between 3 and 4 leaves marker n in the control
// topic: recovery (after fencing the old producer, so no transaction can
// still commit behind it) completes the commit without writing again. If
// Redis lost its last writes (AOF everysec on a host crash), the markers
// hold the plans of the batches it lost, and recovery recomputes their state
// without writing their output again.
//
// Redis must keep its data: run it with AOF (appendonly yes) and
// maxmemory-policy noeviction, every node of a cluster. Check warns when it
// is not so, naming the node.
package state
