package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build compiles cmd/dstream into dir and returns the binary's path. With
// race set it builds with the race detector, so that a race in the
// processor shows in its log and exit status (66).
func Build(ctx context.Context, dir string, race bool) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		// go test runs with the go tool's directory on PATH; be safe anyway.
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "dstream")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, gobin, append(args, "./cmd/dstream")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("chaos: go build ./cmd/dstream: %w\n%s", err, out)
	}
	return bin, nil
}

// repoRoot is the nearest directory at or above the working directory that
// holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("chaos: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Processor is one run of the dstream binary as a child process in its own
// process group. Its log (stderr, zerolog JSON) goes to a file; its stdout
// (pprint) is dropped.
type Processor struct {
	Name    string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process was reaped
	err  error         // cmd.Wait's result, set before done closes
	log  *logWriter
}

// Start runs bin with env (DSTREAM_* settings; the parent's DSTREAM_*
// variables are not passed on) and DSTREAM_HTTP_ADDR=127.0.0.1:0.
func Start(bin, name, logDir string, env map[string]string) (*Processor, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	lw := &logWriter{f: f, addr: make(chan string, 1)}
	cmd := exec.Command(bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DSTREAM_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "DSTREAM_HTTP_ADDR=127.0.0.1:0")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout = io.Discard
	cmd.Stderr = lw
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// A test binary that dies takes its processors with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("chaos: start %s: %w", name, err)
	}
	p := &Processor{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{}), log: lw}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Processor) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process (a no-op once it exited).
func (p *Processor) Signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(p.cmd.Process.Pid, sig)
	}
}

// Kill sends SIGKILL (which ends a stopped process too) and waits for the
// process to be reaped.
func (p *Processor) Kill() {
	p.Signal(syscall.SIGKILL)
	<-p.done
}

// Done is closed when the process exited.
func (p *Processor) Done() <-chan struct{} { return p.done }

// Exited reports whether the process exited.
func (p *Processor) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits until the process exits or ctx ends; it returns the exit code
// (-1 for a signal).
func (p *Processor) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("chaos: %s did not exit: %w", p.Name, ctx.Err())
	}
}

// HTTPAddr waits for the processor to log its HTTP address.
func (p *Processor) HTTPAddr(ctx context.Context) (string, error) {
	select {
	case a := <-p.log.addr:
		p.log.addr <- a
		return a, nil
	case <-p.done:
		return "", fmt.Errorf("chaos: %s exited before serving HTTP (%v)%s", p.Name, p.err, p.LogTail(10))
	case <-ctx.Done():
		return "", fmt.Errorf("chaos: %s: no HTTP address: %w", p.Name, ctx.Err())
	}
}

// Ready reports whether GET /readyz answers 200.
func (p *Processor) Ready(ctx context.Context) (bool, error) {
	addr, err := p.HTTPAddr(ctx)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// Get fetches path from the processor's HTTP server and returns the
// status code and body.
func (p *Processor) Get(ctx context.Context, path string) (int, []byte, error) {
	addr, err := p.HTTPAddr(ctx)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Status is the part of /api/status (docs/api.md) the tests read; Raw is
// the whole body.
type Status struct {
	Instance struct {
		Role          string  `json:"role"`
		Ready         bool    `json:"ready"`
		ReadyReason   string  `json:"ready_reason"`
		RefusedReason *string `json:"refused_reason"`
		BatchesRun    uint64  `json:"batches_run"`
		Fenced        int     `json:"fenced"`
	} `json:"instance"`
	Job struct {
		CommittedBatch uint64     `json:"committed_batch"`
		LastCommitAt   *time.Time `json:"last_commit_at"`
		Tasks          []struct {
			Name    string  `json:"name"`
			Replica *string `json:"replica"`
			Here    bool    `json:"here"`
		} `json:"tasks"`
	} `json:"job"`
	Batches []struct {
		ID      uint64 `json:"id"`
		Records int    `json:"records"`
		Offsets []struct {
			Partition  int32 `json:"partition"`
			Start, End int64
		} `json:"offsets"`
		CommittedAt *time.Time `json:"committed_at"`
	} `json:"batches"`
	Raw []byte `json:"-"`
}

// Refused is why the instance refuses to run the job ("" when it does not).
func (s *Status) Refused() string {
	if s.Instance.RefusedReason == nil {
		return ""
	}
	return *s.Instance.RefusedReason
}

// Status fetches and decodes /api/status.
func (p *Processor) Status(ctx context.Context) (*Status, error) {
	code, body, err := p.Get(ctx, "/api/status")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("chaos: %s: /api/status: %d %s", p.Name, code, body)
	}
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, fmt.Errorf("chaos: %s: /api/status: %w", p.Name, err)
	}
	s.Raw = body
	return &s, nil
}

// Metric fetches /metrics and returns the value of one sample, named as
// the exposition writes it (with its labels, if any); ok is false if
// there is no such sample.
func (p *Processor) Metric(ctx context.Context, sample string) (v float64, ok bool, err error) {
	code, body, err := p.Get(ctx, "/metrics")
	if err != nil {
		return 0, false, err
	}
	if code != http.StatusOK {
		return 0, false, fmt.Errorf("chaos: %s: /metrics: %d", p.Name, code)
	}
	for line := range strings.Lines(string(body)) {
		name, value, found := strings.Cut(strings.TrimSpace(line), " ")
		if found && name == sample {
			v, err := strconv.ParseFloat(value, 64)
			return v, err == nil, err
		}
	}
	return 0, false, nil
}

// Logged reports whether a log line contains s.
func (p *Processor) Logged(s string) bool { return p.log.contains(s) }

// LogTail returns the last n log lines, for failure messages.
func (p *Processor) LogTail(n int) string {
	lines := p.logLines()
	if lines == nil {
		return ""
	}
	lines = lines[max(0, len(lines)-n):]
	return fmt.Sprintf("\n--- tail of %s ---\n%s", p.LogPath, strings.Join(lines, "\n"))
}

// LogFrom returns up to n log lines starting at the first that contains s
// (a race report or a panic is read from its start, not its tail), or ""
// when none does.
func (p *Processor) LogFrom(s string, n int) string {
	lines := p.logLines()
	for i, line := range lines {
		if strings.Contains(line, s) {
			lines = lines[i:min(len(lines), i+n)]
			return fmt.Sprintf("\n--- %s from line %d ---\n%s", p.LogPath, i+1, strings.Join(lines, "\n"))
		}
	}
	return ""
}

// logLines reads the log's lines (nil if it cannot be read).
func (p *Processor) logLines() []string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

// ExitError is the error the processor logged when it stopped ("dstream
// stopped"), or "".
func (p *Processor) ExitError() string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	msg := ""
	for sc.Scan() {
		var l struct{ Message, Error string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "dstream stopped" {
			msg = l.Error
		}
	}
	return msg
}

// logWriter copies the processor's log to a file, keeps the lines that
// matter to the tests in memory and picks the HTTP address out of the
// start-up line.
type logWriter struct {
	f    *os.File
	addr chan string
	buf  []byte
	mu   struct {
		sync.Mutex
		lines []string
	}
}

func (w *logWriter) Write(b []byte) (int, error) {
	if _, err := w.f.Write(b); err != nil {
		return 0, err
	}
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	return len(b), nil
}

func (w *logWriter) line(l []byte) {
	var entry struct {
		Message string `json:"message"`
		HTTP    string `json:"http"`
		Level   string `json:"level"`
	}
	if json.Unmarshal(l, &entry) != nil {
		w.keep(string(l)) // not JSON: a panic or a race report
		return
	}
	if entry.Message == "dstream starting" && entry.HTTP != "" {
		select {
		case w.addr <- entry.HTTP:
		default:
		}
	}
	if entry.Level != "debug" {
		w.keep(string(l))
	}
}

func (w *logWriter) keep(l string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.lines = append(w.mu.lines, l)
}

func (w *logWriter) contains(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.mu.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
