package redistest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// ErrNotInstalled reports that redis-server is missing; run .ci/install.
// Start wraps it, and Require skips the test on it.
var ErrNotInstalled = errors.New("redistest: redis-server not installed (run .ci/install)")

// Options configure a server. The zero value starts a server without
// persistence or authentication.
type Options struct {
	// Binary is the redis-server to run. Default: $DSTREAM_REDIS_SERVER,
	// else redis-server on PATH.
	Binary string
	// AOF turns the append-only file on with appendfsync always, so that
	// every acknowledged write survives Kill and Restart.
	AOF bool
	// Password, if set, is the default user's password (requirepass).
	Password string
	// User, if set, is an ACL user with every permission on every key and
	// channel; the default user stays as Password leaves it.
	User *User
	// MaxMemory and MaxMemoryPolicy set maxmemory (e.g. "64mb") and
	// maxmemory-policy (e.g. "noeviction", "allkeys-lru").
	MaxMemory       string
	MaxMemoryPolicy string
	// Config adds to or overrides redis.conf directives, e.g.
	// "appendfsync": "everysec". A value is written as it is.
	Config map[string]string
	// StartTimeout bounds the wait for the server to answer PING after its
	// process starts. Default 30s.
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before it sends
	// SIGKILL. Default 10s.
	StopTimeout time.Duration
	// TempDir is where the server's own directory (config, data, log) is
	// made. Default os.TempDir().
	TempDir string
}

// User is an ACL user.
type User struct {
	Name     string
	Password string
}

func (o Options) withDefaults() Options {
	if o.Binary == "" {
		o.Binary = os.Getenv("DSTREAM_REDIS_SERVER")
	}
	if o.Binary == "" {
		o.Binary = "redis-server"
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	return o
}

// Validate reports options that cannot work.
func (o Options) Validate() error {
	words := map[string]string{"Password": o.Password, "MaxMemory": o.MaxMemory, "MaxMemoryPolicy": o.MaxMemoryPolicy}
	if u := o.User; u != nil {
		if u.Name == "" || u.Password == "" {
			return errors.New("redistest: User needs both Name and Password")
		}
		if u.Name == "default" {
			return errors.New(`redistest: User must not be "default"; set Password for the default user`)
		}
		words["User.Name"], words["User.Password"] = u.Name, u.Password
	}
	for _, name := range slices.Sorted(maps.Keys(words)) {
		if strings.ContainsAny(words[name], " \t\n\"'\\") {
			return fmt.Errorf("redistest: %s must not contain spaces, quotes or backslashes: %q", name, words[name])
		}
	}
	for k, v := range o.Config {
		if strings.ContainsAny(k+v, "\n") {
			return fmt.Errorf("redistest: Config %q must not contain a newline", k)
		}
	}
	return nil
}

// Server is a redis-server running as a child process on a loopback port,
// in a directory of its own. Its methods are safe for concurrent use.
type Server struct {
	opts   Options
	binary string
	dir    string // redis.conf, data and log; removed by Close
	port   int

	mu struct {
		sync.Mutex
		proc *process // nil while stopped
	}
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait returns
	err  error         // cmd.Wait's result, set before done closes
}

// Start starts a server in a fresh directory, returning once it answers
// PING. Call Close when done.
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	binary, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotInstalled, err)
	}
	// A free port is picked by asking the kernel and closing the socket
	// again, so another process may take it before redis binds it: try anew.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		s, err := start(ctx, opts, binary)
		if err == nil || attempt == attempts || !errors.Is(err, errPortTaken) {
			return s, err
		}
	}
}

var errPortTaken = errors.New("port taken")

func start(ctx context.Context, opts Options, binary string) (*Server, error) {
	s := &Server{opts: opts, binary: binary}
	var err error
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	if s.dir, err = os.MkdirTemp(opts.TempDir, "redistest-*"); err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "redis.conf"), []byte(s.config()), 0o600); err != nil {
		os.RemoveAll(s.dir)
		return nil, fmt.Errorf("redistest: %w", err)
	}
	if err := s.Restart(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Dir is the server's own directory: redis.conf, redis.log and its data
// (appendonlydir/ with AOF on).
func (s *Server) Dir() string { return s.dir }

// ClientOptions are go-redis options for Addr that log in as Options.User if
// set, else with Options.Password.
func (s *Server) ClientOptions() *redis.Options {
	o := &redis.Options{
		Addr:            s.Addr(),
		Password:        s.opts.Password,
		DisableIdentity: true, // CLIENT SETINFO needs redis 7.2
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	if u := s.opts.User; u != nil {
		o.Username, o.Password = u.Name, u.Password
	}
	return o
}

// Client returns a go-redis client made with ClientOptions.
func (s *Server) Client() *redis.Client { return redis.NewClient(s.ClientOptions()) }

// Restart stops the server if it runs (as Stop does) and starts it again on
// the same port and directory, so that with AOF on its data survives. It
// returns once the server answers PING, having loaded its data.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(syscall.SIGTERM)
	p, err := s.spawn()
	if err != nil {
		return err
	}
	s.mu.proc = p
	if err := s.waitReady(ctx, p); err != nil {
		s.stopLocked(syscall.SIGKILL)
		return err
	}
	return nil
}

// Stop sends SIGTERM to the server, which writes out its AOF and exits, waits
// for it and, after Options.StopTimeout, kills it. The directory stays for
// Restart.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(syscall.SIGTERM)
	return nil
}

// Kill stops the server with SIGKILL, as a crash would, and waits for it to
// exit. The directory stays for Restart.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(syscall.SIGKILL)
	return nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	_ = s.Stop()
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("redistest: %w", err)
	}
	return nil
}

func (s *Server) stopLocked(sig syscall.Signal) {
	p := s.mu.proc
	if p == nil {
		return
	}
	s.mu.proc = nil
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(s.opts.StopTimeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// spawn starts redis-server in the foreground; it logs to redis.log, and
// anything it prints before that opens goes to stdout.log.
func (s *Server) spawn() (*process, error) {
	out, err := os.OpenFile(filepath.Join(s.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(s.binary, filepath.Join(s.dir, "redis.conf"))
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// A test binary that dies takes its server with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redistest: start redis-server: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// waitReady pings the server until it answers PONG (not LOADING), the
// process exits, ctx ends or the start timeout passes.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	o := s.ClientOptions()
	o.MaxRetries = -1
	o.DialTimeout = time.Second
	cl := redis.NewClient(o)
	defer cl.Close()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cl.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			err := fmt.Errorf("redistest: redis-server exited while starting (%v)%s", p.err, s.logTail())
			if strings.Contains(err.Error(), "Address already in use") {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("redistest: redis-server at %s not ready after %v: %w (last: %v)%s",
				s.Addr(), s.opts.StartTimeout, ctx.Err(), err, s.logTail())
		case <-tick.C:
		}
	}
}

// config renders redis.conf.
func (s *Server) config() string {
	c := map[string]string{
		"port":           strconv.Itoa(s.port),
		"bind":           "127.0.0.1",
		"protected-mode": "yes",
		"daemonize":      "no",
		"dir":            s.dir,
		"logfile":        filepath.Join(s.dir, "redis.log"),
		"save":           `""`,
		"appendonly":     "no",
	}
	if s.opts.AOF {
		c["appendonly"] = "yes"
		c["appendfsync"] = "always"
	}
	if s.opts.Password != "" {
		c["requirepass"] = s.opts.Password
	}
	if u := s.opts.User; u != nil {
		c["user"] = fmt.Sprintf("%s on >%s ~* &* +@all", u.Name, u.Password)
	}
	if s.opts.MaxMemory != "" {
		c["maxmemory"] = s.opts.MaxMemory
	}
	if s.opts.MaxMemoryPolicy != "" {
		c["maxmemory-policy"] = s.opts.MaxMemoryPolicy
	}
	maps.Copy(c, s.opts.Config)
	var sb strings.Builder
	sb.WriteString("# written by internal/redistest\n")
	for _, k := range slices.Sorted(maps.Keys(c)) {
		fmt.Fprintf(&sb, "%s %s\n", k, c[k])
	}
	return sb.String()
}

// logTail returns the last lines of the server's logs, for error messages.
func (s *Server) logTail() string {
	var sb strings.Builder
	for _, name := range []string{"redis.log", "stdout.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		lines = lines[max(0, len(lines)-20):]
		fmt.Fprintf(&sb, "\n--- tail of %s ---\n%s", filepath.Join(s.dir, name), strings.Join(lines, "\n"))
	}
	return sb.String()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("redistest: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
