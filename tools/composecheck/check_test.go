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
    ports:
      - target: 8080
        host_ip: 127.0.0.1
    stop_grace_period: 45s
    healthcheck:
      test: ["CMD", "/usr/local/bin/httpprobe", "http://127.0.0.1:8080/healthz"]
  prometheus:
    image: prom/prometheus:v3.16.0
    profiles: [observability]
    command: ["--config.file=/etc/prometheus/prometheus.yml"]
    volumes:
      - type: bind
        source: ./prometheus.yml
        target: /etc/prometheus/prometheus.yml
        read_only: true
    healthcheck:
      test: ["CMD", "true"]
  grafana:
    image: grafana/grafana:12.0.2
    profiles: [observability]
    depends_on:
      prometheus:
        condition: service_healthy
    volumes:
      - type: bind
        source: ./provisioning
        target: /etc/grafana/provisioning
        read_only: true
      - type: bind
        source: ./charts/dstream/files/dstream-dashboard.json
        target: /etc/dashboards/dstream.json
        read_only: true
    healthcheck:
      test: ["CMD", "true"]
`

// validFiles are the files validCompose mounts, all valid; a test case replaces one by name.
var validFiles = map[string]string{
	"countries.csv": "ip,country\n192.0.2.1,US\n",
	"Dockerfile":    "FROM scratch\n",
	"prometheus.yml": `scrape_configs:
  - job_name: dstream
    dns_sd_configs:
      - names: [dstream]
        type: A
        port: 8080
`,
	"provisioning/datasources/prometheus.yaml": `apiVersion: 1
datasources:
  - name: Prometheus
    type: prometheus
    url: http://prometheus:9090
`,
	"provisioning/dashboards/dstream.yaml": `apiVersion: 1
providers:
  - name: dstream
    type: file
    options:
      path: /etc/dashboards
`,
	chartDashboard: `{"uid": "dstream", "title": "dstream", "panels": [{"type": "row"}]}`,
	"copy.json":    `{"uid": "dstream", "title": "dstream", "panels": [{"type": "row"}]}`,
}

func TestComposeRules(t *testing.T) {
	for _, test := range []struct {
		name      string
		old, new  string            // replace old by new in validCompose
		csv       string            // countries.csv; "" for a valid one
		files     map[string]string // replace these files of validFiles
		want      string            // in a problem, or in the load error
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
			name: "fixed host port",
			old:  "      - target: 8080\n        host_ip: 127.0.0.1\n", new: "      - target: 8080\n        published: \"8080\"\n",
			want: `service "dstream": publishes the fixed host port 8080, which clashes under ` + "`docker compose up --scale dstream=N`",
		},
		{
			name: "fixed host port, short syntax",
			old:  "      - target: 8080\n        host_ip: 127.0.0.1\n", new: "      - \"127.0.0.1:8080:8080\"\n",
			want: "publishes the fixed host port 8080",
		},
		{
			name: "ephemeral host port, short syntax",
			old:  "      - target: 8080\n        host_ip: 127.0.0.1\n", new: "      - \"8080\"\n",
		},
		{
			name: "container name",
			old:  "    stop_grace_period: 45s", new: "    stop_grace_period: 45s\n    container_name: dstream",
			want: `container_name "dstream" allows one container only`,
		},
		{
			name: "published port is not the HTTP port",
			old:  "      - target: 8080\n", new: "      - target: 9090\n",
			want: "publishes container port 9090, but dstream listens on 8080",
		},
		{
			name:  "HTTP port from DSTREAM_HTTP_ADDR",
			old:   "      DSTREAM_COUNTRIES_FILE: /etc/countries.csv\n",
			new:   "      DSTREAM_COUNTRIES_FILE: /etc/countries.csv\n      DSTREAM_HTTP_ADDR: :9090\n",
			files: map[string]string{"prometheus.yml": strings.Replace(validFiles["prometheus.yml"], "8080", "9090", 1)},
			want:  "publishes container port 8080, but dstream listens on 9090",
		},
		{
			name: "prometheus in the default profile",
			old:  "    profiles: [observability]\n    command", new: "    command",
			want: `service "prometheus": not in the observability profile`,
		},
		{
			name: "no grafana",
			old:  "  grafana:\n    image: grafana/grafana:12.0.2\n", new: "  dashboards:\n    image: example/dashboards:1.0\n",
			want: `no grafana service`,
		},
		{
			name: "grafana without healthcheck",
			old:  "        target: /etc/dashboards/dstream.json\n        read_only: true\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n",
			new:  "        target: /etc/dashboards/dstream.json\n        read_only: true\n",
			want: `service "grafana": no healthcheck`,
		},
		{
			name: "grafana does not wait for prometheus",
			old:  "    depends_on:\n      prometheus:\n        condition: service_healthy\n    volumes:", new: "    volumes:",
			want: `its datasource is "prometheus" but depends_on does not wait for it`,
		},
		{
			name:  "scrape by static target",
			files: map[string]string{"prometheus.yml": validFiles["prometheus.yml"] + "    static_configs:\n      - targets: [\"dstream:8080\"]\n"},
			want:  "has the static target dstream:8080, which reaches one replica",
		},
		{
			name:  "scrape by SRV records",
			files: map[string]string{"prometheus.yml": strings.Replace(validFiles["prometheus.yml"], "type: A", "type: SRV", 1)},
			want:  `looks dstream up with type "SRV"`,
		},
		{
			name:  "scrape on the wrong port",
			files: map[string]string{"prometheus.yml": strings.Replace(validFiles["prometheus.yml"], "port: 8080", "port: 9090", 1)},
			want:  "scrapes port 9090, but dstream listens on 8080",
		},
		{
			name:  "scrape something else",
			files: map[string]string{"prometheus.yml": strings.Replace(validFiles["prometheus.yml"], "[dstream]", "[kafka]", 1)},
			want:  `no scrape job discovers "dstream" by DNS`,
		},
		{
			name: "prometheus config not mounted",
			old:  "target: /etc/prometheus/prometheus.yml", new: "target: /etc/prometheus/other.yml",
			want: "no volume mounts the Prometheus configuration at /etc/prometheus/prometheus.yml",
		},
		{
			name: "dashboard copied",
			old:  "source: ./charts/dstream/files/dstream-dashboard.json", new: "source: ./copy.json",
			want: "bind charts/dstream/files/dstream-dashboard.json itself",
		},
		{
			name:  "dashboard not JSON",
			files: map[string]string{chartDashboard: "{not json"},
			want:  "not a JSON dashboard",
		},
		{
			name:  "dashboard without panels",
			files: map[string]string{chartDashboard: `{"uid": "dstream", "title": "dstream", "panels": []}`},
			want:  "dashboard without uid, title or panels",
		},
		{
			name: "dashboard writable",
			old:  "        target: /etc/dashboards/dstream.json\n        read_only: true\n", new: "        target: /etc/dashboards/dstream.json\n",
			want: "mount /etc/dashboards/dstream.json read_only: true",
		},
		{
			name:  "no provider for the dashboard",
			files: map[string]string{"provisioning/dashboards/dstream.yaml": strings.Replace(validFiles["provisioning/dashboards/dstream.yaml"], "/etc/dashboards", "/var/lib/grafana/dashboards", 1)},
			want:  "no file provider in provisioning/dashboards loads /etc/dashboards/dstream.json",
		},
		{
			name:  "datasource elsewhere",
			files: map[string]string{"provisioning/datasources/prometheus.yaml": strings.Replace(validFiles["provisioning/datasources/prometheus.yaml"], "prometheus:9090", "localhost:9090", 1)},
			want:  `the prometheus datasource's url "http://localhost:9090" does not name the service "prometheus"`,
		},
		{
			name:  "no datasource",
			files: map[string]string{"provisioning/datasources/prometheus.yaml": "apiVersion: 1\n"},
			want:  "provisions no prometheus datasource",
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
			for name, content := range validFiles {
				if c, ok := test.files[name]; ok {
					content = c
				}
				write(t, dir, name, content)
			}
			if test.csv != "" {
				write(t, dir, "countries.csv", test.csv)
			}
			compose := validCompose
			if test.old != "" {
				if !strings.Contains(compose, test.old) {
					t.Fatalf("test case: %q not in validCompose", test.old)
				}
				compose = strings.Replace(compose, test.old, test.new, 1)
			}
			write(t, dir, "docker-compose.yml", compose)

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
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
