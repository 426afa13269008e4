package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/sinks"
)

// binary builds cmd/dstream once per test binary.
var binary struct {
	once sync.Once
	path string
	err  error
}

func dstreamBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		dir, err := os.MkdirTemp("", "dstream-bin-*")
		if err != nil {
			binary.err = err
			return
		}
		binaryDirs = append(binaryDirs, dir)
		binary.path = filepath.Join(dir, "dstream")
		out, err := exec.Command("go", "build", "-o", binary.path, ".").CombinedOutput()
		if err != nil {
			binary.err = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

// binaryDirs are removed when the tests end.
var binaryDirs []string

// subprocess is the dstream binary running as a child process.
type subprocess struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error // cmd.Wait's, set before done closes
}

func startBinary(t *testing.T, env map[string]string) *subprocess {
	t.Helper()
	cmd := exec.Command(dstreamBinary(t))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s := &subprocess{cmd: cmd, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// exitCode waits for the process to exit and returns its exit code.
func (s *subprocess) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("dstream still running %v after SIGTERM\nstderr:\n%s", timeout, s.stderr)
	}
	var exit *exec.ExitError
	if errors.As(s.err, &exit) {
		return exit.ExitCode()
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return 0
}

func (s *subprocess) logged(message string) bool {
	for _, l := range logLines(s.stderr.String()) {
		if l["message"] == message {
			return true
		}
	}
	return false
}

// gate is a TCP proxy in front of Redis. Armed, it holds back every write
// of a client that carries the marker (the first one held closes held) until
// release, so a test can keep a batch in flight as long as it likes.
type gate struct {
	ln      net.Listener
	target  string
	marker  func([]byte) bool
	held    chan struct{} // closed when the first write is held
	release chan struct{} // closed to let held writes through
	closed  chan struct{}
	mu      struct {
		sync.Mutex
		armed    bool
		heldOnce bool
		conns    []net.Conn
	}
	wg sync.WaitGroup
}

func newGate(t *testing.T, target string, marker func([]byte) bool) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target, marker: marker, held: make(chan struct{}),
		release: make(chan struct{}), closed: make(chan struct{})}
	g.wg.Go(g.accept)
	t.Cleanup(g.close)
	return g
}

func (g *gate) Addr() string { return g.ln.Addr().String() }

func (g *gate) arm() {
	g.mu.Lock()
	g.mu.armed = true
	g.mu.Unlock()
}

func (g *gate) open() { close(g.release) }

// close drops every connection, held writes unsent.
func (g *gate) close() {
	select {
	case <-g.closed:
		return
	default:
	}
	close(g.closed)
	g.ln.Close()
	g.mu.Lock()
	for _, c := range g.mu.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *gate) accept() {
	for {
		client, err := g.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", g.target)
		if err != nil {
			client.Close()
			continue
		}
		g.mu.Lock()
		g.mu.conns = append(g.mu.conns, client, server)
		g.mu.Unlock()
		g.wg.Go(func() {
			_, _ = io.Copy(client, server)
			client.Close()
		})
		g.wg.Go(func() {
			defer server.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 && !g.wait(buf[:n]) {
					return
				}
				if n > 0 {
					if _, err := server.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		})
	}
}

// wait holds a write that the armed gate catches until release; false if
// the gate closed meanwhile.
func (g *gate) wait(p []byte) bool {
	g.mu.Lock()
	catch := g.mu.armed && g.marker(p)
	if catch && !g.mu.heldOnce {
		g.mu.heldOnce = true
		close(g.held)
	}
	g.mu.Unlock()
	if !catch {
		return true
	}
	select {
	case <-g.release:
		return true
	case <-g.closed:
		return false
	}
}

// jobMeta reads a job's checkpoint metadata straight from Redis.
func jobMeta(t *testing.T, rdb *redis.Client, job string) (committed, planned uint64) {
	t.Helper()
	vals, err := rdb.HMGet(context.Background(), "{dstream:"+job+"}:meta", "committed", "planned").Result()
	if err != nil {
		t.Fatal(err)
	}
	num := func(v any) uint64 {
		s, _ := v.(string)
		n, _ := strconv.ParseUint(s, 10, 64)
		return n
	}
	return num(vals[0]), num(vals[1])
}

func planOf(t *testing.T, rdb *redis.Client, job string, id uint64) string {
	t.Helper()
	p, err := rdb.HGet(context.Background(), "{dstream:"+job+"}:plans", strconv.FormatUint(id, 10)).Result()
	if err != nil {
		t.Fatalf("plan %d of %s: %v", id, job, err)
	}
	return p
}

// TestShutdown sends SIGTERM to the dstream binary while a batch is in
// flight: held in its checkpoint's prepare step by a proxy in front of
// Redis. Within the grace period the batch finishes and dstream exits 0;
// past it the batch is abandoned, dstream exits, and a restart reruns the
// batch from its recorded plan, writing its output once.
func TestShutdown(t *testing.T) {
	b := kafkatest.Shared(t)
	for _, test := range []struct {
		name    string
		grace   string
		release bool // let the held batch go on after SIGTERM
	}{
		{name: "finishes the batch in flight", grace: "60s", release: true},
		{name: "abandons it past the grace", grace: "1s"},
	} {
		t.Run(test.name, func(t *testing.T) {
			in, out, dlq := jobTopics(t, b, 3000)
			rs := redistest.Require(t, redistest.Options{})
			rdb := rs.Client()
			defer rdb.Close()
			job := "shutdown-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			pending := []byte("{dstream:" + job + "}:pending")
			plans := []byte("{dstream:" + job + "}:plans")
			// Prepare names the pending key but not the plans key (Commit
			// names both).
			g := newGate(t, rs.Addr(), func(p []byte) bool { return bytes.Contains(p, pending) && !bytes.Contains(p, plans) })

			env := jobEnv(job, in, out, dlq)
			env["DSTREAM_KAFKA_BROKERS"], env["DSTREAM_REDIS_ADDR"] = b.Addr(), g.Addr()
			env["DSTREAM_SHUTDOWN_GRACE"] = test.grace
			p := startBinary(t, env)
			eventually(t, 2*time.Minute, "a committed batch", func() bool {
				select {
				case <-p.done:
					t.Fatalf("dstream exited: %v\nstderr:\n%s", p.err, p.stderr)
				default:
				}
				c, _ := jobMeta(t, rdb, job)
				return c >= 1
			})

			g.arm()
			select {
			case <-g.held:
			case <-time.After(time.Minute):
				t.Fatalf("no batch reached its prepare step\nstderr:\n%s", p.stderr)
			}
			committed, planned := jobMeta(t, rdb, job)
			if planned != committed+1 {
				t.Fatalf("held a batch with committed %d, planned %d: want one batch in flight", committed, planned)
			}
			inFlight := planned
			plan := planOf(t, rdb, job, inFlight)

			termAt := time.Now()
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "the stop to begin", func() bool { return p.logged("stopping: finishing the batch in flight") })
			if test.release {
				g.open()
			}
			code := p.exitCode(t, 2*time.Minute)
			committed, planned = jobMeta(t, rdb, job)
			t.Logf("exit %d %v after SIGTERM; committed %d, planned %d, batch %d was in flight",
				code, time.Since(termAt).Round(10*time.Millisecond), committed, planned, inFlight)
			if code != 0 {
				t.Errorf("exit code %d, want 0\nstderr:\n%s", code, p.stderr)
			}
			if planned != inFlight {
				t.Errorf("planned %d after the stop, want %d: no batch may start after SIGTERM", planned, inFlight)
			}
			if test.release {
				if committed != inFlight {
					t.Errorf("committed %d, want the batch in flight (%d) finished", committed, inFlight)
				}
				if p.logged("grace period over: abandoning the batch in flight; it reruns from its plan on restart") {
					t.Errorf("abandoned the batch within the grace period")
				}
				checkBatchOutput(t, b, out, inFlight, plan)
				return
			}
			if committed != inFlight-1 {
				t.Errorf("committed %d, want %d: the abandoned batch must not commit", committed, inFlight-1)
			}
			if !p.logged("grace period over: abandoning the batch in flight; it reruns from its plan on restart") {
				t.Errorf("no word of the abandoned batch\nstderr:\n%s", p.stderr)
			}

			// The restart reruns the abandoned batch from its plan.
			g.close()
			env["DSTREAM_REDIS_ADDR"], env["DSTREAM_SHUTDOWN_GRACE"] = rs.Addr(), "60s"
			again := startBinary(t, env)
			eventually(t, 2*time.Minute, "the abandoned batch to commit after the restart", func() bool {
				select {
				case <-again.done:
					t.Fatalf("dstream exited: %v\nstderr:\n%s", again.err, again.stderr)
				default:
				}
				c, _ := jobMeta(t, rdb, job)
				return c >= inFlight
			})
			if got := planOf(t, rdb, job, inFlight); got != plan {
				t.Errorf("batch %d ran with plan %s, want the recorded %s", inFlight, got, plan)
			}
			checkBatchOutput(t, b, out, inFlight, plan)
			if err := again.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if code := again.exitCode(t, 2*time.Minute); code != 0 {
				t.Errorf("restarted dstream exit code %d, want 0\nstderr:\n%s", code, again.stderr)
			}
		})
	}
}

// checkBatchOutput checks that the output topic holds batch id's results
// once, with the offsets of its plan.
func checkBatchOutput(t *testing.T, b *kafkatest.Broker, topic string, id uint64, planJSON string) {
	t.Helper()
	recs := readCommitted(t, b, topic)
	n := 0
	for _, r := range recs {
		if header(r, sinks.HeaderBatchID) != strconv.FormatUint(id, 10) {
			continue
		}
		n++
		for _, part := range strings.Split(header(r, sinks.HeaderOffsets), ",") {
			// "p:from-until" of the header against the plan's {"p":…,"f":…,"u":…}.
			pf, fu, _ := strings.Cut(part, ":")
			from, until, _ := strings.Cut(fu, "-")
			if !strings.Contains(planJSON, `"p":`+pf+`,"f":`+from+`,"u":`+until+`}`) {
				t.Errorf("batch %d wrote offsets %s, not in its plan %s", id, header(r, sinks.HeaderOffsets), planJSON)
			}
		}
	}
	if n != 3 {
		t.Errorf("batch %d has %d output records, want the top 3 once", id, n)
	}
}

// readCommitted reads every committed record of a one-partition topic that
// only transactions write: up to its last stable offset, where a commit
// marker sits just below the end.
func readCommitted(t *testing.T, b *kafkatest.Broker, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := b.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topic, 0)
	var recs []*kgo.Record
	last := int64(-1)
	for last < end.Offset-2 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s up to offset %d of %d", topic, last, end.Offset)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			recs = append(recs, r)
			last = r.Offset
		})
	}
	return recs
}
