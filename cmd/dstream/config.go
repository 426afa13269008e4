package main

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/dstream-io/dstream/internal/gcpolicy"
)

// Config holds every setting of dstream, read from DSTREAM_* variables.
type Config struct {
	KafkaBrokers        []string      `envconfig:"KAFKA_BROKERS" desc:"Kafka bootstrap brokers, comma-separated; unset runs the in-process demo"`
	InputTopic          string        `envconfig:"INPUT_TOPIC" default:"logs" desc:"topic of web-log lines"`
	OutputTopic         string        `envconfig:"OUTPUT_TOPIC" default:"top-ips" desc:"topic of results, written transactionally"`
	DeadLetterTopic     string        `envconfig:"DEADLETTER_TOPIC" default:"logs-deadletter" desc:"topic of malformed lines (empty: drop them, counted)"`
	RedisAddr           string        `envconfig:"REDIS_ADDR" desc:"Redis host:port for checkpoints; required with KAFKA_BROKERS"`
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
	GCPercent           int           `envconfig:"GC_PERCENT" default:"400" desc:"the Go collector's target percent (GOGC, which overrides it): more memory for less GC; the heap stays under 80% of a container memory limit"`
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

func loadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if c.JobID == "" {
		c.JobID = c.Job
	}
	return c, c.Validate()
}

// Demo reports whether no Kafka is configured: the in-process demo runs.
func (c Config) Demo() bool { return len(c.KafkaBrokers) == 0 }

// Validate checks the settings together and says what to change.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !c.Demo() && c.RedisAddr == "" {
		bad("DSTREAM_REDIS_ADDR is empty: set it to the Redis host:port that keeps checkpoints (or unset DSTREAM_KAFKA_BROKERS for the demo)")
	}
	if c.Job != "top-ips" {
		bad("DSTREAM_JOB=%q: the built-in jobs are: top-ips", c.Job)
	}
	if strings.ContainsAny(c.JobID, "{} ") {
		bad("DSTREAM_JOB_ID=%q: use letters, digits, dashes", c.JobID)
	}
	if c.BatchInterval <= 0 {
		bad("DSTREAM_BATCH_INTERVAL=%v: use a positive duration such as 10s", c.BatchInterval)
	} else {
		if c.Window <= 0 || c.Window%c.BatchInterval != 0 {
			bad("DSTREAM_WINDOW=%v: use a positive multiple of DSTREAM_BATCH_INTERVAL (%v)", c.Window, c.BatchInterval)
		}
		if c.Slide <= 0 || c.Slide%c.BatchInterval != 0 {
			bad("DSTREAM_SLIDE=%v: use a positive multiple of DSTREAM_BATCH_INTERVAL (%v)", c.Slide, c.BatchInterval)
		}
		if c.ShutdownGrace < c.BatchInterval {
			bad("DSTREAM_SHUTDOWN_GRACE=%v: give at least one batch interval (%v) so the batch in flight can finish", c.ShutdownGrace, c.BatchInterval)
		}
	}
	if c.TopN < 1 {
		bad("DSTREAM_TOP_N=%d: use 1 or more", c.TopN)
	}
	if c.StartOffset != "earliest" && c.StartOffset != "latest" {
		bad("DSTREAM_START_OFFSET=%q: use earliest or latest", c.StartOffset)
	}
	if c.MaxRatePerPartition < 0 {
		bad("DSTREAM_MAX_RATE_PER_PARTITION=%d: use 0 (no cap) or a positive rate", c.MaxRatePerPartition)
	}
	if c.LeaseTTL < 500*time.Millisecond {
		bad("DSTREAM_LEASE_TTL=%v: use at least 500ms", c.LeaseTTL)
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
	for name, f := range map[string]string{"DSTREAM_COUNTRIES_FILE": c.CountriesFile, "DSTREAM_KAFKA_TLS_CA_FILE": c.KafkaTLSCAFile, "DSTREAM_REDIS_TLS_CA_FILE": c.RedisTLSCAFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad("%s=%q: %v", name, f, err)
		}
	}
	if c.GCPercent < 10 {
		bad("DSTREAM_GC_PERCENT=%d: use 100 (Go's default) or more; %d (dstream's default) trades memory for throughput", c.GCPercent, gcpolicy.DefaultPercent)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("DSTREAM_LOG_LEVEL=%q: use debug, info, warn or error", c.LogLevel)
	}
	return errors.Join(errs...)
}

// settings lists every setting with its variable, default and description;
// secrets are masked.
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
		rows = append(rows, [4]string{envPrefix + "_" + f.Tag.Get("envconfig"), val, f.Tag.Get("default"), f.Tag.Get("desc")})
	}
	return rows
}
