package servertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// Harness hands out servers of type S, started with options O, to tests: one
// of their own (Require) or the test binary's shared one (Shared, Main). A
// harness package keeps one Harness in a package variable and wraps its
// methods.
type Harness[S interface{ Close() error }, O any] struct {
	// Name is the harness package's, e.g. "kafkatest", and Server names what
	// it runs, e.g. "broker": both for messages.
	Name, Server string
	// Start starts a server.
	Start func(context.Context, O) (S, error)
	// NotInstalled is what Start's error wraps when the server's software is
	// missing: Require and Shared skip the test on it.
	NotInstalled error
	// Logs returns the tail of a server's logs, shown when a test that used
	// it failed.
	Logs func(S) string

	// mu guards the shared server: one per test binary, started by the first
	// test that asks for it.
	mu struct {
		sync.Mutex
		inMain  bool // Main is running the tests
		opts    O    // Main's options
		started bool // a start was tried; s and err hold its result
		s       S
		err     error
	}
}

// Require starts a server of the test's own and closes it when the test ends.
// If the server is not installed it skips the test, unless
// DSTREAM_REQUIRE_IT=1, where it fails the test instead. Any other start
// failure fails the test.
func (h *Harness[S, O]) Require(t testing.TB, opts O) S {
	t.Helper()
	s, err := h.Start(context.Background(), opts)
	if err != nil {
		h.skipOrFatal(t, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s: %s logs:%s", h.Name, h.Server, h.Logs(s))
		}
		if err := s.Close(); err != nil {
			t.Errorf("%s: close %s: %v", h.Name, h.Server, err)
		}
	})
	return s
}

func (h *Harness[S, O]) skipOrFatal(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, h.NotInstalled) && os.Getenv("DSTREAM_REQUIRE_IT") != "1" {
		t.Skipf("%v (set DSTREAM_REQUIRE_IT=1 to fail instead of skipping)", err)
	}
	t.Fatal(err)
}

// Main runs the tests with m.Run (m is TestMain's *testing.M, or a func that
// runs another harness's Main around it) and then closes the server that
// Shared started, if any, returning the exit code for TestMain. opts
// configure that server, which starts only when a test first calls Shared.
func (h *Harness[S, O]) Main(m interface{ Run() int }, opts O) int {
	h.mu.Lock()
	h.mu.inMain, h.mu.opts = true, opts
	h.mu.Unlock()

	code := m.Run()

	h.mu.Lock()
	defer h.mu.Unlock()
	h.mu.inMain = false
	if h.mu.started && h.mu.err == nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "%s: shared %s logs:%s\n", h.Name, h.Server, h.Logs(h.mu.s))
		}
		if err := h.mu.s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	var zero S
	h.mu.started, h.mu.s, h.mu.err = false, zero, nil
	return code
}

// Shared returns the test binary's shared server, starting it on first use
// with Main's options. It skips or fails the test as Require does; once a
// start has failed, every later call reports the same error without trying
// again. Shared needs TestMain to call Main.
func (h *Harness[S, O]) Shared(t testing.TB) S {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.mu.inMain {
		t.Fatalf("%s: Shared needs TestMain to call %s.Main", h.Name, h.Name)
	}
	if !h.mu.started {
		h.mu.started = true
		h.mu.s, h.mu.err = h.Start(context.Background(), h.mu.opts)
	}
	if h.mu.err != nil {
		h.skipOrFatal(t, h.mu.err)
	}
	return h.mu.s
}
