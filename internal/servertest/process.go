package servertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config says how to run a server and check that it is ready. All fields but
// Logs are required.
type Config struct {
	// Name names the server, after its harness, to begin its errors with,
	// e.g. "kafkatest: broker".
	Name string
	// Addr is where the server listens, for errors.
	Addr string
	// Dir is the server's own directory and its runs' working directory.
	// Close removes it.
	Dir string
	// Command returns the command of one run. Process sets the command's
	// directory, output and process attributes. exited, if not nil, is called
	// once the run has exited or failed to start; clean says whether it exited
	// on Stop's SIGTERM within StopTimeout.
	Command func() (cmd *exec.Cmd, exited func(clean bool))
	// Output is the file that a run's stdout and stderr are appended to; its
	// directory is made if need be.
	Output string
	// Logs are the files whose tails LogTail returns, e.g. the server's log
	// and Output.
	Logs []string
	// Ready returns nil once the run answers, else an error when ctx ends:
	// when the run exits or StartTimeout passes. Poll helps to write it.
	Ready func(ctx context.Context) error
	// StartTimeout bounds Ready; StopTimeout is how long Stop waits after
	// SIGTERM before it sends SIGKILL.
	StartTimeout, StopTimeout time.Duration
}

// Process is a server run as a child process, one run at a time. Its
// methods are safe for concurrent use.
type Process struct {
	cfg Config

	mu struct {
		sync.Mutex
		run *run // nil while stopped
	}
}

// run is one run of the server's process.
type run struct {
	cmd    *exec.Cmd
	exited func(clean bool) // Config.Command's, or nil
	done   chan struct{}    // closed when cmd.Wait returns
	err    error            // cmd.Wait's result, set before done closes
}

// Start starts the server described by cfg and returns once it is ready. On
// failure it removes cfg.Dir. Call Close when done.
func Start(ctx context.Context, cfg Config) (*Process, error) {
	p := &Process{cfg: cfg}
	if err := p.Restart(ctx); err != nil {
		_ = p.Close()
		return nil, err
	}
	return p, nil
}

// Restart stops the server if it runs (as Stop does) and starts it again in
// the same directory, returning once it is ready. If it is not, Restart kills
// it and returns an error with the tail of its logs.
func (p *Process) Restart(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked(syscall.SIGTERM)
	r, err := p.spawn()
	if err != nil {
		return err
	}
	p.mu.run = r
	if err := p.waitReady(ctx, r); err != nil {
		p.stopLocked(syscall.SIGKILL)
		return err
	}
	return nil
}

// Stop sends SIGTERM to the server's process group, waits for the server to
// exit and, after Config.StopTimeout, kills it.
func (p *Process) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked(syscall.SIGTERM)
}

// Kill sends SIGKILL to the server's process group, as a crash would, and
// waits for the server to exit.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked(syscall.SIGKILL)
}

// Close stops the server and removes its directory.
func (p *Process) Close() error {
	p.Stop()
	if err := os.RemoveAll(p.cfg.Dir); err != nil {
		return fmt.Errorf("%s: %w", p.cfg.Name, err)
	}
	return nil
}

// LogTail returns the last lines of the server's logs, each headed by its
// path, for error messages; "" if they are empty.
func (p *Process) LogTail() string {
	var sb strings.Builder
	for _, name := range p.cfg.Logs {
		data, err := os.ReadFile(name)
		if err != nil || len(data) == 0 {
			continue
		}
		fmt.Fprintf(&sb, "\n--- tail of %s ---\n%s", name, Tail(string(data), 30))
	}
	return sb.String()
}

// stopLocked signals the run's process group and waits for it to exit,
// escalating to SIGKILL after the stop timeout.
func (p *Process) stopLocked(sig syscall.Signal) {
	r := p.mu.run
	if r == nil {
		return
	}
	p.mu.run = nil
	_ = syscall.Kill(-r.cmd.Process.Pid, sig)
	clean := sig == syscall.SIGTERM
	select {
	case <-r.done:
	case <-time.After(p.cfg.StopTimeout):
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
		clean = false
	}
	if r.exited != nil {
		r.exited(clean)
	}
}

// spawn starts a run.
func (p *Process) spawn() (*run, error) {
	if err := os.MkdirAll(filepath.Dir(p.cfg.Output), 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", p.cfg.Name, err)
	}
	out, err := os.OpenFile(p.cfg.Output, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.cfg.Name, err)
	}
	defer out.Close()
	// Config.Command does not take a ctx: the server outlives the one it
	// started under.
	cmd, exited := p.cfg.Command()
	cmd.Dir = p.cfg.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// A test binary that dies (a panic, a -timeout) takes its server with
		// it instead of leaving it behind. (The signal follows the thread that
		// forked, which Go keeps unless a goroutine locked to it exits.)
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		if exited != nil {
			exited(false)
		}
		return nil, fmt.Errorf("%s: start: %w", p.cfg.Name, err)
	}
	r := &run{cmd: cmd, exited: exited, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	return r, nil
}

// errPortTaken marks a run that exited while starting because a port was
// taken; Retry tries again.
var errPortTaken = errors.New("port taken")

// waitReady runs Config.Ready until it passes, r exits, ctx ends or the start
// timeout passes.
func (p *Process) waitReady(ctx context.Context, r *run) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.StartTimeout)
	defer cancel()
	ready, cancelReady := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancelReady()
	wg.Go(func() {
		select {
		case <-r.done:
			cancelReady()
		case <-ready.Done():
		}
	})
	err := p.cfg.Ready(ready)
	if err == nil {
		return nil
	}
	select {
	case <-r.done:
		err := fmt.Errorf("%s exited while starting (%v)%s", p.cfg.Name, r.err, p.LogTail())
		if strings.Contains(err.Error(), "Address already in use") {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return err
	default:
	}
	if ctx.Err() == nil {
		return fmt.Errorf("%s at %s: %w", p.cfg.Name, p.cfg.Addr, err)
	}
	return fmt.Errorf("%s at %s not ready after %v: %w (last: %v)%s",
		p.cfg.Name, p.cfg.Addr, p.cfg.StartTimeout, ctx.Err(), err, p.LogTail())
}

// Poll calls probe every interval until it returns nil or ctx ends, and then
// returns probe's last error.
func Poll(ctx context.Context, interval time.Duration, probe func(context.Context) error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}

// Retry calls start up to three times while it fails because a port was
// taken, as Restart reports it: FreePorts picks ports by asking the kernel
// and closing the socket again, so another process may take one before the
// server binds it. start should pick its ports anew each time.
func Retry[S any](start func() (S, error)) (S, error) {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		s, err := start()
		if err == nil || attempt == attempts || !errors.Is(err, errPortTaken) {
			return s, err
		}
	}
}

// FreePorts returns n distinct loopback ports that were free a moment ago.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Tail returns the last lines of s.
func Tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
