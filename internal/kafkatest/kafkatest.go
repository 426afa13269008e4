package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
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

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/dstream-io/dstream/internal/servertest"
)

// DefaultVersion is the broker version that .ci/install fetches and Start
// looks for when neither Options.Home nor DSTREAM_KAFKA_HOME says otherwise.
const DefaultVersion = "4.1.0"

// ErrNotInstalled reports that java or the broker's jars are missing; run
// .ci/install. Start wraps it, and Require skips the test on it.
var ErrNotInstalled = errors.New("kafkatest: kafka broker not installed (run .ci/install)")

// Options configure a broker. The zero value starts a plain-text broker from
// the jars that .ci/install fetched.
type Options struct {
	// Home is a directory holding the broker's jars in libs/ and, optionally,
	// config/log4j2.properties. Default: $DSTREAM_KAFKA_HOME, else
	// <repo root>/.cache/kafka/<Version>, the repo root being the nearest
	// directory above the working directory that holds go.mod.
	Home string
	// Version picks the default Home. Default: $DSTREAM_KAFKA_VERSION, else
	// DefaultVersion.
	Version string
	// SCRAM, if set, adds a SASL_PLAINTEXT listener (see Broker.SASLAddr) that
	// takes SCRAM-SHA-512 only, and creates this user when the storage is
	// formatted. The plain-text listener stays, for the broker's own use and
	// for admin work in tests.
	SCRAM *SCRAM
	// TLS, if set, adds an SSL listener (see Broker.TLSAddr) that serves
	// this certificate; NewTLS makes one with a CA of its own. The
	// plain-text listener stays, as with SCRAM.
	TLS *TLS
	// Properties add to or override the broker's server.properties, e.g.
	// "transaction.max.timeout.ms".
	Properties map[string]string
	// JVMFlags replace the default JVM flags (DefaultJVMFlags()).
	JVMFlags []string
	// NoClassSharing turns off the class-data-sharing archive that the
	// broker otherwise writes to <Home>/cds/ on its first clean stop and maps
	// on later starts, for a start about twice as fast.
	NoClassSharing bool
	// StartTimeout bounds the wait for the broker to answer a metadata
	// request after its process starts. Default 90s.
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before it sends
	// SIGKILL. Default 30s.
	StopTimeout time.Duration
	// TempDir is where the broker's own directory (config, data, logs) is
	// made. Default os.TempDir().
	TempDir string
}

// SCRAM names the user that the SASL listener accepts.
type SCRAM struct {
	User     string
	Password string
}

// DefaultJVMFlags returns the flags that start the broker quickly with a
// small heap: a test broker serves little data, and C1-only compilation and
// the serial collector cut startup time on small machines.
func DefaultJVMFlags() []string {
	return []string{
		"-Xms128m", "-Xmx512m",
		"-XX:+UseSerialGC",
		"-XX:TieredStopAtLevel=1",
		"-Xshare:auto",
		"-XX:-UsePerfData",
		"-Djava.awt.headless=true",
	}
}

func (o Options) withDefaults() Options {
	if o.Version == "" {
		o.Version = os.Getenv("DSTREAM_KAFKA_VERSION")
	}
	if o.Version == "" {
		o.Version = DefaultVersion
	}
	if o.Home == "" {
		o.Home = os.Getenv("DSTREAM_KAFKA_HOME")
	}
	if o.JVMFlags == nil {
		o.JVMFlags = DefaultJVMFlags()
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 90 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	return o
}

// Validate reports options that cannot work.
func (o Options) Validate() error {
	if s := o.SCRAM; s != nil {
		if s.User == "" || s.Password == "" {
			return errors.New("kafkatest: SCRAM needs both User and Password")
		}
		for _, v := range []string{s.User, s.Password} {
			if strings.ContainsAny(v, "\",[]=\n") {
				return fmt.Errorf("kafkatest: SCRAM user and password must not contain any of \" , [ ] = or a newline: %q", v)
			}
		}
	}
	if t := o.TLS; t != nil && (len(t.CertPEM) == 0 || len(t.KeyPEM) == 0) {
		return errors.New("kafkatest: TLS needs both CertPEM and KeyPEM")
	}
	return nil
}

// Broker is a single-node Kafka broker (KRaft, combined broker and
// controller) running as a child process on loopback ports. Its methods are
// safe for concurrent use.
type Broker struct {
	opts  Options
	java  string
	home  string
	cds   *cds   // nil without class-data sharing
	dir   string // config, data and logs; removed by Close
	ports struct{ plain, controller, sasl, tls int }
	proc  *servertest.Process
}

// Start formats a fresh data directory and starts a broker in it, returning
// once the broker answers a metadata request. Call Close when done.
func Start(ctx context.Context, opts Options) (*Broker, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	java, home, err := locate(opts)
	if err != nil {
		return nil, err
	}
	return servertest.Retry(func() (*Broker, error) { return start(ctx, opts, java, home) })
}

func start(ctx context.Context, opts Options, java, home string) (*Broker, error) {
	b := &Broker{opts: opts, java: java, home: home}
	if !opts.NoClassSharing {
		b.cds = newCDS(java, home, opts.JVMFlags)
	}
	ports, err := servertest.FreePorts(4)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: %w", err)
	}
	b.ports.plain, b.ports.controller, b.ports.sasl, b.ports.tls = ports[0], ports[1], ports[2], ports[3]
	if b.dir, err = os.MkdirTemp(opts.TempDir, "kafkatest-*"); err != nil {
		return nil, fmt.Errorf("kafkatest: %w", err)
	}
	if err := b.writeKeystore(); err != nil {
		os.RemoveAll(b.dir)
		return nil, err
	}
	if err := b.format(ctx); err != nil {
		os.RemoveAll(b.dir)
		return nil, err
	}
	logs := filepath.Join(b.dir, "logs")
	b.proc, err = servertest.Start(ctx, servertest.Config{
		Name:         "kafkatest: broker",
		Addr:         b.Addr(),
		Dir:          b.dir,
		Command:      b.command,
		Output:       filepath.Join(logs, "stdout.log"),
		Logs:         []string{filepath.Join(logs, "server.log"), filepath.Join(logs, "stdout.log")},
		Ready:        b.ready,
		StartTimeout: opts.StartTimeout,
		StopTimeout:  opts.StopTimeout,
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Addr is the host:port of the broker's plain-text listener.
func (b *Broker) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.ports.plain)) }

// SASLAddr is the host:port of the SASL_PLAINTEXT (SCRAM-SHA-512) listener,
// or "" without Options.SCRAM.
func (b *Broker) SASLAddr() string {
	if b.opts.SCRAM == nil {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.ports.sasl))
}

// SASL returns the client options that log in on SASLAddr as the SCRAM user,
// or nil without Options.SCRAM.
func (b *Broker) SASL() []kgo.Opt {
	s := b.opts.SCRAM
	if s == nil {
		return nil
	}
	auth := scram.Auth{User: s.User, Pass: s.Password}
	return []kgo.Opt{kgo.SeedBrokers(b.SASLAddr()), kgo.SASL(auth.AsSha512Mechanism())}
}

// Dir is the broker's own directory: server.properties, data/ and logs/.
func (b *Broker) Dir() string { return b.dir }

// Client returns a client seeded with Addr; opts come after the seed and may
// override it.
func (b *Broker) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr())}, opts...)...)
}

// CreateTopic creates a topic with replication factor 1. configs may be nil.
func (b *Broker) CreateTopic(ctx context.Context, name string, partitions int32, configs map[string]*string) error {
	cl, err := b.Client()
	if err != nil {
		return fmt.Errorf("kafkatest: create topic %s: %w", name, err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, configs, name)
	if err != nil {
		if resp.ErrMessage != "" {
			err = fmt.Errorf("%w: %s", err, resp.ErrMessage)
		}
		return fmt.Errorf("kafkatest: create topic %s: %w", name, err)
	}
	return nil
}

// Restart stops the broker if it runs (as Stop does) and starts it again on
// the same ports and data directory, returning once it answers a metadata
// request. After Kill, it recovers from the crash.
func (b *Broker) Restart(ctx context.Context) error { return b.proc.Restart(ctx) }

// Stop sends SIGTERM to the broker, waits for it to exit and, after
// Options.StopTimeout, kills it. The data directory stays for Restart.
func (b *Broker) Stop() error { b.proc.Stop(); return nil }

// Kill stops the broker with SIGKILL, as a crash would, and waits for it to
// exit. The data directory stays for Restart.
func (b *Broker) Kill() error { b.proc.Kill(); return nil }

// Close stops the broker and removes its directory.
func (b *Broker) Close() error { return b.proc.Close() }

// command is the broker's JVM; its output goes to logs/stdout.log. A run that
// writes the class-data-sharing archive keeps it only if it exits cleanly,
// since an archive cut short is no good.
func (b *Broker) command() (*exec.Cmd, func(clean bool)) {
	cdsFlags, dump := b.cds.flags(true)
	cmd := exec.Command(b.java, b.javaArgs(cdsFlags, "kafka.Kafka", filepath.Join(b.dir, "server.properties"))...)
	if dump == "" {
		return cmd, nil
	}
	return cmd, func(clean bool) {
		if clean {
			b.cds.keep(dump)
		} else {
			os.Remove(dump)
		}
	}
}

// javaArgs are java's arguments to run class with args.
func (b *Broker) javaArgs(cdsFlags []string, class string, args ...string) []string {
	argv := slices.Concat(b.opts.JVMFlags, cdsFlags)
	argv = append(argv, "-Dkafka.logs.dir="+filepath.Join(b.dir, "logs"))
	if cfg := filepath.Join(b.home, "config", "log4j2.properties"); fileExists(cfg) {
		argv = append(argv, "-Dlog4j2.configurationFile="+cfg)
	}
	argv = append(argv, "-cp", filepath.Join(b.home, "libs", "*"), class)
	return append(argv, args...)
}

// ready polls the broker with metadata requests until it lists itself or
// ctx ends.
func (b *Broker) ready(ctx context.Context) error {
	cl, err := b.Client(kgo.RetryTimeout(time.Second), kgo.DialTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	return servertest.Poll(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
		if err == nil && len(resp.Brokers) == 0 {
			err = errors.New("metadata lists no brokers")
		}
		return err
	})
}

// format writes server.properties and formats the KRaft storage.
func (b *Broker) format(ctx context.Context) error {
	props := filepath.Join(b.dir, "server.properties")
	if err := os.WriteFile(props, []byte(b.properties()), 0o644); err != nil {
		return fmt.Errorf("kafkatest: %w", err)
	}
	args := []string{"format", "--standalone", "--cluster-id", clusterID(), "--config", props}
	if s := b.opts.SCRAM; s != nil {
		args = append(args, "--add-scram", fmt.Sprintf("SCRAM-SHA-512=[name=%s,password=%s]", s.User, s.Password))
	}
	cdsFlags, _ := b.cds.flags(false)
	cmd := exec.CommandContext(ctx, b.java, b.javaArgs(cdsFlags, "kafka.tools.StorageTool", args...)...)
	cmd.Dir = b.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kafkatest: format storage: %w\n%s", err, servertest.Tail(string(out), 20))
	}
	return nil
}

// properties renders server.properties: a combined broker and controller,
// node 1, state topics sized for one node and a fast start.
func (b *Broker) properties() string {
	p := map[string]string{
		"process.roles":                       "broker,controller",
		"node.id":                             "1",
		"controller.quorum.bootstrap.servers": fmt.Sprintf("127.0.0.1:%d", b.ports.controller),
		"controller.listener.names":           "CONTROLLER",
		"inter.broker.listener.name":          "PLAINTEXT",
		"listeners":                           fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", b.ports.plain, b.ports.controller),
		"advertised.listeners":                fmt.Sprintf("PLAINTEXT://127.0.0.1:%d", b.ports.plain),
		"listener.security.protocol.map":      "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"log.dirs":                            filepath.Join(b.dir, "data"),
		"num.partitions":                      "1",
		"default.replication.factor":          "1",
		"auto.create.topics.enable":           "false",
		"group.initial.rebalance.delay.ms":    "0",
		// After a crash the restarted broker waits out its old session
		// before it is unfenced: 3 s instead of 9 s.
		"broker.heartbeat.interval.ms":                     "1000",
		"broker.session.timeout.ms":                        "3000",
		"offsets.topic.replication.factor":                 "1",
		"offsets.topic.num.partitions":                     "4",
		"transaction.state.log.replication.factor":         "1",
		"transaction.state.log.min.isr":                    "1",
		"transaction.state.log.num.partitions":             "4",
		"share.coordinator.state.topic.replication.factor": "1",
		"share.coordinator.state.topic.min.isr":            "1",
		"num.network.threads":                              "2",
		"num.io.threads":                                   "4",
		"num.recovery.threads.per.data.dir":                "1",
	}
	if b.opts.SCRAM != nil {
		p["listeners"] += fmt.Sprintf(",SASL_PLAINTEXT://127.0.0.1:%d", b.ports.sasl)
		p["advertised.listeners"] += fmt.Sprintf(",SASL_PLAINTEXT://127.0.0.1:%d", b.ports.sasl)
		p["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
		p["sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
		p["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] = "SCRAM-SHA-512"
		p["listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"] = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
	}
	if b.opts.TLS != nil {
		b.tlsProperties(p)
	}
	maps.Copy(p, b.opts.Properties)
	var sb strings.Builder
	sb.WriteString("# written by internal/kafkatest\n")
	for _, k := range slices.Sorted(maps.Keys(p)) {
		fmt.Fprintf(&sb, "%s=%s\n", k, p[k])
	}
	return sb.String()
}

// locate finds java and the broker's home, or reports ErrNotInstalled.
func locate(opts Options) (java, home string, err error) {
	java = "java"
	if jh := os.Getenv("JAVA_HOME"); jh != "" && fileExists(filepath.Join(jh, "bin", "java")) {
		java = filepath.Join(jh, "bin", "java")
	}
	if java, err = exec.LookPath(java); err != nil {
		return "", "", fmt.Errorf("%w: no java: %w", ErrNotInstalled, err)
	}
	home = opts.Home
	if home == "" {
		root, err := repoRoot()
		if err != nil {
			return "", "", fmt.Errorf("%w: set DSTREAM_KAFKA_HOME or run inside the repo: %w", ErrNotInstalled, err)
		}
		home = filepath.Join(root, ".cache", "kafka", opts.Version)
	}
	jars, _ := filepath.Glob(filepath.Join(home, "libs", "kafka_2.13-*.jar"))
	if len(jars) == 0 {
		return "", "", fmt.Errorf("%w: no %s", ErrNotInstalled, filepath.Join(home, "libs", "kafka_2.13-*.jar"))
	}
	return java, home, nil
}

// repoRoot is the nearest directory at or above the working directory that
// holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// clusterID returns a random KRaft cluster id: 16 bytes, URL-safe base64.
// clusterID returns a random KRaft cluster id: 16 bytes in unpadded
// base64url. The first byte is kept below 0xf8 so the id never starts with
// '-', which the storage tool would read as an option.
func clusterID() string {
	id := make([]byte, 16)
	_, _ = rand.Read(id) // never fails
	id[0] &= 0xf7
	return base64.RawURLEncoding.EncodeToString(id)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
