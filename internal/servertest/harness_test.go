package servertest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/dstream-io/dstream/internal/servertest"
)

var errNotInstalled = errors.New("faketest: fake not installed")

// fake is a server that a fakeHarness starts without a process.
type fake struct {
	closed   bool
	closeErr error
}

func (f *fake) Close() error {
	f.closed = true
	return f.closeErr
}

// fakeHarness returns a Harness whose Start makes a fake for opts "ok", a
// fake that fails to close for "close fails", fails as if not installed for
// "missing" and fails otherwise; *starts counts its calls.
func fakeHarness(starts *int) *servertest.Harness[*fake, string] {
	return &servertest.Harness[*fake, string]{
		Name:   "faketest",
		Server: "fake",
		Start: func(_ context.Context, opts string) (*fake, error) {
			*starts++
			switch opts {
			case "ok":
				return &fake{}, nil
			case "close fails":
				return &fake{closeErr: errors.New("faketest: close failed")}, nil
			case "missing":
				return nil, fmt.Errorf("%w: no fake binary", errNotInstalled)
			}
			return nil, errors.New("faketest: fake broke")
		},
		NotInstalled: errNotInstalled,
		Logs:         func(*fake) string { return "\nfake log" },
	}
}

// recorder is a testing.TB that records how a call ended: like the real
// ones, its Skipf and Fatal end the goroutine that calls them.
type recorder struct {
	testing.TB
	ended string // "skip: …" or "fatal: …", or "" if neither was called
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) { r.end("skip: " + fmt.Sprintf(format, args...)) }

func (r *recorder) Fatal(args ...any) { r.end("fatal: " + fmt.Sprint(args...)) }

func (r *recorder) Fatalf(format string, args ...any) {
	r.end("fatal: " + fmt.Sprintf(format, args...))
}

func (r *recorder) end(s string) {
	r.ended = s
	runtime.Goexit()
}

// record calls f with a recorder, in a goroutine of its own, and returns
// what f returned and how it ended.
func record[S any](t testing.TB, f func(testing.TB) S) (s S, ended string) {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s = f(r)
	}()
	<-done
	return s, r.ended
}

// runFunc is an m for Main.
type runFunc func() int

func (f runFunc) Run() int { return f() }

func TestRequireCloses(t *testing.T) {
	var starts int
	h := fakeHarness(&starts)
	var f *fake
	t.Run("test", func(t *testing.T) {
		f = h.Require(t, "ok")
		if f.closed {
			t.Fatal("closed before the test ended")
		}
	})
	if !f.closed {
		t.Fatal("not closed when the test ended")
	}
}

// TestStartFailures checks how Require and Shared end a test whose server
// does not start.
func TestStartFailures(t *testing.T) {
	for _, test := range []struct {
		name, opts, requireIT string
		want                  string // prefix of how the test ends
	}{
		{"not installed", "missing", "", "skip: faketest: fake not installed: no fake binary (set DSTREAM_REQUIRE_IT=1"},
		{"not installed, required", "missing", "1", "fatal: faketest: fake not installed"},
		{"broken", "broken", "", "fatal: faketest: fake broke"},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Setenv("DSTREAM_REQUIRE_IT", test.requireIT)
			var starts int
			h := fakeHarness(&starts)
			_, ended := record(t, func(t testing.TB) *fake { return h.Require(t, test.opts) })
			if !strings.HasPrefix(ended, test.want) {
				t.Errorf("Require ended the test with %q, want %q", ended, test.want)
			}
			// Shared tries to start once, and then reports the same error.
			code := h.Main(runFunc(func() int {
				for range 2 {
					_, ended := record(t, h.Shared)
					if !strings.HasPrefix(ended, test.want) {
						t.Errorf("Shared ended the test with %q, want %q", ended, test.want)
					}
				}
				return 0
			}), test.opts)
			if code != 0 || starts != 2 {
				t.Errorf("Main returned %d after %d starts, want 0 after 2", code, starts)
			}
		})
	}
}

// TestShared checks that Shared starts one server on first use and that Main
// closes it, turning a failure to close into a failed run.
func TestShared(t *testing.T) {
	for _, test := range []struct {
		opts     string
		runs     int // Shared calls
		code     int // of the tests
		wantCode int // of Main
	}{
		{"ok", 3, 0, 0},
		{"ok", 0, 0, 0},
		{"ok", 1, 2, 2},
		{"close fails", 1, 0, 1},
	} {
		t.Run(fmt.Sprintf("%s/%d runs/code %d", test.opts, test.runs, test.code), func(t *testing.T) {
			var starts int
			h := fakeHarness(&starts)
			var shared *fake
			code := h.Main(runFunc(func() int {
				for range test.runs {
					f, ended := record(t, h.Shared)
					if ended != "" {
						t.Fatalf("Shared ended the test with %q", ended)
					}
					if shared != nil && f != shared {
						t.Fatal("Shared returned another server")
					}
					shared = f
				}
				return test.code
			}), test.opts)
			if code != test.wantCode {
				t.Errorf("Main returned %d, want %d", code, test.wantCode)
			}
			if want := min(test.runs, 1); starts != want {
				t.Errorf("started %d servers, want %d", starts, want)
			}
			if shared != nil && !shared.closed {
				t.Error("Main left the shared server open")
			}
		})
	}
}

func TestSharedWithoutMain(t *testing.T) {
	var starts int
	h := fakeHarness(&starts)
	_, ended := record(t, h.Shared)
	if want := "fatal: faketest: Shared needs TestMain to call faketest.Main"; ended != want {
		t.Fatalf("Shared without Main ended the test with %q, want %q", ended, want)
	}
}
