# dstream — make targets. `make test` installs what the tests need (redis-server,
# the Kafka broker's jars) and runs unit and integration tests with -race.
SHELL := /usr/bin/env bash
GO ?= go
PKGS ?= ./...
TESTFLAGS ?= -race -shuffle=on -count=1 -timeout 15m

.PHONY: run demo test unit it chaos bench bench-engine lint packaging install build clean

## run: the zero-setup demo (in-process Kafka and Redis, log generator)
run demo:
	$(GO) run ./cmd/dstream

## build: both binaries into bin/, stamped with VERSION (default: git describe) and REVISION
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION) -X main.revision=$(REVISION)" \
		-o bin/ ./cmd/dstream ./cmd/logsender

## install: redis-server, the Kafka broker jars and headless Chromium for integration tests
install:
	bash .ci/install
	bash .ci/install-browser

## test: every test, unit and integration (real Kafka broker, real redis-server), then the engine's tests under the
## invariants build tag, which poisons memory operators declared reusable instead of reusing it
test: install
	DSTREAM_REQUIRE_IT=1 $(GO) test $(TESTFLAGS) $(PKGS)
	$(GO) test -tags invariants -count=1 ./microbatch/

## unit: the tests that need nothing installed (integration tests skip)
unit:
	$(GO) test $(TESTFLAGS) $(PKGS)

## it: the integration tests only
it: install
	DSTREAM_REQUIRE_IT=1 $(GO) test $(TESTFLAGS) ./internal/... ./state/... ./ingest/... ./sinks/...

## chaos: the full chaos run: the dstream binary SIGKILLed at random 25+ times over 2M input lines, Redis and the
## broker restarted under it, the output verified exactly once against the input (prints "chaos: kills=… lost=0
## duplicated=0 wrong=0"); then two jobs sharing topics under kills, a window changed while down, Redis rewound to
## an older AOF, Redis losing everything, and checkpoints on a 3-master Redis Cluster whose job's master restarts.
## DSTREAM_CHAOS_LINES, _KILLS, _RATE, _CAP and _SEED tune the long run; `make test` runs a short one and the rest
## as they are.
chaos: install
	DSTREAM_CHAOS=1 DSTREAM_REQUIRE_IT=1 $(GO) test -run 'TestChaos$$|TestTwoJobsShareTopics|TestWindowChangedWhileDown|TestRedisRewoundToAnOlderAOF|TestStateLost|TestRedisCluster' -v -count=1 -timeout 60m ./internal/chaos/

## bench: dstream against the broker's raw fetch rate (the limit), a plain consumer, Spark Structured Streaming,
## Flink, Kafka Streams (default and tuned) and PySpark DStreams on one pre-loaded topic, with latency, state
## size and the engine's micro-benchmarks; prints BENCH lines, writes BENCHMARKS.md.
## Not part of CI. BENCH_LINES=2000000 make bench for a quick run (see bench/cmd/harness for the knobs).
bench: install
	$(GO) build -o .cache/bench/bin/harness ./bench/cmd/harness
	.cache/bench/bin/harness

## bench-engine: the Go micro-benchmarks of the engine and the parser, ingest against a plain consumer on a
## real broker (DSTREAM_BENCH_LINES sets its topic's size), and Redis checkpoint (10k of 1M keys) and recovery
bench-engine: install
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./microbatch/ ./internal/weblog/ ./ingest/ ./state/

## lint: gofmt and go vet
lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

## packaging: Dockerfile, compose file and Helm chart, validated offline
packaging:
	bash .ci/check-packaging

clean:
	rm -rf bin
