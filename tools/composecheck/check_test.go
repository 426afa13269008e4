package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRepositoryFiles checks the repository's own docker-compose.yml and Dockerfile.
func TestRepositoryFiles(t *testing.T) {
	problems, err := checkCompose(context.Background(), "../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("docker-compose.yml: %s", p)
	}
	problems, err = checkDockerfile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("Dockerfile: %s", p)
	}
}

// validCompose passes every rule; each test case breaks one.
const validCompose = `
name: t
services:
  kafka:
    image: apache/kafka:4.1.0
    environment:
      CLUSTER_ID: rnwLOYrMr6f8jRWKBqD-Wg
      KAFKA_PROCESS_ROLES: broker,controller
      KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:9092
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: 1
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: 1
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: 1
    healthcheck:
      test: ["CMD-SHELL", "true"]
  init:
    image: apache/kafka:4.1.0
    labels:
      io.dstream.one-shot: "true"
    restart: "no"
    depends_on:
      kafka:
        condition: service_healthy
  redis:
    image: redis:7.4-alpine
    command: ["redis-server", "--appendonly", "yes", "--maxmemory-policy", "noeviction"]
    healthcheck:
      test: ["CMD", "redis-cli", "ping"]
  dstream:
    build: .
    depends_on:
      kafka:
        condition: service_healthy
      init:
        condition: service_completed_successfully
      redis:
        condition: service_healthy
    environment:
      DSTREAM_KAFKA_BROKERS: kafka:9092
      DSTREAM_REDIS_ADDR: redis:6379
      DSTREAM_COUNTRIES_FILE: /etc/countries.csv
    volumes:
      - type: bind
        source: ./countries.csv
        target: /etc/countries.csv
        read_only: true
    stop_grace_period: 45s
    healthcheck:
      test: ["CMD", "/usr/local/bin/httpprobe", "http://127.0.0.1:8080/healthz"]
`

func TestComposeRules(t *testing.T) {
	for _, test := range []struct {
		name      string
		old, new  string // replace old by new in validCompose
		csv       string // countries.csv; "" for a valid one
		want      string // in a problem, or in the load error
		loadError bool
	}{
		{name: "valid"},
		{
			name: "missing healthcheck",
			old:  "    healthcheck:\n      test: [\"CMD\", \"redis-cli\", \"ping\"]\n",
			want: `service "redis": no healthcheck`,
		},
		{
			name: "disabled healthcheck",
			old:  "test: [\"CMD\", \"redis-cli\", \"ping\"]", new: "disable: true",
			want: `service "redis": no healthcheck`,
		},
		{
			name: "depends_on service_started",
			old:  "      redis:\n        condition: service_healthy", new: "      redis:\n        condition: service_started",
			want: `depends_on "redis" waits for "service_started"; use condition: service_healthy`,
		},
		{
			name: "short depends_on syntax",
			old:  "    depends_on:\n      kafka:\n        condition: service_healthy\n  redis:",
			new:  "    depends_on: [kafka]\n  redis:",
			want: `service "init": depends_on "kafka" waits for "service_started"`,
		},
		{
			name: "one-shot waited for as healthy",
			old:  "condition: service_completed_successfully", new: "condition: service_healthy",
			want: `depends_on "init" waits for "service_healthy"; use condition: service_completed_successfully`,
		},
		{
			name: "one-shot that restarts",
			old:  `restart: "no"`, new: "restart: on-failure",
			want: `service "init": a one-shot`,
		},
		{
			name: "redis without appendonly",
			old:  `"--appendonly", "yes", `,
			want: `must include "--appendonly yes"`,
		},
		{
			name: "redis that evicts",
			old:  `"noeviction"`, new: `"allkeys-lru"`,
			want: `must include "--maxmemory-policy noeviction"`,
		},
		{
			name: "no brokers",
			old:  "      DSTREAM_KAFKA_BROKERS: kafka:9092\n",
			want: "DSTREAM_KAFKA_BROKERS is not set",
		},
		{
			name: "no redis addr",
			old:  "      DSTREAM_REDIS_ADDR: redis:6379\n",
			want: "DSTREAM_REDIS_ADDR is not set",
		},
		{
			name: "brokers name an unknown host",
			old:  "DSTREAM_KAFKA_BROKERS: kafka:9092", new: "DSTREAM_KAFKA_BROKERS: localhost:9092",
			want: `names "localhost", which is no service`,
		},
		{
			name: "brokers not advertised",
			old:  "PLAINTEXT://kafka:9092", new: "PLAINTEXT://localhost:9092",
			want: "does not advertise",
		},
		{
			name: "unknown setting",
			old:  "      DSTREAM_REDIS_ADDR: redis:6379\n", new: "      DSTREAM_REDIS_ADDR: redis:6379\n      DSTREAM_TOPN: 5\n",
			want: "DSTREAM_TOPN is not a dstream setting",
		},
		{
			name: "secret in plain text",
			old:  "      DSTREAM_REDIS_ADDR: redis:6379\n", new: "      DSTREAM_REDIS_ADDR: redis:6379\n      DSTREAM_REDIS_PASSWORD: hunter2\n",
			want: "DSTREAM_REDIS_PASSWORD holds a secret in plain text",
		},
		{
			name: "countries mounted writable",
			old:  "        read_only: true\n",
			want: "mount /etc/countries.csv read_only: true",
		},
		{
			name: "countries not mounted",
			old:  "/etc/countries.csv\n    volumes", new: "/etc/other.csv\n    volumes",
			want: "no volume mounts a file there",
		},
		{
			name: "countries source missing",
			old:  "source: ./countries.csv", new: "source: ./nope.csv",
			want: "mount source of /etc/countries.csv",
		},
		{
			name: "countries without header",
			csv:  "192.0.2.1,US\n2001:db8::1,DE\n",
		},
		{
			name: "countries with a bad IP",
			csv:  "ip,country\n192.0.2.1,US\n192.0.2.300,DE\n",
			want: `line 3: "192.0.2.300" is not an IP address`,
		},
		{
			name: "countries with three fields",
			csv:  "ip,country\n192.0.2.1,US,extra\n",
			want: "wrong number of fields",
		},
		{
			name: "countries empty",
			csv:  "ip,country\n",
			want: "no ip,country rows",
		},
		{
			name: "grace shorter than the shutdown grace",
			old:  "stop_grace_period: 45s", new: "stop_grace_period: 20s",
			want: "stop_grace_period (20s) must be longer than DSTREAM_SHUTDOWN_GRACE (30s)",
		},
		{
			name: "window not a multiple of the batch interval",
			old:  "      DSTREAM_REDIS_ADDR: redis:6379\n", new: "      DSTREAM_REDIS_ADDR: redis:6379\n      DSTREAM_WINDOW: 25s\n",
			want: "DSTREAM_WINDOW (25s) must be a multiple of DSTREAM_BATCH_INTERVAL (10s)",
		},
		{
			name: "shutdown grace shorter than a batch",
			old:  "      DSTREAM_REDIS_ADDR: redis:6379\n", new: "      DSTREAM_REDIS_ADDR: redis:6379\n      DSTREAM_SHUTDOWN_GRACE: 5s\n",
			want: "DSTREAM_SHUTDOWN_GRACE (5s) must be at least DSTREAM_BATCH_INTERVAL (10s)",
		},
		{
			name: "bad duration",
			old:  "      DSTREAM_REDIS_ADDR: redis:6379\n", new: "      DSTREAM_REDIS_ADDR: redis:6379\n      DSTREAM_SLIDE: ten\n",
			want: `DSTREAM_SLIDE "ten" is not a positive duration`,
		},
		{
			name: "latest image",
			old:  "redis:7.4-alpine", new: "redis:latest",
			want: `image "redis:latest" uses the latest tag`,
		},
		{
			name: "untagged image",
			old:  "redis:7.4-alpine", new: "redis",
			want: `image "redis" has no tag`,
		},
		{
			name: "bad cluster id",
			old:  "rnwLOYrMr6f8jRWKBqD-Wg", new: "my-cluster",
			want: `CLUSTER_ID "my-cluster" is not 16 bytes`,
		},
		{
			name: "transaction log min ISR",
			old:  "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: 1", new: "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: 2",
			want: "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR is \"2\"",
		},
		{
			name: "combined node",
			old:  "KAFKA_PROCESS_ROLES: broker,controller", new: "KAFKA_PROCESS_ROLES: broker",
			want: `lacks "controller"`,
		},
		{
			name: "unknown key", loadError: true,
			old: "    stop_grace_period: 45s", new: "    stop_grace_period: 45s\n    healthchek: {}",
			want: "healthchek",
		},
		{
			name: "depends_on an unknown service", loadError: true,
			old:  "      redis:\n        condition: service_healthy\n    environment",
			new:  "      redis:\n        condition: service_healthy\n      zookeeper:\n        condition: service_healthy\n    environment",
			want: "zookeeper",
		},
	} {
		t.Run(test.name, func(t *testing.T) {
			dir := t.TempDir()
			if test.csv == "" {
				test.csv = "ip,country\n192.0.2.1,US\n"
			}
			compose := validCompose
			if test.old != "" {
				if !strings.Contains(compose, test.old) {
					t.Fatalf("test case: %q not in validCompose", test.old)
				}
				compose = strings.Replace(compose, test.old, test.new, 1)
			}
			write(t, dir, "docker-compose.yml", compose)
			write(t, dir, "countries.csv", test.csv)
			write(t, dir, "Dockerfile", "FROM scratch\n")

			problems, err := checkCompose(context.Background(), filepath.Join(dir, "docker-compose.yml"))
			if test.loadError {
				if err == nil || !strings.Contains(err.Error(), test.want) {
					t.Fatalf("load error = %v, want one mentioning %q", err, test.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			expect(t, problems, test.want)
		})
	}
}

// validDockerfile passes every rule; each test case breaks one.
const validDockerfile = `# syntax=docker/dockerfile:1
ARG GO_VERSION=1.26
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ENV CGO_ENABLED=0
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    # a comment inside the continuation
    go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/dstream ./cmd/logsender

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="dstream" \
      org.opencontainers.image.source="https://example.com/dstream" \
      org.opencontainers.image.version="dev"
COPY --from=build /out/dstream /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dstream"]
`

func TestDockerfileRules(t *testing.T) {
	for _, test := range []struct {
		name     string
		old, new string
		want     string
	}{
		{name: "valid"},
		{
			name: "single stage",
			old:  validDockerfile[:strings.Index(validDockerfile, "FROM gcr.io")],
			new:  "",
			want: "not a multi-stage build",
		},
		{name: "named user", old: "USER 65532:65532", new: "USER nonroot", want: "USER nonroot: use a numeric uid"},
		{name: "root user", old: "USER 65532:65532", new: "USER 0:0", want: "USER 0:0 is root"},
		{name: "no user", old: "USER 65532:65532\n", want: "sets no USER"},
		{name: "latest base", old: ":nonroot", new: ":latest", want: "uses the latest tag"},
		{name: "untagged base", old: "golang:${GO_VERSION}", new: "golang", want: "FROM golang has no tag"},
		{name: "ARG without default", old: "ARG GO_VERSION=1.26", new: "ARG GO_VERSION", want: "give the ARG a default"},
		{name: "cgo", old: "ENV CGO_ENABLED=0\n", want: "set CGO_ENABLED=0"},
		{name: "no trimpath", old: "-trimpath ", want: "go build lacks -trimpath"},
		{name: "no strip", old: `-ldflags "-s -w" `, want: `lacks -ldflags "-s -w"`},
		{name: "one binary", old: " ./cmd/logsender", want: "lacks ./cmd/logsender"},
		{name: "no cache mount", old: "--mount=type=cache,target=/go/pkg/mod ", want: "mount the module cache"},
		{name: "no expose", old: "EXPOSE 8080\n", want: "EXPOSE 8080"},
		{name: "shell entrypoint", old: `ENTRYPOINT ["/usr/local/bin/dstream"]`, new: "ENTRYPOINT /usr/local/bin/dstream", want: "exec form"},
		{name: "no labels", old: "LABEL org.opencontainers.image.title", new: "LABEL x.title", want: "no LABEL org.opencontainers.image.title"},
		{name: "copy from unknown stage", old: "--from=build", new: "--from=builder", want: "COPY --from=builder names no earlier stage"},
	} {
		t.Run(test.name, func(t *testing.T) {
			dockerfile := validDockerfile
			if test.old != "" {
				if !strings.Contains(dockerfile, test.old) {
					t.Fatalf("test case: %q not in validDockerfile", test.old)
				}
				dockerfile = strings.Replace(dockerfile, test.old, test.new, 1)
			}
			dir := t.TempDir()
			write(t, dir, "Dockerfile", dockerfile)
			problems, err := checkDockerfile(filepath.Join(dir, "Dockerfile"))
			if err != nil {
				t.Fatal(err)
			}
			expect(t, problems, test.want)
		})
	}
}

func TestImageProblem(t *testing.T) {
	for _, test := range []struct {
		ref  string
		want string
	}{
		{"redis:7.4-alpine", ""},
		{"apache/kafka:4.1.0", ""},
		{"localhost:5000/dstream:1.0", ""},
		{"localhost:5000/dstream", "has no tag: pin a version"},
		{"redis@sha256:0123", ""},
		{"redis", "has no tag: pin a version"},
		{"redis:latest", "uses the latest tag: pin a version"},
		{"", "is empty: set image or build"},
	} {
		if got := imageProblem(test.ref); got != test.want {
			t.Errorf("imageProblem(%q) = %q, want %q", test.ref, got, test.want)
		}
	}
}

// expect fails unless problems is empty (want "") or has exactly one problem, containing want.
func expect(t *testing.T, problems []string, want string) {
	t.Helper()
	if want == "" {
		for _, p := range problems {
			t.Errorf("unexpected problem: %s", p)
		}
		return
	}
	if len(problems) != 1 || !strings.Contains(problems[0], want) {
		t.Errorf("problems = %q, want exactly one containing %q", problems, want)
	}
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
