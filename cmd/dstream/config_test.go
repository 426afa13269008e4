package main

import (
	"bytes"
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
		{"job id with a space", func(c *Config) { c.JobID = "my job" }, []string{`DSTREAM_JOB_ID="my job"`, "letters, digits, dashes"}},
		{"job id with braces", func(c *Config) { c.JobID = "{x}" }, []string{"DSTREAM_JOB_ID", "letters, digits, dashes"}},
		{"zero interval", func(c *Config) { c.BatchInterval = 0 }, []string{"DSTREAM_BATCH_INTERVAL=0s", "positive duration such as 10s"}},
		{"negative interval", func(c *Config) { c.BatchInterval = -time.Second }, []string{"DSTREAM_BATCH_INTERVAL=-1s"}},
		{"window not a multiple", func(c *Config) { c.Window = 25 * time.Second },
			[]string{"DSTREAM_WINDOW=25s", "positive multiple of DSTREAM_BATCH_INTERVAL (10s)"}},
		{"zero window", func(c *Config) { c.Window = 0 }, []string{"DSTREAM_WINDOW=0s", "positive multiple"}},
		{"slide not a multiple", func(c *Config) { c.Slide = 15 * time.Second },
			[]string{"DSTREAM_SLIDE=15s", "positive multiple of DSTREAM_BATCH_INTERVAL (10s)"}},
		{"grace under an interval", func(c *Config) { c.ShutdownGrace = 5 * time.Second },
			[]string{"DSTREAM_SHUTDOWN_GRACE=5s", "at least one batch interval (10s)"}},
		{"top zero", func(c *Config) { c.TopN = 0 }, []string{"DSTREAM_TOP_N=0", "use 1 or more"}},
		{"start offset", func(c *Config) { c.StartOffset = "beginning" }, []string{`DSTREAM_START_OFFSET="beginning"`, "earliest or latest"}},
		{"negative rate", func(c *Config) { c.MaxRatePerPartition = -1 },
			[]string{"DSTREAM_MAX_RATE_PER_PARTITION=-1", "0 (no cap) or a positive rate"}},
		{"short lease", func(c *Config) { c.LeaseTTL = 100 * time.Millisecond }, []string{"DSTREAM_LEASE_TTL=100ms", "at least 500ms"}},
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
		{"gc percent", func(c *Config) { c.GCPercent = 0 }, []string{`DSTREAM_GC_PERCENT=0`, "100 (Go's default) or more"}},
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
