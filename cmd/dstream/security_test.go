package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/sinks"
)

const (
	redisUser     = "dstream"
	redisPassword = "redis-S3cret-7b1e"
	// defaultPassword locks Redis's default user, so only the ACL user gets in.
	defaultPassword = "default-S3cret-02aa"
)

// secrets are the passwords no output of dstream may show.
var secrets = []string{scramPassword, redisPassword, defaultPassword}

// jobTopics creates the input (with lines in it), output and dead-letter
// topics of one job on the shared broker.
func jobTopics(t *testing.T, b *kafkatest.Broker, lines int) (in, out, dlq string) {
	t.Helper()
	in, out, dlq = b.NewTopic(t, 2, nil), b.NewTopic(t, 1, nil), b.NewTopic(t, 1, nil)
	produceLines(t, b, in, lines)
	return in, out, dlq
}

// produceLines writes n generated web-log lines to topic, and one malformed.
func produceLines(t *testing.T, b *kafkatest.Broker, topic string, n int) {
	t.Helper()
	cl, err := b.Client(kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	gen := weblog.NewGenerator(uint64(n), 50)
	recs := []*kgo.Record{{Value: []byte("not a log line")}}
	for range n {
		recs = append(recs, &kgo.Record{Value: gen.Append(nil)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// jobEnv is the environment of a job on real Kafka and Redis with short
// batches and the given topics.
func jobEnv(job, in, out, dlq string) map[string]string {
	return map[string]string{
		"DSTREAM_JOB_ID":           job,
		"DSTREAM_INPUT_TOPIC":      in,
		"DSTREAM_OUTPUT_TOPIC":     out,
		"DSTREAM_DEADLETTER_TOPIC": dlq,
		"DSTREAM_HTTP_ADDR":        "127.0.0.1:0",
		"DSTREAM_BATCH_INTERVAL":   "250ms",
		"DSTREAM_WINDOW":           "5s",
		"DSTREAM_SLIDE":            "250ms",
		"DSTREAM_SHUTDOWN_GRACE":   "10s",
		"DSTREAM_LEASE_TTL":        "2s",
		"DSTREAM_LOG_LEVEL":        "debug",
	}
}

// aclRedis starts a redis-server whose default user has a password and
// whose ACL user is redisUser; config adds redis.conf directives.
func aclRedis(t *testing.T, config map[string]string) *redistest.Server {
	t.Helper()
	return redistest.Require(t, redistest.Options{
		Password: defaultPassword,
		User:     &redistest.User{Name: redisUser, Password: redisPassword},
		Config:   config,
	})
}

// readOutput reads the output topic with read_committed isolation over the
// plain listener until it holds at least n records.
func readOutput(t *testing.T, b *kafkatest.Broker, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := b.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d committed records from %s, want %d", len(recs), topic, n)
		}
		fetches.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// committedBatch reads the job's last committed batch from Redis.
func committedBatch(t *testing.T, opts *redis.Options, job string) uint64 {
	t.Helper()
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	v, err := rdb.HGet(context.Background(), "{dstream:"+job+"}:meta", "committed").Result()
	if err != nil {
		t.Fatalf("read the checkpoint of %s: %v", job, err)
	}
	n, _ := strconv.ParseUint(v, 10, 64)
	return n
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSecureConnections runs the job end to end through Kafka's SCRAM and
// TLS listeners and Redis's ACL user (over TLS too), then checks that no
// password shows in the logs, the pprint output, the HTTP endpoints or
// dstream config.
func TestSecureConnections(t *testing.T) {
	b := kafkatest.Shared(t)
	caFile := writeFile(t, "ca.pem", kafkaCA)
	for _, test := range []struct {
		name     string
		kafka    map[string]string
		redisTLS bool
		redisURL bool // the credentials in DSTREAM_REDIS_ADDR as a redis:// URL
	}{
		{name: "sasl", kafka: map[string]string{
			"DSTREAM_KAFKA_BROKERS":        b.SASLAddr(),
			"DSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
			"DSTREAM_KAFKA_SASL_USER":      scramUser,
			"DSTREAM_KAFKA_SASL_PASSWORD":  scramPassword,
		}},
		{name: "redis-url", redisURL: true, kafka: map[string]string{"DSTREAM_KAFKA_BROKERS": b.Addr()}},
		{name: "tls", redisTLS: true, kafka: map[string]string{
			"DSTREAM_KAFKA_BROKERS":     b.TLSAddr(),
			"DSTREAM_KAFKA_TLS":         "true",
			"DSTREAM_KAFKA_TLS_CA_FILE": caFile,
		}},
	} {
		t.Run(test.name, func(t *testing.T) {
			in, out, dlq := jobTopics(t, b, 2000)
			job := "secure-" + test.name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			env := jobEnv(job, in, out, dlq)
			for k, v := range test.kafka {
				env[k] = v
			}
			var rs *redistest.Server
			redisAddr := ""
			if test.redisTLS {
				port := freePort(t)
				rs = aclRedis(t, map[string]string{
					"tls-port":         strconv.Itoa(port),
					"tls-cert-file":    writeFile(t, "redis.crt", kafkaTLS.CertPEM),
					"tls-key-file":     writeFile(t, "redis.key", kafkaTLS.KeyPEM),
					"tls-auth-clients": "no",
				})
				redisAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
				env["DSTREAM_REDIS_TLS"], env["DSTREAM_REDIS_TLS_CA_FILE"] = "true", caFile
			} else {
				rs = aclRedis(t, nil)
				redisAddr = rs.Addr()
			}
			env["DSTREAM_REDIS_ADDR"] = redisAddr
			env["DSTREAM_REDIS_USER"], env["DSTREAM_REDIS_PASSWORD"] = redisUser, redisPassword
			if test.redisURL {
				env["DSTREAM_REDIS_ADDR"] = "redis://" + redisUser + ":" + redisPassword + "@" + redisAddr
				delete(env, "DSTREAM_REDIS_USER")
				delete(env, "DSTREAM_REDIS_PASSWORD")
			}
			cfg := configFrom(t, env)

			p := startProcessor(t, cfg)
			p.waitBatches(t, 1, 2*time.Minute)
			recs := readOutput(t, b, out, cfg.TopN)
			for _, r := range recs {
				if header(r, sinks.HeaderBatchID) == "" || header(r, sinks.HeaderOffsets) == "" {
					t.Errorf("output record %s lacks provenance headers", r.Key)
				}
			}
			if dead := readOutput(t, b, dlq, 1); string(dead[0].Value) != "not a log line" {
				t.Errorf("dead letter %q", dead[0].Value)
			}
			// What the HTTP endpoints show, while it runs.
			var served strings.Builder
			for _, path := range []string{"/", "/metrics", "/api/status", "/readyz", "/healthz"} {
				_, body := p.get(t, path)
				served.WriteString(body)
			}
			if err := p.stop(); err != nil {
				t.Fatalf("processor: %v", err)
			}
			if n := committedBatch(t, rs.ClientOptions(), job); n == 0 {
				t.Errorf("no batch committed in Redis")
			}

			var config bytes.Buffer
			if code := run([]string{"config"}, &config, &config); code != 0 {
				t.Errorf("dstream config: exit %d\n%s", code, config.String())
			}
			for what, text := range map[string]string{
				"logs": p.logs.String(), "stdout": p.stdout.String(), "HTTP endpoints": served.String(), "dstream config": config.String(),
			} {
				for _, secret := range secrets {
					if strings.Contains(text, secret) {
						t.Errorf("the %s show a password", what)
					}
				}
			}
		})
	}
}

// TestRefusedCredentials: wrong passwords and an untrusted certificate stop
// dstream at start with exit code 1 and a message naming the settings to
// check, without the password.
func TestRefusedCredentials(t *testing.T) {
	b := kafkatest.Shared(t)
	rs := aclRedis(t, nil)
	_, other, err := kafkatest.NewTLS()
	if err != nil {
		t.Fatal(err)
	}
	otherCA := writeFile(t, "other-ca.pem", other)
	const wrong = "wrong-Pa55word-e3d1"
	good := map[string]string{
		"DSTREAM_KAFKA_BROKERS":        b.SASLAddr(),
		"DSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
		"DSTREAM_KAFKA_SASL_USER":      scramUser,
		"DSTREAM_KAFKA_SASL_PASSWORD":  scramPassword,
		"DSTREAM_REDIS_ADDR":           rs.Addr(),
		"DSTREAM_REDIS_USER":           redisUser,
		"DSTREAM_REDIS_PASSWORD":       redisPassword,
	}
	for _, test := range []struct {
		name   string
		change map[string]string
		want   []string
	}{
		{"kafka password", map[string]string{"DSTREAM_KAFKA_SASL_PASSWORD": wrong},
			[]string{"kafka: connect to " + b.SASLAddr(), "SASL", `refused SASL user "dstream"`, "check DSTREAM_KAFKA_SASL_USER and DSTREAM_KAFKA_SASL_PASSWORD"}},
		{"kafka user", map[string]string{"DSTREAM_KAFKA_SASL_USER": "nobody"},
			[]string{`refused SASL user "nobody"`, "DSTREAM_KAFKA_SASL_PASSWORD"}},
		{"redis password", map[string]string{"DSTREAM_REDIS_PASSWORD": wrong},
			[]string{"redis: connect to " + rs.Addr(), "WRONGPASS", `Redis refused user "dstream"`, "check DSTREAM_REDIS_USER and DSTREAM_REDIS_PASSWORD"}},
		{"redis without user", map[string]string{"DSTREAM_REDIS_USER": "", "DSTREAM_REDIS_PASSWORD": ""},
			[]string{`Redis refused user "default"`, "DSTREAM_REDIS_PASSWORD"}},
		{"kafka TLS without the CA", map[string]string{
			"DSTREAM_KAFKA_BROKERS": b.TLSAddr(), "DSTREAM_KAFKA_SASL_MECHANISM": "", "DSTREAM_KAFKA_TLS": "true",
		}, []string{"certificate", "check DSTREAM_KAFKA_TLS, DSTREAM_KAFKA_TLS_CA_FILE"}},
		{"kafka TLS with another CA", map[string]string{
			"DSTREAM_KAFKA_BROKERS": b.TLSAddr(), "DSTREAM_KAFKA_SASL_MECHANISM": "", "DSTREAM_KAFKA_TLS": "true",
			"DSTREAM_KAFKA_TLS_CA_FILE": otherCA,
		}, []string{"certificate signed by unknown authority", "check DSTREAM_KAFKA_TLS, DSTREAM_KAFKA_TLS_CA_FILE"}},
		{"kafka TLS to a plaintext listener", map[string]string{
			"DSTREAM_KAFKA_BROKERS": b.Addr(), "DSTREAM_KAFKA_SASL_MECHANISM": "", "DSTREAM_KAFKA_TLS": "true",
			"DSTREAM_KAFKA_TLS_CA_FILE": otherCA,
		}, []string{"answer without TLS", "unset DSTREAM_KAFKA_TLS"}},
		{"kafka without TLS to a TLS listener", map[string]string{
			"DSTREAM_KAFKA_BROKERS": b.TLSAddr(), "DSTREAM_KAFKA_SASL_MECHANISM": "",
		}, []string{"expect TLS", "set DSTREAM_KAFKA_TLS=true"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			clearEnv(t)
			env := map[string]string{"DSTREAM_HTTP_ADDR": "127.0.0.1:0"}
			for k, v := range good {
				env[k] = v
			}
			for k, v := range test.change {
				env[k] = v
			}
			for k, v := range env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(nil, &stdout, &stderr)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
			}
			var msg string
			for _, l := range logLines(stderr.String()) {
				if l["message"] == "dstream stopped" {
					msg, _ = l["error"].(string)
				}
			}
			t.Logf("dstream stopped: %s", msg)
			for _, w := range test.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			for _, secret := range append(secrets, wrong) {
				if strings.Contains(stdout.String()+stderr.String(), secret) {
					t.Errorf("output shows a password:\n%s", stderr.String())
				}
			}
			if strings.Contains(stderr.String(), `"message":"dstream starting"`) {
				t.Errorf("dstream started the job before checking its connections")
			}
		})
	}
}

func ExampleConfig_settings() {
	c := Config{KafkaSASLPassword: "s3cret", RedisPassword: ""}
	for _, s := range c.settings() {
		if strings.HasSuffix(s[0], "PASSWORD") {
			fmt.Printf("%s=%q\n", s[0], s[1])
		}
	}
	// Output:
	// DSTREAM_KAFKA_SASL_PASSWORD="********"
	// DSTREAM_REDIS_PASSWORD=""
}
