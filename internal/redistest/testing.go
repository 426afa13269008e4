package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Require starts a server of its own for the test and closes it when the test
// ends. Without redis-server it skips the test, saying to run .ci/install,
// unless DSTREAM_REQUIRE_IT=1, where it fails the test instead.
// Any other start failure fails the test.
//
// A server of one's own is for tests that stop, kill or restart it; others
// should share one with Shared.
func Require(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(context.Background(), opts)
	if err != nil {
		skipOrFatal(t, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("redistest: server logs:%s", s.logTail())
		}
		if err := s.Close(); err != nil {
			t.Errorf("redistest: close server: %v", err)
		}
	})
	return s
}

func skipOrFatal(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("DSTREAM_REQUIRE_IT") != "1" {
		t.Skipf("%v (set DSTREAM_REQUIRE_IT=1 to fail instead of skipping)", err)
	}
	t.Fatal(err)
}

// shared is the server of Main and Shared: one per test binary, started by
// the first test that asks for it.
var shared struct {
	sync.Mutex
	inMain  bool    // Main is running the tests
	opts    Options // Main's options
	started bool    // a start was tried; s and err hold its result
	s       *Server
	err     error
}

// Main runs the tests with m.Run (m is TestMain's *testing.M, or a func
// that runs another harness's Main around it) and then closes the server that
// Shared started, if any, returning the exit code for TestMain. opts
// configure that server.
// The server starts only when a test first calls Shared, so a run that
// selects no such test pays nothing.
func Main(m interface{ Run() int }, opts Options) int {
	shared.Lock()
	shared.inMain, shared.opts = true, opts
	shared.Unlock()

	code := m.Run()

	shared.Lock()
	defer shared.Unlock()
	shared.inMain = false
	if shared.s != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "redistest: shared server logs:%s\n", shared.s.logTail())
		}
		if err := shared.s.Close(); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			if code == 0 {
				code = 1
			}
		}
		shared.s = nil
	}
	return code
}

// Shared returns the test binary's shared server, starting it on first use
// with Main's options. It skips or fails the test as Require does; once a
// start has failed, every later call reports the same error without trying
// again. Tests must not stop, kill or restart the shared server, and should
// use keys of their own rather than FLUSHALL. Shared needs TestMain to call
// Main.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if !shared.inMain {
		t.Fatal("redistest: Shared needs TestMain to call redistest.Main")
	}
	if !shared.started {
		shared.started = true
		shared.s, shared.err = Start(context.Background(), shared.opts)
	}
	if shared.err != nil {
		skipOrFatal(t, shared.err)
	}
	return shared.s
}
