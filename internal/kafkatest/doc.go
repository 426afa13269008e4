// Package kafkatest runs a real Apache Kafka broker for integration tests.
//
// Start formats a fresh KRaft data directory in a temporary directory and
// runs one combined broker and controller (node 1) from the jars that
// .ci/install fetched from Maven Central, as a java child process in its own
// process group, on free 127.0.0.1 ports. It returns once the broker answers
// a metadata request, which takes a few seconds, and fails with the tail of
// the broker's log if it does not. The broker is set up for one node: the
// offsets and transaction state topics have replication factor 1 and min ISR
// 1, topics are never created automatically, and consumer groups rebalance
// without the initial delay. Transactions and read_committed work; an
// optional SASL_PLAINTEXT listener takes SCRAM-SHA-512, and an optional SSL
// listener serves a given certificate from a PEM keystore (NewTLS makes one
// signed by a CA of its own).
//
// Stop (SIGTERM, then SIGKILL after a timeout) and Kill (SIGKILL) keep the
// data directory, and Restart brings the broker back on the same ports with
// the same data, for crash and restart tests. Close stops it and removes the
// directory. If the test binary dies, the kernel kills the broker with it.
//
// Tests get a broker in one of two ways:
//
//   - Require(t, opts) starts one for the test alone and closes it at the end
//     of the test: for tests that stop, kill or restart it.
//   - Shared(t) returns one broker for the whole test binary, started on
//     first use and closed when TestMain's call to Main returns. Startup costs
//     seconds, so prefer it; give each test topics of its own (NewTopic).
//
// A package shares one broker among its tests like this:
//
//	func TestMain(m *testing.M) {
//		os.Exit(kafkatest.Main(m, kafkatest.Options{}))
//	}
//
//	func TestSink(t *testing.T) {
//		b := kafkatest.Shared(t)
//		topic := b.NewTopic(t, 3, nil) // a name of its own, e.g. TestSink-1
//		cl, err := b.Client(kgo.ConsumeTopics(topic))
//		...
//	}
//
// Both skip the test, saying to run .ci/install, when java or the jars are
// missing, and fail it instead when DSTREAM_REQUIRE_IT=1 (for CI).
//
// The jars are found in Options.Home, else $DSTREAM_KAFKA_HOME (a directory
// holding libs/), else <repo root>/.cache/kafka/<version>/, where .ci/install
// puts them. The broker logs warnings to <Broker.Dir>/logs/server.log and its
// console to logs/stdout.log.
package kafkatest
