package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// syncBuffer is a bytes.Buffer that a process writes while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logLines decodes the zerolog JSON lines written so far.
func logLines(s string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// eventually polls cond every 20ms until it holds, failing the test with
// what after timeout. The timeout is a bound, not a measurement.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// configFrom loads the Config that env (DSTREAM_* variables, on top of a
// clean environment) describes, as dstream would read it.
func configFrom(t *testing.T, env map[string]string) Config {
	t.Helper()
	clearEnv(t)
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// clearEnv unsets every DSTREAM_ setting for the test, keeping the test
// switches (DSTREAM_REQUIRE_IT and the harness's locations).
func clearEnv(t *testing.T) {
	t.Helper()
	var zero Config
	for _, s := range zero.settings() {
		if _, ok := os.LookupEnv(s[0]); ok {
			t.Setenv(s[0], "")
			os.Unsetenv(s[0])
		}
	}
}

// demoEnv is the demo with short batches, serving HTTP on a free port.
func demoEnv(interval time.Duration) map[string]string {
	return map[string]string{
		"DSTREAM_HTTP_ADDR":      "127.0.0.1:0",
		"DSTREAM_BATCH_INTERVAL": interval.String(),
		"DSTREAM_WINDOW":         (5 * interval).String(),
		"DSTREAM_SLIDE":          interval.String(),
		"DSTREAM_SHUTDOWN_GRACE": "10s",
	}
}

// proc is runProcessor running in the test's process.
type proc struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error // runProcessor's result, set before done closes
	logs   *syncBuffer
	stdout *syncBuffer
	addr   string // the HTTP server's host:port
}

// startProcessor runs the processor until the test ends (or stop) and
// waits until its HTTP server listens.
func startProcessor(t *testing.T, cfg Config) *proc {
	t.Helper()
	p := tryProcessor(t, cfg)
	eventually(t, 60*time.Second, "the processor's HTTP server", func() bool {
		select {
		case <-p.done:
			t.Fatalf("processor stopped: %v\nlogs:\n%s", p.err, p.logs)
		default:
		}
		for _, l := range logLines(p.logs.String()) {
			if l["message"] == "dstream starting" {
				p.addr, _ = l["http"].(string)
			}
		}
		return p.addr != ""
	})
	return p
}

// tryProcessor starts the processor without waiting for anything.
func tryProcessor(t *testing.T, cfg Config) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{cancel: cancel, done: make(chan struct{}), logs: &syncBuffer{}, stdout: &syncBuffer{}}
	log := zerolog.New(p.logs).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	go func() {
		defer close(p.done)
		p.err = runProcessor(ctx, cfg, log, p.stdout)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil && !t.Failed() {
			t.Errorf("processor: %v", err)
		}
	})
	return p
}

// stop cancels the processor and waits for it, returning its error.
func (p *proc) stop() error {
	p.cancel()
	select {
	case <-p.done:
		return p.err
	case <-time.After(60 * time.Second):
		return errors.New("processor did not stop within 60s")
	}
}

// get fetches path from the processor's HTTP server.
func (p *proc) get(t testing.TB, path string) (int, string) {
	t.Helper()
	return httpGet(t, "http://"+p.addr+path)
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// apiStatus is the body of /api/status, decoded into the type that
// encodes it (status_test.go checks it against the documented schema).
type apiStatus = apiStatusV1

func (p *proc) status(t testing.TB) apiStatus {
	t.Helper()
	code, body := p.get(t, "/api/status")
	var s apiStatus
	if code != http.StatusOK || json.Unmarshal([]byte(body), &s) != nil {
		t.Fatalf("/api/status: %d %s", code, body)
	}
	return s
}

// waitBatches waits until the processor committed at least n batches with
// records in them and has results.
func (p *proc) waitBatches(t testing.TB, n int, timeout time.Duration) apiStatus {
	t.Helper()
	var s apiStatus
	eventually(t, timeout, "committed batches with records and results", func() bool {
		select {
		case <-p.done:
			t.Fatalf("processor stopped: %v\nlogs:\n%s", p.err, p.logs)
		default:
		}
		s = p.status(t)
		withRecords := 0
		for _, b := range s.Batches {
			if b.Records > 0 {
				withRecords++
			}
		}
		return withRecords >= n && s.Results != nil && len(s.Results.Top) > 0
	})
	return s
}
