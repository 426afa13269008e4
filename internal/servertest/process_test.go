package servertest_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/servertest"
)

// childEnv makes the test binary a child server (see child) instead of
// running the tests.
const childEnv = "SERVERTEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode, os.Getenv("SERVERTEST_PORT")))
	}
	os.Exit(m.Run())
}

// child is a server for the tests:
//   - "listen" accepts connections on port until a signal ends it;
//   - "stubborn" does so too but ignores SIGTERM;
//   - "exit" prints a line and exits 1 at once;
//   - "taken" says its port is taken and exits 1;
//   - "mute" never listens.
func child(mode, port string) int {
	switch mode {
	case "exit":
		fmt.Println("boom")
		return 1
	case "taken":
		fmt.Printf("listen tcp 127.0.0.1:%s: bind: Address already in use\n", port)
		return 1
	case "mute":
		select {}
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("listening")
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		c.Close()
	}
}

// exits records the clean flags of a Process's runs as they exit.
type exits struct {
	mu    sync.Mutex
	clean []bool
}

func (e *exits) add(clean bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clean = append(e.clean, clean)
}

func (e *exits) get() []bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]bool(nil), e.clean...)
}

// config returns a Config that runs the test binary as a child in mode on a
// free port, in a directory of its own, and records its runs' exits in e.
func config(t *testing.T, mode string, e *exits) servertest.Config {
	t.Helper()
	ports, err := servertest.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	dir, err := os.MkdirTemp(t.TempDir(), "child-*")
	if err != nil {
		t.Fatal(err)
	}
	return servertest.Config{
		Name:   "servertest: child",
		Addr:   addr,
		Dir:    dir,
		Output: filepath.Join(dir, "logs", "stdout.log"),
		Logs:   []string{filepath.Join(dir, "logs", "stdout.log")},
		Command: func() (*exec.Cmd, func(clean bool)) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+mode, "SERVERTEST_PORT="+strconv.Itoa(ports[0]))
			return cmd, e.add
		},
		Ready: func(ctx context.Context) error {
			return servertest.Poll(ctx, 10*time.Millisecond, func(ctx context.Context) error {
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", addr)
				if err == nil {
					c.Close()
				}
				return err
			})
		},
		StartTimeout: time.Minute,
		StopTimeout:  time.Minute,
	}
}

// TestProcessRestart stops and kills a child and restarts it each time in
// the same directory, and checks that its runs' exits are reported clean
// only after Stop.
func TestProcessRestart(t *testing.T) {
	e := &exits{}
	cfg := config(t, "listen", e)
	p, err := servertest.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		name string
		stop func() // nil to restart a running child
	}{
		{"stop", p.Stop},
		{"kill", p.Kill},
		{"running", nil},
	} {
		t.Run(test.name, func(t *testing.T) {
			if test.stop != nil {
				test.stop()
				if c, err := net.Dial("tcp", cfg.Addr); err == nil {
					c.Close()
					t.Fatalf("dialed %s after %s", cfg.Addr, test.name)
				}
			}
			if err := p.Restart(t.Context()); err != nil {
				t.Fatal(err)
			}
			if c, err := net.Dial("tcp", cfg.Addr); err != nil {
				t.Fatalf("after restart: %v", err)
			} else {
				c.Close()
			}
		})
	}
	// Start and three restarts appended to the output. The last run's line
	// is read after it stopped: its port can answer before it has printed.
	p.Stop()
	if n := strings.Count(p.LogTail(), "listening"); n != 4 {
		t.Errorf("log tail shows %d runs, want 4:%s", n, p.LogTail())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
		t.Fatalf("after Close, stat %s: %v, want it gone", cfg.Dir, err)
	}
	// Stop, Kill, Restart's stop of the running child, the last Stop.
	want := []bool{true, false, true, true}
	if got := e.get(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("runs exited clean %v, want %v", got, want)
	}
}

// TestProcessStopKills stops a child that ignores SIGTERM: Stop kills it
// after the stop timeout and reports its exit as not clean.
func TestProcessStopKills(t *testing.T) {
	e := &exits{}
	cfg := config(t, "stubborn", e)
	cfg.StopTimeout = 100 * time.Millisecond
	p, err := servertest.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := e.get(); fmt.Sprint(got) != "[false]" {
		t.Fatalf("runs exited clean %v, want [false]", got)
	}
}

// TestStartFails checks Start's errors: they begin with Config.Name, end with
// the tail of the logs, and Start leaves no directory behind.
func TestStartFails(t *testing.T) {
	for _, test := range []struct {
		mode         string
		startTimeout time.Duration
		want         []string
	}{
		{"exit", time.Minute, []string{"servertest: child exited while starting (exit status 1)", "boom"}},
		{"mute", 100 * time.Millisecond, []string{"servertest: child at 127.0.0.1:", "not ready after 100ms: context deadline exceeded (last: "}},
	} {
		t.Run(test.mode, func(t *testing.T) {
			e := &exits{}
			cfg := config(t, test.mode, e)
			cfg.StartTimeout = test.startTimeout
			_, err := servertest.Start(t.Context(), cfg)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			for _, want := range test.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Start: %v\nwant it to say %q", err, want)
				}
			}
			if _, err := os.Stat(cfg.Dir); !os.IsNotExist(err) {
				t.Errorf("after a failed Start, stat %s: %v, want it gone", cfg.Dir, err)
			}
			if got := e.get(); fmt.Sprint(got) != "[false]" {
				t.Errorf("runs exited clean %v, want [false]", got)
			}
		})
	}
}

// TestRetry tries three times, with new ports each time, a child that finds
// its port taken, and gives up on an error that is not about a port at once.
func TestRetry(t *testing.T) {
	for _, test := range []struct {
		mode string
		want int
	}{
		{"taken", 3},
		{"exit", 1},
	} {
		t.Run(test.mode, func(t *testing.T) {
			var addrs []string
			_, err := servertest.Retry(func() (*servertest.Process, error) {
				cfg := config(t, test.mode, &exits{})
				addrs = append(addrs, cfg.Addr)
				return servertest.Start(t.Context(), cfg)
			})
			if err == nil {
				t.Fatal("Retry succeeded")
			}
			if len(addrs) != test.want {
				t.Fatalf("Retry started %d times (%v), want %d: %v", len(addrs), addrs, test.want, err)
			}
		})
	}
}

func TestTail(t *testing.T) {
	for _, test := range []struct {
		s     string
		lines int
		want  string
	}{
		{"", 2, ""},
		{"a\n", 2, "a"},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
	} {
		if got := servertest.Tail(test.s, test.lines); got != test.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", test.s, test.lines, got, test.want)
		}
	}
}
