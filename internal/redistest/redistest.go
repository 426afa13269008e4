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
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/dstream-io/dstream/internal/servertest"
)

// ErrNotInstalled reports that redis-server, or the redis-cli that creates
// clusters, is missing; run .ci/install. Start and StartCluster wrap it,
// and Require and RequireCluster skip the test on it.
var ErrNotInstalled = errors.New("redistest: redis-server or redis-cli not installed (run .ci/install)")

// Options configure a server. The zero value starts a server without
// persistence or authentication.
type Options struct {
	// Binary is the redis-server to run. Default: $DSTREAM_REDIS_SERVER,
	// else redis-server on PATH.
	Binary string
	// CLI is the redis-cli that creates a cluster (StartCluster). Default:
	// $DSTREAM_REDIS_CLI, else redis-cli beside Binary, else on PATH.
	CLI string
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
	proc   *servertest.Process
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
	return servertest.Retry(func() (*Server, error) { return start(ctx, opts, binary) })
}

func start(ctx context.Context, opts Options, binary string) (*Server, error) {
	ports, err := servertest.FreePorts(1)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	return startOn(ctx, opts, binary, ports[0])
}

// startOn starts a server on port in a fresh directory under
// opts.TempDir.
func startOn(ctx context.Context, opts Options, binary string, port int) (*Server, error) {
	s := &Server{opts: opts, binary: binary, port: port}
	var err error
	if s.dir, err = os.MkdirTemp(opts.TempDir, "redistest-*"); err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "redis.conf"), []byte(s.config()), 0o600); err != nil {
		os.RemoveAll(s.dir)
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s.proc, err = servertest.Start(ctx, servertest.Config{
		Name:         "redistest: redis-server",
		Addr:         s.Addr(),
		Dir:          s.dir,
		Output:       filepath.Join(s.dir, "stdout.log"),
		Logs:         []string{filepath.Join(s.dir, "redis.log"), filepath.Join(s.dir, "stdout.log")},
		Command:      s.command,
		Ready:        s.ready,
		StartTimeout: opts.StartTimeout,
		StopTimeout:  opts.StopTimeout,
	})
	if err != nil {
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
func (s *Server) Restart(ctx context.Context) error { return s.proc.Restart(ctx) }

// Stop sends SIGTERM to the server, which writes out its AOF and exits, waits
// for it and, after Options.StopTimeout, kills it. The directory stays for
// Restart.
func (s *Server) Stop() error { s.proc.Stop(); return nil }

// Kill stops the server with SIGKILL, as a crash would, and waits for it to
// exit. The directory stays for Restart.
func (s *Server) Kill() error { s.proc.Kill(); return nil }

// Close stops the server and removes its directory.
func (s *Server) Close() error { return s.proc.Close() }

// command runs redis-server in the foreground; it logs to redis.log, and
// anything it prints before that opens goes to stdout.log.
func (s *Server) command() (*exec.Cmd, func(clean bool)) {
	return exec.Command(s.binary, filepath.Join(s.dir, "redis.conf")), nil
}

// ready pings the server until it answers PONG (not LOADING) or ctx ends.
func (s *Server) ready(ctx context.Context) error {
	o := s.ClientOptions()
	o.MaxRetries = -1
	o.DialTimeout = time.Second
	cl := redis.NewClient(o)
	defer cl.Close()
	return servertest.Poll(ctx, 20*time.Millisecond, func(ctx context.Context) error {
		return cl.Ping(ctx).Err()
	})
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
