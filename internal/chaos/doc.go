// Package chaos proves dstream's exactly-once guarantee with real
// processes: the dstream binary runs as a child process against a real Kafka
// broker and a real redis-server (internal/kafkatest, internal/redistest),
// and is SIGKILLed, paused and restarted while the servers restart under it.
//
// Processor runs one dstream process and watches its log and /readyz. Feed
// writes weblog lines (a few malformed) to the input topic. Check verifies
// what a read_committed reader sees of the output and dead-letter topics
// against a recomputation from the input alone: each batch's results are the
// top-N of the window that its dstream-offsets header and the batches before
// it name, with running totals over every line up to it; every batch id
// from the first to the last appears once; every malformed line is a dead
// letter once. CheckTotals compares the totals checkpointed in Redis with
// the input's counts per IP.
//
// The tests: TestChaos (short by default; DSTREAM_CHAOS=1, as make chaos
// sets, for millions of lines and dozens of kills), TestTakeover (a hot
// standby takes over from a killed or paused active instance, which is then
// fenced), TestStateLost (a Redis that lost its data stops the job), and
// TestRedisCluster (the checkpoints on a 3-master Redis Cluster, the job's
// master killed and restarted from its AOF mid-run).
package chaos
