package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dstream-io/dstream/internal/gcpolicy"
	"github.com/dstream-io/dstream/internal/wiring"
)

// Config holds every setting of dstream, read from DSTREAM_* variables.
// A field's envconfig tag names its variable (after DSTREAM_), its default
// tag the default, its desc tag the help text; the packaging checks
// (tools/composecheck/contract) read the same tags.
type Config struct {
	KafkaBrokers        []string      `envconfig:"KAFKA_BROKERS" desc:"Kafka bootstrap brokers, comma-separated; unset runs the in-process demo"`
	InputTopic          string        `envconfig:"INPUT_TOPIC" default:"logs" desc:"topic of web-log lines"`
	OutputTopic         string        `envconfig:"OUTPUT_TOPIC" default:"top-ips" desc:"topic of results, written transactionally"`
	DeadLetterTopic     string        `envconfig:"DEADLETTER_TOPIC" default:"logs-deadletter" desc:"topic of malformed lines (empty: drop them, counted)"`
	ControlTopic        string        `envconfig:"CONTROL_TOPIC" desc:"the job's own topic of batch markers, which recovery reads (default: dstream-JOB_ID-control, created at start)"`
	OnTopicRecreated    string        `envconfig:"ON_TOPIC_RECREATED" default:"refuse" desc:"when the input topic was deleted and created again: refuse, or follow it from START_OFFSET"`
	Shards              int           `envconfig:"SHARDS" default:"1" desc:"shards of the job's keyed stages: its replicas divide 2×SHARDS+1 tasks (1: one task, the whole job)"`
	RedisAddr           string        `envconfig:"REDIS_ADDR" desc:"Redis for checkpoints, host:port or redis[s]://[user:password@]host:port[/db], or a Redis Cluster's nodes, host:port,host:port,...; required with KAFKA_BROKERS"`
	Job                 string        `envconfig:"JOB" default:"top-ips" desc:"built-in job to run"`
	JobID               string        `envconfig:"JOB_ID" desc:"names the checkpoint keys and the Kafka transactional id (default: JOB)"`
	BatchInterval       time.Duration `envconfig:"BATCH_INTERVAL" default:"10s" desc:"batch interval"`
	Window              time.Duration `envconfig:"WINDOW" default:"30s" desc:"window length, a multiple of BATCH_INTERVAL"`
	Slide               time.Duration `envconfig:"SLIDE" default:"10s" desc:"window slide, a multiple of BATCH_INTERVAL"`
	TopN                int           `envconfig:"TOP_N" default:"3" desc:"how many IPs to rank"`
	CountriesFile       string        `envconfig:"COUNTRIES_FILE" desc:"CSV of ip,country lines"`
	StartOffset         string        `envconfig:"START_OFFSET" default:"earliest" desc:"where a job without checkpoint starts: earliest or latest"`
	MaxRatePerPartition int64         `envconfig:"MAX_RATE_PER_PARTITION" default:"0" desc:"records/s per partition a batch takes at most (0: no cap)"`
	Backpressure        bool          `envconfig:"BACKPRESSURE" default:"false" desc:"size batches to the measured processing rate"`
	BackpressureMinRate float64       `envconfig:"BACKPRESSURE_MIN_RATE" default:"100" desc:"records/s backpressure never goes below"`
	HTTPAddr            string        `envconfig:"HTTP_ADDR" default:":8080" desc:"address of /healthz, /readyz, /metrics and the status page"`
	LeaseTTL            time.Duration `envconfig:"LEASE_TTL" default:"5s" desc:"how long the active instance holds the job without renewing"`
	ShutdownGrace       time.Duration `envconfig:"SHUTDOWN_GRACE" default:"30s" desc:"how long SIGTERM waits for the batch in flight"`
	LogLevel            string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	GCPercent           int           `envconfig:"GC_PERCENT" default:"400" desc:"the Go collector's target percent (GOGC, which overrides it): more memory for less GC; lowered as the live heap grows, so that the heap runs at most 512 MiB past it; the heap stays under 80% of a container memory limit"`
	StateFormat         int           `envconfig:"STATE_FORMAT" default:"2" desc:"encoding of the checkpoint's state parts: 2, or 1 while a rollback to a release before 2026-12-02 (which reads only 1) must stay possible; both are always read"`
	KafkaSASLMechanism  string        `envconfig:"KAFKA_SASL_MECHANISM" desc:"empty or SCRAM-SHA-512"`
	KafkaSASLUser       string        `envconfig:"KAFKA_SASL_USER" desc:"SASL user"`
	KafkaSASLPassword   string        `envconfig:"KAFKA_SASL_PASSWORD" desc:"SASL password" secret:"true"`
	KafkaTLS            bool          `envconfig:"KAFKA_TLS" default:"false" desc:"connect to Kafka with TLS"`
	KafkaTLSCAFile      string        `envconfig:"KAFKA_TLS_CA_FILE" desc:"PEM CA bundle for Kafka TLS (default: system roots)"`
	RedisUser           string        `envconfig:"REDIS_USER" desc:"Redis ACL user"`
	RedisPassword       string        `envconfig:"REDIS_PASSWORD" desc:"Redis password" secret:"true"`
	RedisTLS            bool          `envconfig:"REDIS_TLS" default:"false" desc:"connect to Redis with TLS"`
	RedisTLSCAFile      string        `envconfig:"REDIS_TLS_CA_FILE" desc:"PEM CA bundle for Redis TLS (default: system roots)"`
}

const envPrefix = "DSTREAM"

// maxShards bounds DSTREAM_SHARDS: a keyed stage's tasks, and the
// partitions of its exchange topic.
const maxShards = 256

// notSettings are DSTREAM_* variables that other tools of the repository
// read (the test harnesses, the benchmarks, the compose file's host port):
// set beside dstream, they are not mistakes. A prefix ending in _ covers a
// family.
var notSettings = []string{
	"DSTREAM_REQUIRE_IT", "DSTREAM_KAFKA_HOME", "DSTREAM_KAFKA_VERSION", "DSTREAM_REDIS_SERVER", "DSTREAM_REDIS_CLI",
	"DSTREAM_CHROMIUM", "DSTREAM_CHAOS", "DSTREAM_CHAOS_", "DSTREAM_BENCH_", "DSTREAM_HTTP_PORT",
}

// loadConfig reads the settings from the environment and validates them.
// With an error it still returns what it could read (defaults for the
// rest), for `dstream config` to print.
//
// It decodes the variables itself rather than with envconfig.Process,
// which falls back to a setting's unprefixed name (LOG_LEVEL for
// DSTREAM_LOG_LEVEL), so that a variable meant for another program would
// configure dstream, and which stops at the first malformed value.
func loadConfig() (Config, error) {
	var c Config
	errs := unknownVariables(os.Environ())
	v, t := reflect.ValueOf(&c).Elem(), reflect.TypeOf(c)
	for i := range t.NumField() {
		f := t.Field(i)
		name := envPrefix + "_" + f.Tag.Get("envconfig")
		raw, set := os.LookupEnv(name)
		if !set {
			raw = f.Tag.Get("default")
		}
		if err := decodeSetting(v.Field(i), raw); err != nil {
			if !set {
				panic(fmt.Sprintf("config: the default of %s: %v", name, err)) // a programming error
			}
			errs = append(errs, fmt.Errorf("%s=%q: want %s", name, raw, err))
			_ = decodeSetting(v.Field(i), f.Tag.Get("default"))
		}
	}
	if c.JobID == "" {
		c.JobID = c.Job
	}
	if len(errs) > 0 {
		// Validate would judge values that were not read: the errors
		// above come first.
		return c, errors.Join(errs...)
	}
	return c, c.Validate()
}

// decodeSetting parses raw into a setting's field. Its error is the format
// the setting wants, for the message.
func decodeSetting(f reflect.Value, raw string) error {
	raw = strings.TrimSpace(raw)
	switch f.Interface().(type) {
	case string:
		f.SetString(raw)
	case []string:
		var list []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		f.Set(reflect.ValueOf(list))
	case time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return errors.New("a duration with a unit, such as 10s, 500ms or 1m30s")
		}
		f.SetInt(int64(d))
	case bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("true or false")
		}
		f.SetBool(b)
	case int, int64:
		n, err := strconv.ParseInt(raw, 10, f.Type().Bits())
		if errors.Is(err, strconv.ErrRange) {
			return errors.New("a whole number in range")
		} else if err != nil {
			return errors.New("a whole number such as 100")
		}
		f.SetInt(n)
	case float64:
		x, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return errors.New("a number such as 100 or 2.5")
		}
		f.SetFloat(x)
	default:
		return fmt.Errorf("a value of type %s, which dstream cannot read", f.Type())
	}
	return nil
}

// unknownVariables reports DSTREAM_* variables in environ that are no
// setting, each with the closest setting's name: a misspelled variable
// would otherwise be ignored (DSTREAM_KAFKA_BROKER runs the demo).
func unknownVariables(environ []string) []error {
	var zero Config
	var names []string
	for _, s := range zero.settings() {
		names = append(names, s[0])
	}
	var errs []error
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix+"_") || slices.Contains(names, name) || isNotSetting(name) {
			continue
		}
		errs = append(errs, fmt.Errorf("%s is not a dstream setting: did you mean %s? (dstream help lists them)", name, closest(name, names)))
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}

func isNotSetting(name string) bool {
	for _, n := range notSettings {
		if name == n || strings.HasSuffix(n, "_") && strings.HasPrefix(name, n) {
			return true
		}
	}
	return false
}

// closest returns the name nearest to s by edit distance.
func closest(s string, names []string) string {
	best, bestDist := "", math.MaxInt
	for _, n := range names {
		if d := editDistance(s, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Demo reports whether no Kafka is configured: the in-process demo runs.
func (c Config) Demo() bool { return len(c.KafkaBrokers) == 0 }

// Limits of the numeric settings. Beyond them a value is a typo or would
// exhaust memory (DSTREAM_TOP_N sizes a slice per slide; a window's
// batches are replayed on every restart).
const (
	minInterval, maxInterval = 10 * time.Millisecond, time.Hour
	maxWindow                = 24 * time.Hour
	maxWindowBatches         = 100_000
	maxTopN                  = 10_000
	maxRate                  = 1_000_000_000 // records/s
	minLeaseTTL, maxLeaseTTL = 500 * time.Millisecond, 5 * time.Minute
	maxShutdownGrace         = time.Hour
	minGCPercent             = 10
	maxGCPercent             = 100_000
)

// topicName is a legal Kafka topic name.
var (
	topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	jobID     = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,199}$`)
)

// Validate checks the settings together and says what to change.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, b := range c.KafkaBrokers {
		if err := checkHostPort(b); err != nil {
			bad("DSTREAM_KAFKA_BROKERS: %q %v: list host:port addresses, comma-separated", b, err)
		}
	}
	if !c.Demo() && c.RedisAddr == "" {
		bad("DSTREAM_REDIS_ADDR is empty: set it to the Redis host:port that keeps checkpoints (or unset DSTREAM_KAFKA_BROKERS for the demo)")
	}
	if c.RedisAddr != "" {
		if _, _, err := c.redisOptions(); err != nil {
			bad("%v", err)
		}
	}
	if c.Job != "top-ips" {
		bad("DSTREAM_JOB=%q: the built-in jobs are: top-ips", c.Job)
	}
	if !jobID.MatchString(c.JobID) {
		bad("DSTREAM_JOB_ID=%q: use letters, digits, dots, dashes and underscores (at most 200, starting with a letter or digit)", c.JobID)
	}
	c.validateTopics(bad)
	c.validateTimes(bad)
	if c.Shards < 1 || c.Shards > maxShards {
		bad("DSTREAM_SHARDS=%d: use 1 (one task: the whole job) to %d", c.Shards, maxShards)
	}
	if c.TopN < 1 || c.TopN > maxTopN {
		bad("DSTREAM_TOP_N=%d: use 1 to %d", c.TopN, maxTopN)
	}
	if c.StartOffset != "earliest" && c.StartOffset != "latest" {
		bad("DSTREAM_START_OFFSET=%q: use earliest or latest", c.StartOffset)
	}
	if c.MaxRatePerPartition < 0 || c.MaxRatePerPartition > maxRate {
		bad("DSTREAM_MAX_RATE_PER_PARTITION=%d: use 0 (no cap) or a rate up to %d records/s", c.MaxRatePerPartition, maxRate)
	}
	if c.BackpressureMinRate < 1 || c.BackpressureMinRate > maxRate {
		bad("DSTREAM_BACKPRESSURE_MIN_RATE=%v: use 1 to %d records/s", c.BackpressureMinRate, maxRate)
	}
	if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || !validPort(port, true) {
		bad("DSTREAM_HTTP_ADDR=%q: use [host]:port, such as :8080, with a port up to 65535 (0: any free port)", c.HTTPAddr)
	}
	switch c.KafkaSASLMechanism {
	case "":
	case "SCRAM-SHA-512":
		if c.KafkaSASLUser == "" || c.KafkaSASLPassword == "" {
			bad("DSTREAM_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 needs DSTREAM_KAFKA_SASL_USER and DSTREAM_KAFKA_SASL_PASSWORD")
		}
	default:
		bad("DSTREAM_KAFKA_SASL_MECHANISM=%q: use SCRAM-SHA-512 or leave it empty", c.KafkaSASLMechanism)
	}
	for _, f := range []struct{ name, path string }{
		{"DSTREAM_COUNTRIES_FILE", c.CountriesFile}, {"DSTREAM_KAFKA_TLS_CA_FILE", c.KafkaTLSCAFile}, {"DSTREAM_REDIS_TLS_CA_FILE", c.RedisTLSCAFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			bad("%s=%q: %v", f.name, f.path, err)
		}
	}
	if c.GCPercent < minGCPercent || c.GCPercent > maxGCPercent {
		bad("DSTREAM_GC_PERCENT=%d: use %d to %d; 100 is Go's default, %d (dstream's) trades memory for throughput", c.GCPercent, minGCPercent, maxGCPercent, gcpolicy.DefaultPercent)
	}
	if c.StateFormat != 1 && c.StateFormat != 2 {
		bad("DSTREAM_STATE_FORMAT=%d: use 2 (the default), or 1 while you may roll back to a release before 2026-12-02", c.StateFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("DSTREAM_LOG_LEVEL=%q: use debug, info, warn or error", c.LogLevel)
	}
	return errors.Join(errs...)
}

// validateTopics checks the topics' names and refuses topics that would
// loop: a job reading its own results or dead letters feeds on itself (a
// malformed line sent back to the input comes around forever).
func (c Config) validateTopics(bad func(string, ...any)) {
	for _, t := range []struct{ name, topic string }{
		{"DSTREAM_INPUT_TOPIC", c.InputTopic}, {"DSTREAM_OUTPUT_TOPIC", c.OutputTopic}, {"DSTREAM_DEADLETTER_TOPIC", c.DeadLetterTopic},
	} {
		if t.topic == "" && t.name == "DSTREAM_DEADLETTER_TOPIC" {
			continue // drops malformed lines
		}
		if !topicName.MatchString(t.topic) || t.topic == "." || t.topic == ".." {
			bad("%s=%q: a Kafka topic name is 1 to 249 letters, digits, dots, dashes and underscores", t.name, t.topic)
		}
	}
	if c.ControlTopic != "" && (!topicName.MatchString(c.ControlTopic) || c.ControlTopic == "." || c.ControlTopic == "..") {
		bad("DSTREAM_CONTROL_TOPIC=%q: a Kafka topic name is 1 to 249 letters, digits, dots, dashes and underscores", c.ControlTopic)
	}
	if control := c.controlTopic(); control == c.InputTopic || control == c.OutputTopic || control == c.DeadLetterTopic {
		bad("DSTREAM_CONTROL_TOPIC=%q is also the input, output or dead-letter topic: it holds the job's batch markers only; use a topic of its own", control)
	}
	if c.OnTopicRecreated != "refuse" && c.OnTopicRecreated != "follow" {
		bad("DSTREAM_ON_TOPIC_RECREATED=%q: use refuse or follow", c.OnTopicRecreated)
	}
	switch {
	case c.OutputTopic == c.InputTopic:
		bad("DSTREAM_OUTPUT_TOPIC=%q is the input topic: the job would read its own results; use another topic", c.OutputTopic)
	case c.DeadLetterTopic == c.InputTopic:
		bad("DSTREAM_DEADLETTER_TOPIC=%q is the input topic: a malformed line would come around forever; use another topic, or empty to drop malformed lines", c.DeadLetterTopic)
	case c.DeadLetterTopic == c.OutputTopic:
		bad("DSTREAM_DEADLETTER_TOPIC=%q is the output topic: dead letters would mix with results; use another topic", c.DeadLetterTopic)
	}
}

// controlTopic is the job's control topic, set or derived from the job id.
func (c Config) controlTopic() string {
	if c.ControlTopic != "" {
		return c.ControlTopic
	}
	return wiring.ControlTopic(c.JobID)
}

// validateTimes checks the durations: each in range, windows in whole
// batches, the slide within the window.
func (c Config) validateTimes(bad func(string, ...any)) {
	if c.BatchInterval < minInterval || c.BatchInterval > maxInterval {
		bad("DSTREAM_BATCH_INTERVAL=%v: use %v to %v, such as 10s", c.BatchInterval, minInterval, maxInterval)
	} else {
		for _, w := range []struct {
			name string
			d    time.Duration
		}{{"DSTREAM_WINDOW", c.Window}, {"DSTREAM_SLIDE", c.Slide}} {
			if w.d <= 0 || w.d%c.BatchInterval != 0 || w.d > maxWindow || w.d/c.BatchInterval > maxWindowBatches {
				bad("%s=%v: use a positive multiple of DSTREAM_BATCH_INTERVAL (%v), at most %v and %d batches", w.name, w.d, c.BatchInterval, maxWindow, maxWindowBatches)
			}
		}
		if c.ShutdownGrace < c.BatchInterval {
			bad("DSTREAM_SHUTDOWN_GRACE=%v: give at least one batch interval (%v) so the batch in flight can finish", c.ShutdownGrace, c.BatchInterval)
		}
	}
	if c.Window > 0 && c.Slide > c.Window {
		bad("DSTREAM_WINDOW=%v is shorter than DSTREAM_SLIDE=%v: batches between windows would count nowhere; use a window at least as long as the slide", c.Window, c.Slide)
	}
	if c.ShutdownGrace > maxShutdownGrace {
		bad("DSTREAM_SHUTDOWN_GRACE=%v: use at most %v", c.ShutdownGrace, maxShutdownGrace)
	}
	if c.LeaseTTL < minLeaseTTL || c.LeaseTTL > maxLeaseTTL {
		bad("DSTREAM_LEASE_TTL=%v: use %v to %v", c.LeaseTTL, minLeaseTTL, maxLeaseTTL)
	}
}

// checkHostPort checks a host:port address.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("is not host:port")
	}
	if host == "" {
		return errors.New("lacks the host")
	}
	if !validPort(port, false) {
		return fmt.Errorf("has port %q", port)
	}
	return nil
}

func validPort(port string, zeroOK bool) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n <= 65535 && (n > 0 || zeroOK && n == 0)
}

// redisOptions returns the client options of DSTREAM_REDIS_ADDR and the
// other DSTREAM_REDIS_* settings: a single Redis's (single) for host:port or
// a redis:// or rediss:// URL, or a Redis Cluster's (cluster) for a
// comma-separated list of host:port nodes, which go-redis's cluster client
// starts from and finds the rest of the cluster through. A URL's user and
// password, if any, stand in for DSTREAM_REDIS_USER and _PASSWORD; rediss://
// turns TLS on. Errors never show the password.
func (c Config) redisOptions() (single *redis.Options, cluster *redis.ClusterOptions, err error) {
	if addrs := strings.Split(c.RedisAddr, ","); len(addrs) > 1 {
		if cluster, err = c.redisClusterOptions(addrs); err != nil {
			return nil, nil, err
		}
		return nil, cluster, nil
	}
	opts := &redis.Options{Addr: c.RedisAddr}
	if scheme, _, ok := strings.Cut(c.RedisAddr, "://"); ok {
		if scheme != "redis" && scheme != "rediss" {
			return nil, nil, fmt.Errorf("DSTREAM_REDIS_ADDR=%q: use host:port or a redis:// or rediss:// URL", maskRedisAddr(c.RedisAddr))
		}
		var err error
		if opts, err = redis.ParseURL(c.RedisAddr); err != nil {
			// go-redis's errors quote the URL: say what is wrong without it.
			return nil, nil, fmt.Errorf("DSTREAM_REDIS_ADDR=%q: not a URL go-redis reads: use redis[s]://[user:password@]host:port[/db]", maskRedisAddr(c.RedisAddr))
		}
		if (opts.Username != "" || opts.Password != "") && (c.RedisUser != "" || c.RedisPassword != "") {
			return nil, nil, fmt.Errorf("DSTREAM_REDIS_ADDR=%q holds credentials and DSTREAM_REDIS_USER or _PASSWORD is set too: set them in one place", maskRedisAddr(c.RedisAddr))
		}
	} else if err := checkHostPort(c.RedisAddr); err != nil {
		return nil, nil, fmt.Errorf("DSTREAM_REDIS_ADDR=%q %v: use host:port, such as redis:6379, or a redis:// URL", c.RedisAddr, err)
	}
	if opts.Username == "" && opts.Password == "" {
		opts.Username, opts.Password = c.RedisUser, c.RedisPassword
	}
	return opts, nil, nil
}

// redisClusterOptions returns the options of a Redis Cluster whose nodes
// addrs lists. The nodes are plain host:port: a URL names one Redis (and
// a comma in one is more likely a typo than a list), so the credentials
// and TLS come from the other DSTREAM_REDIS_* settings.
func (c Config) redisClusterOptions(addrs []string) (*redis.ClusterOptions, error) {
	const how = "list a Redis Cluster's nodes as host:port,host:port (one address is a single Redis)"
	if strings.Contains(c.RedisAddr, "://") || strings.Contains(c.RedisAddr, "@") {
		return nil, fmt.Errorf("DSTREAM_REDIS_ADDR=%q: a list names the nodes of a Redis Cluster, as host:port without a URL or credentials: "+
			"set DSTREAM_REDIS_USER, DSTREAM_REDIS_PASSWORD and DSTREAM_REDIS_TLS for it", maskRedisAddr(c.RedisAddr))
	}
	var problems []string
	seen := map[string]bool{}
	for i, a := range addrs {
		a = strings.TrimSpace(a)
		addrs[i] = a
		switch err := checkHostPort(a); {
		case a == "":
			problems = append(problems, "an empty address")
		case err != nil:
			problems = append(problems, fmt.Sprintf("%q %v", a, err))
		case seen[a]:
			problems = append(problems, fmt.Sprintf("%q is listed twice", a))
		}
		seen[a] = true
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("DSTREAM_REDIS_ADDR=%q: %s: %s", c.RedisAddr, strings.Join(problems, ", "), how)
	}
	return &redis.ClusterOptions{Addrs: addrs, Username: c.RedisUser, Password: c.RedisPassword}, nil
}

// maskRedisAddr hides the password of a redis:// URL, and of anything else
// with credentials (a list, a URL that does not parse, user:password@host)
// everything before the last @: a comma or a bad escape must not make a
// password show.
func maskRedisAddr(addr string) string {
	at := strings.LastIndex(addr, "@")
	if at < 0 {
		return addr
	}
	if u, err := url.Parse(addr); err == nil && u.User != nil && !strings.Contains(addr, ",") {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "********")
		}
		return strings.Replace(u.String(), "%2A%2A%2A%2A%2A%2A%2A%2A", "********", 1)
	}
	if scheme, _, ok := strings.Cut(addr, "://"); ok {
		return scheme + "://********" + addr[at:]
	}
	return "********" + addr[at:]
}

// redisHost is the host:port of the configured Redis, or the list of a
// cluster's nodes, for messages.
func (c Config) redisHost() string {
	single, cluster, err := c.redisOptions()
	switch {
	case err != nil:
		return maskRedisAddr(c.RedisAddr)
	case cluster != nil:
		return strings.Join(cluster.Addrs, ",")
	}
	return single.Addr
}

// settings lists every setting with its variable, value, default and
// description; secrets are masked.
func (c Config) settings() [][4]string {
	var rows [][4]string
	v, t := reflect.ValueOf(c), reflect.TypeOf(c)
	for i := range t.NumField() {
		f := t.Field(i)
		val := fmt.Sprint(v.Field(i).Interface())
		if s, ok := v.Field(i).Interface().([]string); ok {
			val = strings.Join(s, ",")
		}
		if f.Tag.Get("secret") == "true" && val != "" {
			val = "********"
		}
		if f.Name == "RedisAddr" {
			val = maskRedisAddr(val)
		}
		rows = append(rows, [4]string{envPrefix + "_" + f.Tag.Get("envconfig"), val, f.Tag.Get("default"), f.Tag.Get("desc")})
	}
	return rows
}
