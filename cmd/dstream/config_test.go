package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// defaults is the configuration with nothing set: the demo.
func defaults(t *testing.T) Config {
	t.Helper()
	return configFrom(t, nil)
}

func TestValidate(t *testing.T) {
	base := defaults(t)
	missing := filepath.Join(t.TempDir(), "missing.csv")
	for _, test := range []struct {
		name   string
		change func(*Config)
		want   []string // substrings of the one error, naming the variable and the fix
	}{
		{"kafka without redis", func(c *Config) { c.KafkaBrokers = []string{"k:9092"} },
			[]string{"DSTREAM_REDIS_ADDR is empty", "set it to the Redis host:port", "unset DSTREAM_KAFKA_BROKERS for the demo"}},
		{"unknown job", func(c *Config) { c.Job = "word-count" }, []string{`DSTREAM_JOB="word-count"`, "built-in jobs are: top-ips"}},
		{"job id with a space", func(c *Config) { c.JobID = "my job" }, []string{`DSTREAM_JOB_ID="my job"`, "letters, digits, dots, dashes and underscores"}},
		{"job id with braces", func(c *Config) { c.JobID = "{x}" }, []string{"DSTREAM_JOB_ID", "letters, digits, dots, dashes and underscores"}},
		{"zero interval", func(c *Config) { c.BatchInterval = 0 }, []string{"DSTREAM_BATCH_INTERVAL=0s", "use 10ms to 1h0m0s, such as 10s"}},
		{"negative interval", func(c *Config) { c.BatchInterval = -time.Second }, []string{"DSTREAM_BATCH_INTERVAL=-1s"}},
		{"window not a multiple", func(c *Config) { c.Window = 25 * time.Second },
			[]string{"DSTREAM_WINDOW=25s", "positive multiple of DSTREAM_BATCH_INTERVAL (10s)"}},
		{"zero window", func(c *Config) { c.Window = 0 }, []string{"DSTREAM_WINDOW=0s", "positive multiple"}},
		{"slide not a multiple", func(c *Config) { c.Slide = 15 * time.Second },
			[]string{"DSTREAM_SLIDE=15s", "positive multiple of DSTREAM_BATCH_INTERVAL (10s)"}},
		{"grace under an interval", func(c *Config) { c.ShutdownGrace = 5 * time.Second },
			[]string{"DSTREAM_SHUTDOWN_GRACE=5s", "at least one batch interval (10s)"}},
		{"top zero", func(c *Config) { c.TopN = 0 }, []string{"DSTREAM_TOP_N=0", "use 1 to 10000"}},
		{"start offset", func(c *Config) { c.StartOffset = "beginning" }, []string{`DSTREAM_START_OFFSET="beginning"`, "earliest or latest"}},
		{"negative rate", func(c *Config) { c.MaxRatePerPartition = -1 },
			[]string{"DSTREAM_MAX_RATE_PER_PARTITION=-1", "0 (no cap) or a rate up to"}},
		{"short lease", func(c *Config) { c.LeaseTTL = 100 * time.Millisecond }, []string{"DSTREAM_LEASE_TTL=100ms", "use 500ms to 5m0s"}},
		{"sasl without user", func(c *Config) { c.KafkaSASLMechanism = "SCRAM-SHA-512"; c.KafkaSASLPassword = "p" },
			[]string{"DSTREAM_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 needs DSTREAM_KAFKA_SASL_USER and DSTREAM_KAFKA_SASL_PASSWORD"}},
		{"sasl without password", func(c *Config) { c.KafkaSASLMechanism = "SCRAM-SHA-512"; c.KafkaSASLUser = "u" },
			[]string{"needs DSTREAM_KAFKA_SASL_USER and DSTREAM_KAFKA_SASL_PASSWORD"}},
		{"other sasl mechanism", func(c *Config) { c.KafkaSASLMechanism = "PLAIN" },
			[]string{`DSTREAM_KAFKA_SASL_MECHANISM="PLAIN"`, "use SCRAM-SHA-512 or leave it empty"}},
		{"missing countries file", func(c *Config) { c.CountriesFile = missing },
			[]string{"DSTREAM_COUNTRIES_FILE=", "missing.csv", "no such file"}},
		{"missing kafka CA", func(c *Config) { c.KafkaTLSCAFile = missing }, []string{"DSTREAM_KAFKA_TLS_CA_FILE=", "no such file"}},
		{"missing redis CA", func(c *Config) { c.RedisTLSCAFile = missing }, []string{"DSTREAM_REDIS_TLS_CA_FILE=", "no such file"}},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, []string{`DSTREAM_LOG_LEVEL="verbose"`, "debug, info, warn or error"}},
		{"gc percent", func(c *Config) { c.GCPercent = 0 }, []string{`DSTREAM_GC_PERCENT=0`, "use 10 to 100000", "100 is Go's default"}},
		// Every number is range-checked.
		{"huge top", func(c *Config) { c.TopN = math.MaxInt64 }, []string{"DSTREAM_TOP_N=9223372036854775807", "use 1 to 10000"}},
		{"huge rate", func(c *Config) { c.MaxRatePerPartition = math.MaxInt64 }, []string{"DSTREAM_MAX_RATE_PER_PARTITION=9223372036854775807", "up to 1000000000"}},
		{"backpressure floor under 1", func(c *Config) { c.BackpressureMinRate = 0.5 }, []string{"DSTREAM_BACKPRESSURE_MIN_RATE=0.5", "use 1 to 1000000000"}},
		{"long interval", func(c *Config) {
			c.BatchInterval, c.Window, c.Slide, c.ShutdownGrace = 2*time.Hour, 2*time.Hour, 2*time.Hour, time.Hour
		},
			[]string{"DSTREAM_BATCH_INTERVAL=2h0m0s", "use 10ms to 1h0m0s"}},
		{"window of too many batches", func(c *Config) {
			c.BatchInterval, c.ShutdownGrace, c.Window = 10*time.Millisecond, time.Second, 20*time.Minute
		},
			[]string{"DSTREAM_WINDOW=20m0s", "at most 24h0m0s and 100000 batches"}},
		{"long lease", func(c *Config) { c.LeaseTTL = time.Hour }, []string{"DSTREAM_LEASE_TTL=1h0m0s", "use 500ms to 5m0s"}},
		{"long grace", func(c *Config) { c.ShutdownGrace = 2 * time.Hour }, []string{"DSTREAM_SHUTDOWN_GRACE=2h0m0s", "at most 1h0m0s"}},
		{"huge gc percent", func(c *Config) { c.GCPercent = 1 << 30 }, []string{"DSTREAM_GC_PERCENT=1073741824", "use 10 to 100000"}},
		{"state format", func(c *Config) { c.StateFormat = 3 }, []string{"DSTREAM_STATE_FORMAT=3", "use 2", "or 1 while you may roll back"}},
		{"http port", func(c *Config) { c.HTTPAddr = ":80800" }, []string{`DSTREAM_HTTP_ADDR=":80800"`, "port up to 65535"}},
		{"http address without port", func(c *Config) { c.HTTPAddr = "localhost" }, []string{`DSTREAM_HTTP_ADDR="localhost"`, "use [host]:port"}},
		// Topics that would loop, and windows that skip batches.
		{"dead letters to the input", func(c *Config) { c.DeadLetterTopic = c.InputTopic },
			[]string{`DSTREAM_DEADLETTER_TOPIC="logs" is the input topic`, "would come around forever"}},
		{"results to the input", func(c *Config) { c.OutputTopic = c.InputTopic },
			[]string{`DSTREAM_OUTPUT_TOPIC="logs" is the input topic`, "read its own results"}},
		{"dead letters to the results", func(c *Config) { c.DeadLetterTopic = c.OutputTopic },
			[]string{`DSTREAM_DEADLETTER_TOPIC="top-ips" is the output topic`}},
		{"topic name", func(c *Config) { c.OutputTopic = "top ips" }, []string{`DSTREAM_OUTPUT_TOPIC="top ips"`, "a Kafka topic name is"}},
		{"empty input topic", func(c *Config) { c.InputTopic = "" }, []string{`DSTREAM_INPUT_TOPIC=""`}},
		{"window shorter than the slide", func(c *Config) { c.Window, c.Slide = 10*time.Second, 20*time.Second },
			[]string{"DSTREAM_WINDOW=10s is shorter than DSTREAM_SLIDE=20s"}},
		// Addresses.
		{"redis without port", func(c *Config) { c.RedisAddr = "redis" }, []string{`DSTREAM_REDIS_ADDR="redis" is not host:port`, "use host:port"}},
		{"redis with another scheme", func(c *Config) { c.RedisAddr = "unix:///tmp/redis.sock" }, []string{"use host:port or a redis:// or rediss:// URL"}},
		{"redis credentials twice", func(c *Config) { c.RedisAddr, c.RedisPassword = "redis://u:pw@r:6379", "pw2" },
			[]string{`DSTREAM_REDIS_ADDR="redis://u:********@r:6379" holds credentials`, "set them in one place"}},
		// A list of Redis Cluster nodes.
		{"cluster node without port", func(c *Config) { c.RedisAddr = "r1:6379,r2" },
			[]string{`DSTREAM_REDIS_ADDR="r1:6379,r2": "r2" is not host:port`, "list a Redis Cluster's nodes as host:port,host:port"}},
		{"cluster list with an empty address", func(c *Config) { c.RedisAddr = "r1:6379,,r2:6379" },
			[]string{`DSTREAM_REDIS_ADDR="r1:6379,,r2:6379": an empty address`}},
		{"cluster list ending in a comma", func(c *Config) { c.RedisAddr = "r1:6379," }, []string{"an empty address", "one address is a single Redis"}},
		{"cluster node twice", func(c *Config) { c.RedisAddr = "r1:6379, r1:6379" }, []string{`"r1:6379" is listed twice`}},
		{"cluster nodes with bad ports", func(c *Config) { c.RedisAddr = "r1:0,r2:65536,:6379" },
			[]string{`"r1:0" has port "0", "r2:65536" has port "65536", ":6379" lacks the host`}},
		{"cluster of URLs", func(c *Config) { c.RedisAddr = "redis://u:pw@r1:6379,redis://u:pw@r2:6379" },
			[]string{`DSTREAM_REDIS_ADDR="redis://********@r2:6379": a list names the nodes of a Redis Cluster`, "set DSTREAM_REDIS_USER, DSTREAM_REDIS_PASSWORD and DSTREAM_REDIS_TLS"}},
		{"cluster URL with a comma", func(c *Config) { c.RedisAddr = "redis://r1:6379,r2:6379" }, []string{"as host:port without a URL or credentials"}},
		{"cluster nodes with credentials", func(c *Config) { c.RedisAddr = "u:pw@r1:6379,r2:6379" }, []string{`DSTREAM_REDIS_ADDR="********@r1:6379,r2:6379"`}},
		{"broker without port", func(c *Config) { c.KafkaBrokers, c.RedisAddr = []string{"k1:9092", "k2"}, "r:6379" },
			[]string{`DSTREAM_KAFKA_BROKERS: "k2" is not host:port`}},
	} {
		t.Run(test.name, func(t *testing.T) {
			c := base
			test.change(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			if lines := strings.Split(err.Error(), "\n"); len(lines) != 1 {
				t.Errorf("want one message, got %d:\n%v", len(lines), err)
			}
			for _, w := range test.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	base := defaults(t)
	countries := filepath.Join(t.TempDir(), "countries.csv")
	if err := os.WriteFile(countries, []byte("10.0.0.1,PT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		name   string
		change func(*Config)
	}{
		{"defaults", func(*Config) {}},
		{"kafka and redis", func(c *Config) { c.KafkaBrokers, c.RedisAddr = []string{"k:9092"}, "r:6379" }},
		{"short batches", func(c *Config) {
			c.BatchInterval, c.Window, c.Slide, c.ShutdownGrace = 200*time.Millisecond, time.Second, 400*time.Millisecond, time.Second
		}},
		{"scram", func(c *Config) {
			c.KafkaSASLMechanism, c.KafkaSASLUser, c.KafkaSASLPassword = "SCRAM-SHA-512", "u", "p"
		}},
		{"files that exist", func(c *Config) { c.CountriesFile, c.KafkaTLSCAFile, c.RedisTLSCAFile = countries, countries, countries }},
		{"rate cap and backpressure", func(c *Config) { c.MaxRatePerPartition, c.Backpressure = 1000, true }},
		{"redis url", func(c *Config) { c.KafkaBrokers, c.RedisAddr = []string{"k:9092"}, "redis://dstream:pw@r:6379/2" }},
		{"redis tls url", func(c *Config) { c.KafkaBrokers, c.RedisAddr = []string{"k:9092"}, "rediss://r:6380" }},
		{"dead letters dropped", func(c *Config) { c.DeadLetterTopic = "" }},
		{"window as long as the slide", func(c *Config) { c.Window = c.Slide }},
		{"http on every address", func(c *Config) { c.HTTPAddr = "0.0.0.0:9090" }},
	} {
		t.Run(test.name, func(t *testing.T) {
			c := base
			test.change(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := defaults(t)
	c.TopN, c.StartOffset, c.LogLevel = 0, "x", "x"
	err := c.Validate()
	for _, v := range []string{"DSTREAM_TOP_N", "DSTREAM_START_OFFSET", "DSTREAM_LOG_LEVEL"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("error %v does not mention %s", err, v)
		}
	}
}

func TestBadEnvironmentNamesTheVariable(t *testing.T) {
	for _, test := range []struct{ name, value string }{
		{"DSTREAM_BATCH_INTERVAL", "ten seconds"},
		{"DSTREAM_TOP_N", "three"},
		{"DSTREAM_BACKPRESSURE", "maybe"},
	} {
		t.Run(test.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(test.name, test.value)
			var stdout, stderr bytes.Buffer
			if code := run(nil, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), test.name) || !strings.Contains(stderr.String(), test.value) {
				t.Errorf("stderr does not name %s=%q:\n%s", test.name, test.value, stderr.String())
			}
		})
	}
}

func TestEverySettingIsDocumented(t *testing.T) {
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Tag.Get("envconfig") == "" || f.Tag.Get("desc") == "" {
			t.Errorf("Config.%s needs envconfig and desc tags", f.Name)
		}
		if strings.Contains(strings.ToLower(f.Name), "password") && f.Tag.Get("secret") != "true" {
			t.Errorf("Config.%s holds a password: tag it secret:\"true\"", f.Name)
		}
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	help := stdout.String()
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := "DSTREAM_" + f.Tag.Get("envconfig")
		line := ""
		for l := range strings.Lines(help) {
			if strings.Contains(l, " "+name+" ") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("help does not list %s", name)
			continue
		}
		if def := f.Tag.Get("default"); def != "" && !strings.Contains(line, " "+def+" ") {
			t.Errorf("help line of %s lacks its default %q: %q", name, def, line)
		}
		if !strings.Contains(line, f.Tag.Get("desc")) {
			t.Errorf("help line of %s lacks its description: %q", name, line)
		}
	}
	for _, cmd := range []string{"dstream config", "dstream help"} {
		if !strings.Contains(help, cmd) {
			t.Errorf("help does not mention %q", cmd)
		}
	}
}

func TestConfigMasksSecrets(t *testing.T) {
	const kafkaPass, redisPass = "kafka-Pa55-word", "redis-Pa55-word"
	for _, test := range []struct {
		name string
		env  map[string]string
		code int
	}{
		{"valid", map[string]string{"DSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}, 0},
		{"invalid", map[string]string{"DSTREAM_KAFKA_SASL_MECHANISM": "PLAIN", "DSTREAM_TOP_N": "0"}, 2},
	} {
		t.Run(test.name, func(t *testing.T) {
			clearEnv(t)
			env := map[string]string{
				"DSTREAM_KAFKA_BROKERS": "k1:9092,k2:9092", "DSTREAM_REDIS_ADDR": "r:6379",
				"DSTREAM_KAFKA_SASL_USER": "dstream", "DSTREAM_KAFKA_SASL_PASSWORD": kafkaPass,
				"DSTREAM_REDIS_USER": "dstream", "DSTREAM_REDIS_PASSWORD": redisPass,
			}
			for k, v := range test.env {
				env[k] = v
			}
			for k, v := range env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			if code := run([]string{"config"}, &stdout, &stderr); code != test.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, test.code, stderr.String())
			}
			out := stdout.String() + stderr.String()
			for _, secret := range []string{kafkaPass, redisPass} {
				if strings.Contains(out, secret) {
					t.Errorf("dstream config shows a password:\n%s", out)
				}
			}
			for _, want := range []string{
				"DSTREAM_KAFKA_SASL_PASSWORD=********", "DSTREAM_REDIS_PASSWORD=********",
				"DSTREAM_KAFKA_BROKERS=k1:9092,k2:9092", "DSTREAM_KAFKA_SASL_USER=dstream", "DSTREAM_BATCH_INTERVAL=10s",
			} {
				if !strings.Contains(stdout.String(), want+"\n") {
					t.Errorf("dstream config lacks %q:\n%s", want, stdout.String())
				}
			}
		})
	}
	t.Run("unset secrets print empty", func(t *testing.T) {
		clearEnv(t)
		var stdout, stderr bytes.Buffer
		run([]string{"config"}, &stdout, &stderr)
		if !strings.Contains(stdout.String(), "DSTREAM_REDIS_PASSWORD=\n") {
			t.Errorf("an unset password should print empty, so one can tell it is unset:\n%s", stdout.String())
		}
	})
}

// TestSettingsFromTheEnvironment: the failures issue #11 observed, each as
// `dstream config` reads the environment. Every one of them used to pass
// (or panic later) and must now exit 2 naming the variable and the fix.
func TestSettingsFromTheEnvironment(t *testing.T) {
	for _, test := range []struct {
		name   string
		env    map[string]string
		want   []string // in stderr
		absent []string // in stdout and stderr
	}{
		{name: "top n that panicked (makeslice)", env: map[string]string{"DSTREAM_TOP_N": "9223372036854775807"},
			want: []string{"DSTREAM_TOP_N=9223372036854775807: use 1 to 10000"}},
		{name: "top n past int64", env: map[string]string{"DSTREAM_TOP_N": "99999999999999999999"},
			want: []string{`DSTREAM_TOP_N="99999999999999999999": want a whole number in range`}},
		{name: "dead letters into the input", env: map[string]string{"DSTREAM_INPUT_TOPIC": "web", "DSTREAM_DEADLETTER_TOPIC": "web"},
			want: []string{`DSTREAM_DEADLETTER_TOPIC="web" is the input topic`}},
		{name: "results into the input", env: map[string]string{"DSTREAM_OUTPUT_TOPIC": "logs"},
			want: []string{`DSTREAM_OUTPUT_TOPIC="logs" is the input topic`}},
		{name: "window shorter than the slide", env: map[string]string{"DSTREAM_WINDOW": "10s", "DSTREAM_SLIDE": "20s"},
			want: []string{"DSTREAM_WINDOW=10s is shorter than DSTREAM_SLIDE=20s"}},
		{name: "misspelled variable", env: map[string]string{"DSTREAM_KAFKA_BROKER": "k:9092"},
			want: []string{"DSTREAM_KAFKA_BROKER is not a dstream setting: did you mean DSTREAM_KAFKA_BROKERS?"}},
		{name: "another misspelling", env: map[string]string{"DSTREAM_TOPN": "5"},
			want: []string{"DSTREAM_TOPN is not a dstream setting: did you mean DSTREAM_TOP_N?"}},
		{name: "duration without unit", env: map[string]string{"DSTREAM_BATCH_INTERVAL": "10"},
			want:   []string{`DSTREAM_BATCH_INTERVAL="10": want a duration with a unit, such as 10s`},
			absent: []string{"envconfig", "strconv", "converting", "time: missing unit"}},
		{name: "not a number", env: map[string]string{"DSTREAM_MAX_RATE_PER_PARTITION": "1k"},
			want:   []string{`DSTREAM_MAX_RATE_PER_PARTITION="1k": want a whole number such as 100`},
			absent: []string{"envconfig", "strconv", "invalid syntax"}},
		{name: "not a bool", env: map[string]string{"DSTREAM_BACKPRESSURE": "on"},
			want: []string{`DSTREAM_BACKPRESSURE="on": want true or false`}},
		{name: "not a float", env: map[string]string{"DSTREAM_BACKPRESSURE_MIN_RATE": "NaN"},
			want: []string{`DSTREAM_BACKPRESSURE_MIN_RATE="NaN": want a number such as 100 or 2.5`}},
		{name: "every type error at once", env: map[string]string{"DSTREAM_TOP_N": "three", "DSTREAM_WINDOW": "a while"},
			want: []string{`DSTREAM_TOP_N="three"`, `DSTREAM_WINDOW="a while"`}},
		{name: "redis url with a password that failed", env: map[string]string{
			"DSTREAM_KAFKA_BROKERS": "k:9092", "DSTREAM_REDIS_ADDR": "redis://user:Pa55-w0rd@", "DSTREAM_REDIS_PASSWORD": "x"},
			want: []string{`DSTREAM_REDIS_ADDR="redis://user:********@"`}, absent: []string{"Pa55-w0rd"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range test.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run([]string{"config"}, &stdout, &stderr)
			if code != 2 {
				t.Errorf("dstream config: exit %d, want 2\nstderr:\n%s", code, stderr.String())
			}
			for _, w := range test.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			for _, w := range test.absent {
				if strings.Contains(stdout.String()+stderr.String(), w) {
					t.Errorf("the output shows %q:\n%s%s", w, stdout.String(), stderr.String())
				}
			}
		})
	}
}

// TestRedisURL: DSTREAM_REDIS_ADDR takes a redis:// URL, whose password
// dstream config masks and which go-redis receives parsed.
func TestRedisURL(t *testing.T) {
	const password = "url-Pa55-w0rd"
	clearEnv(t)
	t.Setenv("DSTREAM_KAFKA_BROKERS", "k:9092")
	t.Setenv("DSTREAM_REDIS_ADDR", "redis://dstream:"+password+"@redis.example:6380/3")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"config"}, &stdout, &stderr); code != 0 {
		t.Fatalf("dstream config: exit %d\n%s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "DSTREAM_REDIS_ADDR=redis://dstream:********@redis.example:6380/3\n") {
		t.Errorf("dstream config does not show the URL masked:\n%s", stdout.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), password) {
		t.Errorf("dstream config shows the password")
	}
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	opts, cluster, err := cfg.redisOptions()
	if err != nil {
		t.Fatal(err)
	}
	if cluster != nil {
		t.Errorf("a redis:// URL made cluster options for %v", cluster.Addrs)
	}
	if opts.Addr != "redis.example:6380" || opts.Username != "dstream" || opts.Password != password || opts.DB != 3 || opts.TLSConfig != nil {
		t.Errorf("redis options: addr %q user %q db %d tls %v", opts.Addr, opts.Username, opts.DB, opts.TLSConfig != nil)
	}
	if got := cfg.redisHost(); got != "redis.example:6380" {
		t.Errorf("redisHost = %q, for messages", got)
	}
}

func TestUnknownVariables(t *testing.T) {
	for _, test := range []struct {
		env  []string
		want []string
	}{
		{[]string{"DSTREAM_TOP_N=3", "HOME=/root", "DSTREAM_REQUIRE_IT=1", "DSTREAM_CHAOS_SEED=7", "DSTREAM_BENCH_LINES=9"}, nil},
		{[]string{"DSTREAM_REDIS_ADRR=r:6379"}, []string{"DSTREAM_REDIS_ADRR is not a dstream setting: did you mean DSTREAM_REDIS_ADDR?"}},
		{[]string{"DSTREAM_LOGLEVEL=debug", "DSTREAM_WINDOWS=30s"}, []string{
			"DSTREAM_LOGLEVEL is not a dstream setting: did you mean DSTREAM_LOG_LEVEL?",
			"DSTREAM_WINDOWS is not a dstream setting: did you mean DSTREAM_WINDOW?",
		}},
		{[]string{"DSTREAM_CHAOSMONKEY=1"}, []string{"DSTREAM_CHAOSMONKEY is not a dstream setting"}},
	} {
		errs := unknownVariables(test.env)
		if len(errs) != len(test.want) {
			t.Errorf("%v: %v, want %d errors", test.env, errs, len(test.want))
			continue
		}
		for i, w := range test.want {
			if !strings.Contains(errs[i].Error(), w) {
				t.Errorf("%v: %q lacks %q", test.env, errs[i], w)
			}
		}
	}
}

// TestUnprefixedNamesAreNotSettings: a variable meant for another program
// (LOG_LEVEL, TOP_N) must not configure dstream, as envconfig's fallback to
// the unprefixed name would.
func TestUnprefixedNamesAreNotSettings(t *testing.T) {
	clearEnv(t)
	t.Setenv("LOG_LEVEL", "verbose")
	t.Setenv("TOP_N", "50")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogLevel != "info" || cfg.TopN != 3 {
		t.Errorf("LogLevel %q, TopN %d: read from unprefixed variables", cfg.LogLevel, cfg.TopN)
	}
}
