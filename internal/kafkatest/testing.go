package kafkatest

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dstream-io/dstream/internal/servertest"
)

// harness hands out brokers to tests.
var harness = servertest.Harness[*Broker, Options]{
	Name:         "kafkatest",
	Server:       "broker",
	Start:        Start,
	NotInstalled: ErrNotInstalled,
	Logs:         func(b *Broker) string { return b.proc.LogTail() },
}

// Require starts a broker of its own for the test and closes it when the test
// ends. Without java or the broker's jars it skips the test, saying to run
// .ci/install, unless DSTREAM_REQUIRE_IT=1, where it fails the test instead.
// Any other start failure fails the test.
//
// A broker of one's own is for tests that stop, kill or restart it; others
// should share one with Shared.
func Require(t testing.TB, opts Options) *Broker {
	t.Helper()
	return harness.Require(t, opts)
}

// Main runs the tests with m.Run (m is TestMain's *testing.M, or a func
// that runs another harness's Main around it) and then closes the broker that
// Shared started, if any, returning the exit code for TestMain. opts
// configure that broker.
// The broker starts only when a test first calls Shared, so a run that
// selects no such test pays nothing.
func Main(m interface{ Run() int }, opts Options) int {
	return harness.Main(m, opts)
}

// Shared returns the test binary's shared broker, starting it on first use
// with Main's options. It skips or fails the test as Require does; once a
// start has failed, every later call reports the same error without trying
// again. Tests must not stop, kill or restart the shared broker, and should
// use topic names of their own. Shared needs TestMain to call Main.
func Shared(t testing.TB) *Broker {
	t.Helper()
	return harness.Shared(t)
}

// NewTopic creates a topic with a name of its own for the test, made from
// the test's name, and returns the name. It fails the test on error. Tests
// on a shared broker use it so that they can run more than once (-count)
// and in any order.
func (b *Broker) NewTopic(t testing.TB, partitions int32, configs map[string]*string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", topicSafe.Replace(t.Name()), topicSeq.Add(1))
	if len(name) > 200 {
		name = name[len(name)-200:]
	}
	if err := b.CreateTopic(context.Background(), name, partitions, configs); err != nil {
		t.Fatal(err)
	}
	return name
}

var (
	topicSeq atomic.Int64
	// topicSafe maps the characters of test names that topic names may not
	// hold; '.' and '_' are avoided too, as Kafka's metrics mix them up.
	topicSafe = strings.NewReplacer("/", "-", " ", "-", ".", "-", "_", "-", "#", "-", "=", "-", ",", "-", ":", "-")
)
