package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dstream-io/dstream/internal/servertest"
)

// Cluster is a Redis Cluster of masters without replicas: each node a
// redis-server child process (a Server) in cluster mode, with AOF fsynced on
// every write and maxmemory-policy noeviction, on free loopback ports, all in
// one temporary directory. Its methods are safe for concurrent use, except
// that KillNode and RestartNode of one node must not race each other.
type Cluster struct {
	opts  Options // every node's, cluster settings aside
	dir   string  // the nodes' directories and create.log; removed by Close
	nodes []*Server
	// admin holds a client per node for the health checks: it never
	// retries, so a check of a dead node fails at once.
	admin []*redis.Client
}

// minMasters is what redis-cli --cluster create takes at least.
const minMasters = 3

// StartCluster starts n masters (at least 3) and joins them into a cluster
// with redis-cli --cluster create, which spreads the 16384 slots evenly over
// them, and returns once every node reports the cluster ok. Options apply to
// every node, with AOF always on and MaxMemoryPolicy noeviction unless set;
// Config may add cluster settings such as cluster-node-timeout. Call Close
// when done.
func StartCluster(ctx context.Context, n int, opts Options) (*Cluster, error) {
	if n < minMasters {
		return nil, fmt.Errorf("redistest: a cluster of %d masters: redis-cli creates clusters of at least %d", n, minMasters)
	}
	opts = opts.withDefaults()
	opts.AOF = true
	if opts.MaxMemoryPolicy == "" {
		opts.MaxMemoryPolicy = "noeviction"
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	binary, err := exec.LookPath(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotInstalled, err)
	}
	cli, err := lookCLI(opts.CLI, binary)
	if err != nil {
		return nil, fmt.Errorf("%w: redis-cli: %w", ErrNotInstalled, err)
	}
	c := &Cluster{opts: opts}
	if c.dir, err = os.MkdirTemp(opts.TempDir, "redistest-cluster-*"); err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	c.nodes, err = servertest.Retry(func() ([]*Server, error) { return c.startNodes(ctx, n, binary) })
	if err != nil {
		os.RemoveAll(c.dir)
		return nil, err
	}
	for _, s := range c.nodes {
		o := s.ClientOptions()
		o.MaxRetries = -1
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = time.Second, time.Second, time.Second
		c.admin = append(c.admin, redis.NewClient(o))
	}
	if err := c.create(ctx, cli); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.waitOK(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// lookCLI finds redis-cli: the one named, else $DSTREAM_REDIS_CLI, else the
// one beside the redis-server in use (a build of one's own ships both),
// else the one on PATH.
func lookCLI(named, server string) (string, error) {
	if named == "" {
		named = os.Getenv("DSTREAM_REDIS_CLI")
	}
	if named != "" {
		return exec.LookPath(named)
	}
	if p, err := exec.LookPath(filepath.Join(filepath.Dir(server), "redis-cli")); err == nil {
		return p, nil
	}
	return exec.LookPath("redis-cli")
}

// startNodes starts n cluster-enabled servers on fresh ports. Each gets a
// client port and a cluster bus port of its own (cluster-port), rather than
// Redis's default of the client port plus 10000, which may be taken or
// past 65535.
func (c *Cluster) startNodes(ctx context.Context, n int, binary string) ([]*Server, error) {
	ports, err := servertest.FreePorts(2 * n)
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	var nodes []*Server
	for i := range n {
		o := c.opts
		o.TempDir = c.dir
		o.Config = maps.Clone(c.opts.Config)
		if o.Config == nil {
			o.Config = map[string]string{}
		}
		o.Config["cluster-enabled"] = "yes"
		o.Config["cluster-config-file"] = "nodes.conf" // in the node's dir, kept across restarts
		o.Config["cluster-port"] = strconv.Itoa(ports[n+i])
		s, err := startOn(ctx, o, binary, ports[i])
		if err != nil {
			for _, s := range nodes {
				s.Close()
			}
			return nil, err
		}
		nodes = append(nodes, s)
	}
	return nodes, nil
}

// create runs redis-cli --cluster create over the nodes; its output goes to
// create.log.
func (c *Cluster) create(ctx context.Context, cli string) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	// The password goes in the environment, not on the command line.
	password := c.opts.Password
	if u := c.opts.User; u != nil {
		cmd.Args = append(cmd.Args, "--user", u.Name)
		password = u.Password
	}
	if password != "" {
		cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+password)
	}
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(c.dir, "create.log"), out, 0o600)
	if err != nil {
		return fmt.Errorf("redistest: redis-cli --cluster create %s: %w\n%s", strings.Join(c.Addrs(), " "), err, servertest.Tail(string(out), 30))
	}
	return nil
}

// Addrs are the nodes' host:port addresses, in node order: the list a
// cluster client starts from.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Node returns node i, a server of its own (for its address, its directory
// and a client that talks to it alone).
func (c *Cluster) Node(i int) *Server { return c.nodes[i] }

// Len is the number of nodes.
func (c *Cluster) Len() int { return len(c.nodes) }

// ClusterOptions are go-redis cluster options for Addrs that log in as the
// nodes' Server.ClientOptions do.
func (c *Cluster) ClusterOptions() *redis.ClusterOptions {
	so := c.nodes[0].ClientOptions()
	return &redis.ClusterOptions{
		Addrs:                    c.Addrs(),
		Username:                 so.Username,
		Password:                 so.Password,
		DisableIdentity:          so.DisableIdentity,
		MaintNotificationsConfig: so.MaintNotificationsConfig,
	}
}

// Client returns a go-redis cluster client made with ClusterOptions.
func (c *Cluster) Client() *redis.ClusterClient { return redis.NewClusterClient(c.ClusterOptions()) }

// NodeFor returns the index of the node that serves key's slot, as the
// cluster sees it.
func (c *Cluster) NodeFor(ctx context.Context, key string) (int, error) {
	var errs []error
	for _, a := range c.admin {
		slot, err := a.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ranges, err := a.ClusterSlots(ctx).Result()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range ranges {
			if int64(r.Start) > slot || slot > int64(r.End) || len(r.Nodes) == 0 {
				continue
			}
			for i, s := range c.nodes {
				if s.Addr() == r.Nodes[0].Addr {
					return i, nil
				}
			}
			return 0, fmt.Errorf("redistest: slot %d of %q is served by %s, not a node of this cluster", slot, key, r.Nodes[0].Addr)
		}
		return 0, fmt.Errorf("redistest: no node serves slot %d of %q", slot, key)
	}
	return 0, fmt.Errorf("redistest: no node answered: %w", errors.Join(errs...))
}

// KillNode stops node i with SIGKILL, as a crash would. The node's slots
// are unavailable until RestartNode; with Redis's default
// cluster-node-timeout of 15s the other nodes keep serving theirs if it
// comes back before then.
func (c *Cluster) KillNode(i int) error { return c.nodes[i].Kill() }

// RestartNode stops node i if it runs (SIGTERM) and starts it again on the
// same ports and directory: it reloads its data from its AOF and its place
// in the cluster from nodes.conf. It returns once every node reports the
// cluster ok again.
func (c *Cluster) RestartNode(ctx context.Context, i int) error {
	if err := c.nodes[i].Restart(ctx); err != nil {
		return err
	}
	return c.waitOK(ctx)
}

// OK reports, for every node, whether it sees the cluster ok: state ok, all
// nodes known and every slot served by a node that no node suspects.
func (c *Cluster) OK(ctx context.Context) error {
	var errs []error
	for i, a := range c.admin {
		info, err := a.ClusterInfo(ctx).Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("node %d (%s): %w", i, c.nodes[i].Addr(), err))
			continue
		}
		fields := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(info))
		for sc.Scan() {
			if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok {
				fields[k] = v
			}
		}
		for k, want := range map[string]string{
			"cluster_state":       "ok",
			"cluster_known_nodes": strconv.Itoa(len(c.nodes)),
			"cluster_slots_ok":    "16384",
		} {
			if fields[k] != want {
				errs = append(errs, fmt.Errorf("node %d (%s): %s:%s, want %s", i, c.nodes[i].Addr(), k, fields[k], want))
			}
		}
	}
	return errors.Join(errs...)
}

// waitOK waits, at most Options.StartTimeout, until OK passes.
func (c *Cluster) waitOK(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	if err := servertest.Poll(ctx, 50*time.Millisecond, c.OK); err != nil {
		return fmt.Errorf("redistest: cluster %s not ok after %v: %w%s", strings.Join(c.Addrs(), ","), c.opts.StartTimeout, err, c.LogTail())
	}
	return nil
}

// LogTail returns the last lines of every node's logs and of redis-cli's
// output, for failure messages.
func (c *Cluster) LogTail() string {
	var sb strings.Builder
	for i, s := range c.nodes {
		fmt.Fprintf(&sb, "\n=== node %d (%s) ===%s", i, s.Addr(), s.proc.LogTail())
	}
	if out, err := os.ReadFile(filepath.Join(c.dir, "create.log")); err == nil && len(out) > 0 {
		fmt.Fprintf(&sb, "\n=== redis-cli --cluster create ===\n%s", servertest.Tail(string(out), 30))
	}
	return sb.String()
}

// Close stops every node and removes the cluster's directory.
func (c *Cluster) Close() error {
	var errs []error
	for _, a := range c.admin {
		a.Close()
	}
	for _, s := range c.nodes {
		errs = append(errs, s.Close())
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("redistest: %w", err))
	}
	return errors.Join(errs...)
}

// clusterSpec is what RequireCluster starts.
type clusterSpec struct {
	n    int
	opts Options
}

var clusterHarness = servertest.Harness[*Cluster, clusterSpec]{
	Name:         "redistest",
	Server:       "cluster",
	Start:        func(ctx context.Context, s clusterSpec) (*Cluster, error) { return StartCluster(ctx, s.n, s.opts) },
	NotInstalled: ErrNotInstalled,
	Logs:         (*Cluster).LogTail,
}

// RequireCluster starts a cluster of n masters for the test and closes it
// when the test ends, showing the nodes' logs if the test failed. Without
// redis-server or redis-cli it skips the test, saying to run .ci/install,
// unless DSTREAM_REQUIRE_IT=1, where it fails the test instead.
func RequireCluster(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	return clusterHarness.Require(t, clusterSpec{n, opts})
}
