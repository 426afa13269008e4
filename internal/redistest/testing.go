package redistest

import (
	"testing"

	"github.com/dstream-io/dstream/internal/servertest"
)

// harness hands out servers to tests.
var harness = servertest.Harness[*Server, Options]{
	Name:         "redistest",
	Server:       "server",
	Start:        Start,
	NotInstalled: ErrNotInstalled,
	Logs:         func(s *Server) string { return s.proc.LogTail() },
}

// Require starts a server of its own for the test and closes it when the test
// ends. Without redis-server it skips the test, saying to run .ci/install,
// unless DSTREAM_REQUIRE_IT=1, where it fails the test instead.
// Any other start failure fails the test.
//
// A server of one's own is for tests that stop, kill or restart it; others
// should share one with Shared.
func Require(t testing.TB, opts Options) *Server {
	t.Helper()
	return harness.Require(t, opts)
}

// Main runs the tests with m.Run (m is TestMain's *testing.M, or a func
// that runs another harness's Main around it) and then closes the server that
// Shared started and the cluster that SharedCluster started, if any,
// returning the exit code for TestMain. opts configure both.
// The server starts only when a test first calls Shared, so a run that
// selects no such test pays nothing.
func Main(m interface{ Run() int }, opts Options) int {
	return harness.Main(runFunc(func() int { return clusterHarness.Main(m, clusterSpec{sharedMasters, opts}) }), opts)
}

// runFunc is an m for a harness's Main.
type runFunc func() int

func (f runFunc) Run() int { return f() }

// sharedMasters is the size of the shared cluster.
const sharedMasters = 3

// SharedCluster returns the test binary's shared cluster of three masters,
// started on first use with Main's options (AOF always on, noeviction unless
// set) and closed when TestMain's call to Main returns. It skips or fails
// the test as RequireCluster does. Tests must not kill or restart its nodes
// and should use keys of their own; SharedCluster needs TestMain to call
// Main.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	return clusterHarness.Shared(t)
}

// Shared returns the test binary's shared server, starting it on first use
// with Main's options. It skips or fails the test as Require does; once a
// start has failed, every later call reports the same error without trying
// again. Tests must not stop, kill or restart the shared server, and should
// use keys of their own rather than FLUSHALL. Shared needs TestMain to call
// Main.
func Shared(t testing.TB) *Server {
	t.Helper()
	return harness.Shared(t)
}
