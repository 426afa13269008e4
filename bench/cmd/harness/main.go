// Command harness is `make bench`: it measures dstream against the broker's
// raw fetch rate (the limit), a plain consumer, Spark (DStreams and
// Structured Streaming), Flink and Kafka Streams on one pre-loaded topic, in
// one run, on a real Kafka broker and redis-server started on loopback ports;
// then small batches, the dstream binary on one and several replicas, state
// at scale and latency.
//
// Stages, one after the other (the contenders of the first on the same topic
// of BENCH_LINES lines from the weblog generator, 4 partitions):
//
//   - fetch: the limit, raw Fetch requests whose bytes are discarded;
//   - consumer: a plain franz-go consumer counting IPs in a map;
//   - dstream: the reference job (internal/topips) catching up on the topic
//     in deterministic batches (virtual clock, rate cap), with Redis
//     checkpoints and transactional output;
//   - one-replica: the dstream binary, unsharded, on the same topic and
//     batches, and the binary of a baseline revision (BENCH_BASELINE);
//   - small: fetch, consumer and dstream on a topic drained in batches of
//     50k lines, and the per-batch overhead with 10k changed keys;
//   - replicas: the binary sharded (DSTREAM_SHARDS=3) on 1, 2 and 3
//     replicas and unsharded, on a topic of 12 partitions; a replica
//     SIGKILLed and its tasks' moves timed;
//   - latency: dstream at 100 ms and 50 ms batches under a fixed-rate
//     producer;
//   - state: dstream with 10k, 1M and 10M distinct IPs, restarted with them;
//   - structured: the job in Spark Structured Streaming (bench/structured);
//   - flink: the job in Apache Flink (bench/flink);
//   - spark: the lecture's PySpark DStream program, fed the same batches;
//   - kstreams, kstreams-tuned: the job in Kafka Streams (bench/kstreams),
//     with its defaults and tuned for throughput;
//   - engine: the Go micro-benchmarks.
//
// Every contender's answer is checked against the input; a wrong answer
// voids its figure. The harness prints tables and `BENCH name value` lines
// and writes BENCHMARKS.md.
//
// Environment: BENCH_LINES (50000000: enough for the fastest contenders to
// run 10 s), BENCH_IPS (10000), BENCH_BATCHES (100, of 500k lines at the
// default size), BENCH_QUICK (1 for the quick profile; the default below
// 10M lines, see quickProfile), BENCH_ROUNDS (2; 1 quick: runs compared
// against each other alternate this often, the best kept),
// BENCH_STATE_ROUNDS (5; 2 quick: the same for the state runs of up to 1M
// keys, a second or two each), BENCH_REPLICA_ROUNDS (3; 1 quick: the
// fewest and most replicas run again, alternating, for the CPU ratio's
// median of round-by-round ratios), BENCH_SMALL_LINES
// (5000000; 2500000 quick), BENCH_STATE_KEYS (10000,1000000,10000000;
// 10000,1000000 quick), BENCH_STATE_LINES (4000000 in either profile:
// lines of the state runs, at least 2 a key), BENCH_REPLICA_LINES (BENCH_LINES
// within 4M..20M), BENCH_REPLICA_BATCHES (40; 20 quick), BENCH_REPLICAS
// (1,2,3; 1,3 quick), BENCH_LEASE_TTL (5s, the binary's default),
// BENCH_BASELINE (1f93fba: the engine before the scale-out work; "none" for
// no baseline), BENCH_LATENCY_SECONDS (20; 10 quick), BENCH_LATENCY_RATE
// (5000 lines/s), BENCH_SPARK_MASTER (local[*]), BENCH_ONLY
// (comma-separated stages; "limit" names fetch and consumer), BENCH_OUT
// (BENCHMARKS.md; "-" for none), BENCH_KSTREAMS_COMMIT_MS (the tuned Kafka
// Streams' commit intervals, comma-separated: a sweep).
//
// The harness runs its Go contenders as child processes of its own binary
// (`harness child-limit …`), so that each one's memory is its own.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/microbatch"
)

func main() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "child-") {
		var err error
		switch os.Args[1] {
		case "child-limit":
			err = childLimit(os.Args[2:])
		case "child-fetch":
			err = childFetch(os.Args[2:])
		case "child-dstream":
			err = childDstream(os.Args[2:])
		default:
			err = fmt.Errorf("unknown child %q", os.Args[1])
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, os.Args[1]+":", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	lines          int64
	ips            int
	batches        int
	quick          bool
	rounds         int
	stateRounds    int
	replicaRounds  int
	smallLines     int64
	stateKeys      []int
	stateLines     int64
	replicaLines   int64
	replicaBatches int
	replicaCounts  []int
	replicaKill    bool
	leaseTTL       time.Duration
	baseline       string
	latencySeconds int
	latencyRate    int
	sparkMaster    string
	only           map[string]bool
	out            string
}

// defaultLines is the default size: each of the fastest contenders (the
// limit, dstream) reads for about 10 s, so that start-up costs and the
// machine's noise weigh little.
const defaultLines = 50_000_000

var stages = []string{"fetch", "consumer", "dstream", "one-replica", "small", "replicas", "latency", "state",
	"structured", "flink", "spark", "kstreams", "kstreams-tuned", "engine"}

// quickSkips are the stages the quick profile leaves out unless BENCH_ONLY
// names them: the JVM peers (minutes each, and their setup) and the
// engine's micro-benchmarks (`make bench-engine`).
var quickSkips = []string{"structured", "flink", "spark", "kstreams", "kstreams-tuned", "engine"}

// envInts reads a comma-separated list of positive integers.
func envInts(name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSpace(f), "_", ""))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench: ignoring %s=%q: want positive integers, comma-separated\n", name, v)
			return def
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func envInt(name string, def int64) int64 {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.ParseInt(strings.ReplaceAll(v, "_", ""), 10, 64)
		if err == nil && n > 0 {
			return n
		}
		fmt.Fprintf(os.Stderr, "bench: ignoring %s=%q: want a positive integer\n", name, v)
	}
	return def
}

func loadConfig() (config, error) {
	c := config{
		lines:       envInt("BENCH_LINES", defaultLines),
		ips:         int(envInt("BENCH_IPS", 10_000)),
		batches:     int(envInt("BENCH_BATCHES", 100)),
		latencyRate: int(envInt("BENCH_LATENCY_RATE", 5000)),
		sparkMaster: cmpOr(os.Getenv("BENCH_SPARK_MASTER"), "local[*]"),
		out:         cmpOr(os.Getenv("BENCH_OUT"), "BENCHMARKS.md"),
		only:        map[string]bool{},
	}
	// The quick profile (a few minutes): below 10M lines unless
	// BENCH_QUICK says otherwise.
	c.quick = c.lines < 10_000_000
	if v := os.Getenv("BENCH_QUICK"); v != "" {
		q, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("BENCH_QUICK=%q: want 1 or 0", v)
		}
		c.quick = q
	}
	pick := func(full, quick int64) int64 {
		if c.quick {
			return quick
		}
		return full
	}
	c.rounds = int(envInt("BENCH_ROUNDS", pick(2, 1)))
	c.stateRounds = int(envInt("BENCH_STATE_ROUNDS", pick(5, 2)))
	c.replicaRounds = int(envInt("BENCH_REPLICA_ROUNDS", pick(3, 1)))
	c.smallLines = envInt("BENCH_SMALL_LINES", pick(5_000_000, 2_500_000))
	if c.quick {
		c.stateKeys = envInts("BENCH_STATE_KEYS", []int{10_000, 1_000_000})
		c.replicaCounts = envInts("BENCH_REPLICAS", []int{1, 3})
	} else {
		c.stateKeys = envInts("BENCH_STATE_KEYS", []int{10_000, 1_000_000, 10_000_000})
		c.replicaCounts = envInts("BENCH_REPLICAS", []int{1, 2, 3})
	}
	// The state runs' own topics, of the same size in either profile: a
	// quick run's ratio then measures what a full one does (with fewer
	// lines the first batches, which fill the state, would dominate).
	c.stateLines = envInt("BENCH_STATE_LINES", 4_000_000)
	c.replicaLines = envInt("BENCH_REPLICA_LINES", min(max(c.lines, 4_000_000), 20_000_000))
	c.replicaBatches = int(envInt("BENCH_REPLICA_BATCHES", pick(40, 20)))
	c.replicaKill = os.Getenv("BENCH_REPLICA_KILL") != "0"
	c.latencySeconds = int(envInt("BENCH_LATENCY_SECONDS", pick(20, 10)))
	c.leaseTTL = 5 * time.Second
	if v := os.Getenv("BENCH_LEASE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("BENCH_LEASE_TTL=%q: want a duration such as 5s", v)
		}
		c.leaseTTL = d
	}
	c.baseline = cmpOr(os.Getenv("BENCH_BASELINE"), defaultBaseline)
	if c.baseline == "none" {
		c.baseline = ""
	}
	if v := os.Getenv("BENCH_ONLY"); v != "" {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "limit" { // both rows that were once the limit
				c.only["fetch"], c.only["consumer"] = true, true
				continue
			}
			if !slices.Contains(stages, s) {
				return c, fmt.Errorf("BENCH_ONLY: unknown stage %q (stages: %s)", s, strings.Join(stages, ","))
			}
			c.only[s] = true
		}
	} else {
		for _, s := range stages {
			c.only[s] = !c.quick || !slices.Contains(quickSkips, s)
		}
	}
	return c, nil
}

// defaultBaseline is the revision whose binary the one-replica stage
// compares against: the engine before the scale-out work (docs/scale-out.md,
// from 46c8917 on), whose unsharded job the sharded runtime must not slow.
const defaultBaseline = "1f93fba"

// selected lists the stages that run, in order.
func (c config) selected() []string {
	var out []string
	for _, s := range stages {
		if c.only[s] {
			out = append(out, s)
		}
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// bench holds what the stages share.
type bench struct {
	cfg       config
	root      string // repository root
	dir       string // this run's scratch directory
	self      string // this binary, for child processes
	broker    *kafkatest.Broker
	redis     *redistest.Server
	main      *dataset
	want      [][]result
	rows      []row
	figures   []figure
	notes     []string
	prof      string // dstream's CPU profile highlights
	engineOut string
	stateProf string   // dstream's CPU profile with 1M keys
	latencies []string // latency details, an interval each
	// sections are the tables of the stages after the throughput runs.
	sections map[string][]row
	// smallProf is the CPU profile of dstream in small batches; stateProf
	// of its largest state run, stateProfName.
	smallProf, stateProfName string
	// noise is what every stage saw of the machine's other load.
	noise []stageNoise
	// binary is cmd/dstream of this tree, baselineBin of the baseline
	// revision baselineRev ("" if not built).
	binary, baselineBin, baselineRev string
	started                          time.Time
	timings                          []string
	// brokerPid is the broker's JVM, for its CPU time.
	brokerPid int
	// peerProfiles are the JVM peers' hot methods (jvm.go).
	peerProfiles []peerProfile
}

// brokerCPU returns the broker's CPU seconds so far.
func (b *bench) brokerCPU() float64 {
	if b.brokerPid == 0 {
		return 0
	}
	return processCPU(b.brokerPid)
}

// row is one contender's throughput run.
type row struct {
	name    string
	lines   int64
	seconds float64
	rss     int64
	correct bool
	detail  string
	// cpu is the CPU time of the contender's processes over their whole
	// life (start-up included), brokerCPU the broker's meanwhile.
	cpu, brokerCPU float64
}

func (r row) rate() float64 {
	if r.seconds <= 0 {
		return 0
	}
	return float64(r.lines) / r.seconds
}

// figure is one `BENCH name value` line.
type figure struct {
	name  string
	value float64
	unit  string
}

func (b *bench) figure(name string, v float64, unit string) {
	b.figures = append(b.figures, figure{name, v, unit})
}

func (b *bench) say(format string, args ...any) {
	fmt.Printf("bench %6.1fs  %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

func run() error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return errors.New("run the harness from the repository root (make bench)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, root: root, self: self, started: time.Now()}
	runs := filepath.Join(root, ".cache", "bench", "run")
	pruneRuns(runs, 4)
	b.dir = filepath.Join(runs, time.Now().UTC().Format("20060102T150405"))
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return err
	}
	profile := "full"
	if cfg.quick {
		profile = "quick"
	}
	b.say("lines %d, distinct IPs %d, batches %d, %s profile; stages %s; scratch %s", cfg.lines, cfg.ips, cfg.batches, profile,
		strings.Join(cfg.selected(), ","), b.dir)
	ctx := context.Background()

	if cfg.needsPeers() {
		if err := b.timed("setup peers", func() error { return b.setupPeers(ctx) }); err != nil {
			return err
		}
	}
	if err := b.timed("start broker and redis", func() error { return b.startServers(ctx) }); err != nil {
		return err
	}
	defer b.stopServers()

	needMain := cfg.only["fetch"] || cfg.only["consumer"] || cfg.only["dstream"] || cfg.only["one-replica"] || cfg.needsPeers()
	if needMain {
		err := b.timed("pre-load", func() error {
			ds, err := preload(ctx, b.broker.Addr(), loadSpec{topic: "logs", lines: cfg.lines, batches: cfg.batches,
				src: generatorLines{newGenerator(cfg.ips)}, keepSeq: true}, b.dir)
			if err != nil {
				return err
			}
			b.main = ds
			b.want = ds.expected()
			return nil
		})
		if err != nil {
			return err
		}
		b.say("topic logs: %d lines, %d distinct IPs, %d batches of %d lines per partition",
			b.main.lines, len(b.main.ips), b.main.batches, b.main.perPart)
		if err := b.timed("warm up the broker's read paths", func() error { return warmReads(ctx, b.broker.Addr(), b.main) }); err != nil {
			return err
		}
	}
	type stage struct {
		name string
		run  func(context.Context) error
	}
	for _, s := range []stage{
		{"fetch", b.runFetch},
		{"consumer", b.runLimit},
		{"dstream", b.runDstream},
		{"one-replica", b.runOneReplica},
		{"small", b.runSmall},
		{"replicas", b.runReplicas},
		{"latency", b.runLatency},
		{"state", b.runState},
		{"structured", b.runStructured},
		{"flink", b.runFlink},
		{"spark", b.runSpark},
		{"kstreams", b.runKStreamsDefault},
		{"kstreams-tuned", b.runKStreamsTuned},
		{"engine", b.runEngine},
	} {
		if !cfg.only[s.name] {
			continue
		}
		if err := b.timed(s.name, func() error { return s.run(ctx) }); err != nil {
			// A failed stage is reported; the others still run.
			b.notes = append(b.notes, fmt.Sprintf("stage %s failed: %v", s.name, err))
			b.say("stage %s FAILED: %v", s.name, err)
		}
	}
	b.stopServers()
	b.report()
	if cfg.out != "-" {
		if err := b.writeMarkdown(filepath.Join(root, cfg.out)); err != nil {
			return err
		}
		b.say("wrote %s", cfg.out)
	}
	return nil
}

// pruneRuns removes all but the newest keep run directories (their names
// sort by time), except those touched in the last day: the directory is
// shared by every checkout whose .cache points at it, and another run may
// still be using its own (its broker's and Redis's data live there).
func pruneRuns(dir string, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for i := 0; i < len(entries)-keep; i++ {
		path := filepath.Join(dir, entries[i].Name())
		if touchedSince(path, time.Now().Add(-24*time.Hour)) {
			continue
		}
		os.RemoveAll(path)
	}
}

// touchedSince reports whether dir or an entry in it, or in a directory in
// it, was modified after t.
func touchedSince(dir string, t time.Time) bool {
	recent := func(path string) bool {
		fi, err := os.Stat(path)
		return err == nil && fi.ModTime().After(t)
	}
	if recent(dir) {
		return true
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if recent(path) {
			return true
		}
		if e.IsDir() {
			sub, _ := os.ReadDir(path)
			for _, s := range sub {
				if recent(filepath.Join(path, s.Name())) {
					return true
				}
			}
		}
	}
	return false
}

func (b *bench) timed(what string, f func() error) error {
	b.say("%s ...", what)
	t := time.Now()
	n := watchNoise(2 * time.Second)
	err := f()
	b.noise = append(b.noise, n.stop(what))
	d := time.Since(t).Round(100 * time.Millisecond)
	b.timings = append(b.timings, fmt.Sprintf("%s %v", what, d))
	b.say("%s: %v", what, d)
	return err
}

func (b *bench) setupPeers(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(b.root, "bench", "setup-peers"))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Dir = b.root
	return cmd.Run()
}

// brokerFlags give the benchmark's broker a full JIT and a heap of 1 GiB:
// the test defaults (C1 only, 512 MiB) favour start-up over throughput.
var brokerFlags = []string{"-Xms1g", "-Xmx1g", "-XX:+UseG1GC", "-XX:-UsePerfData", "-Djava.awt.headless=true"}

func (b *bench) startServers(ctx context.Context) error {
	var err error
	// A second try: kafkatest's random cluster id can start with '-',
	// which kafka-storage takes for an option (1 start in 64).
	for attempt := 1; attempt <= 3; attempt++ {
		b.broker, err = kafkatest.Start(ctx, kafkatest.Options{JVMFlags: brokerFlags, NoClassSharing: true, TempDir: b.dir,
			// The pre-loaded lines carry event times in the past (see epoch).
			Properties: map[string]string{"log.retention.ms": "-1"}})
		if err == nil {
			break
		}
		b.say("start broker (attempt %d): %v", attempt, err)
	}
	if err != nil {
		return err
	}
	b.redis, err = redistest.Start(ctx, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction", TempDir: b.dir})
	if err != nil {
		return err
	}
	b.brokerPid = findProcess(b.broker.Dir())
	b.say("broker %s (pid %d), redis %s", b.broker.Addr(), b.brokerPid, b.redis.Addr())
	if err := b.broker.CreateTopic(ctx, "bench-warm-up", 1, nil); err != nil {
		return err
	}
	return warmTransactions(ctx, b.broker.Addr())
}

// warmReads reads the first batches of the topic both ways the Go
// contenders read it — a plain consumer's fetch sessions, and the ingest
// source's read_committed fetches of exact ranges with its offset lookups —
// so that the broker's JIT has compiled both paths before either contender
// is measured, rather than during the first one to use each.
func warmReads(ctx context.Context, brokers string, d *dataset) error {
	const batches = 4
	offsets := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	for p := range d.parts {
		offsets[int32(p)] = kgo.NewOffset().AtStart()
		if _, until := d.batchRange(p, batches); until > 0 {
			remaining[int32(p)] = until
		}
	}
	plain, err := kgo.NewClient(kgo.SeedBrokers(brokers),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{d.topic: offsets}))
	if err != nil {
		return err
	}
	defer plain.Close()
	for len(remaining) > 0 {
		fs := plain.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return fmt.Errorf("warm up reads: %w", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if until, ok := remaining[r.Partition]; ok && r.Offset >= until-1 {
				delete(remaining, r.Partition)
			}
		})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	src, err := ingest.New(cl, ingest.Config{Topic: d.topic, BatchInterval: interval, MaxRatePerPartition: d.ratePerPartition()})
	if err != nil {
		return err
	}
	var after []microbatch.Range
	for range batches {
		ranges, err := src.Cut(ctx, after)
		if err != nil {
			return fmt.Errorf("warm up reads: %w", err)
		}
		if _, err := src.AppendRecords(ctx, ranges, nil); err != nil {
			return fmt.Errorf("warm up reads: %w", err)
		}
		after = ranges
	}
	return nil
}

// warmTransactions commits one transaction, so that the broker creates its
// transaction log and loads its coordinator now: a one-time cost of a new
// broker, which would otherwise fall to the first contender that writes
// transactionally, in its measured time and broker CPU.
func warmTransactions(ctx context.Context, brokers string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.TransactionalID("bench-warm-up"),
		kgo.DefaultProduceTopic("bench-warm-up"))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		return fmt.Errorf("warm up transactions: %w", err)
	}
	if err := cl.ProduceSync(ctx, kgo.StringRecord("warm-up")).FirstErr(); err != nil {
		return fmt.Errorf("warm up transactions: %w", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("warm up transactions: %w", err)
	}
	return nil
}

func (b *bench) stopServers() {
	if b.broker != nil {
		if err := b.broker.Close(); err != nil {
			b.say("close broker: %v", err)
		}
		b.broker = nil
	}
	if b.redis != nil {
		if err := b.redis.Close(); err != nil {
			b.say("close redis: %v", err)
		}
		b.redis = nil
	}
}

func endsFlag(ends []int64) string {
	s := make([]string, len(ends))
	for i, e := range ends {
		s[i] = strconv.FormatInt(e, 10)
	}
	return strings.Join(s, ",")
}

func (b *bench) runLimit(ctx context.Context) error {
	r, err := b.consumerRow(ctx, b.main, "consumer")
	if err != nil {
		return err
	}
	b.rows = append(b.rows, r)
	return nil
}

// consumerRow runs the plain consumer on d as a child named name.
func (b *bench) consumerRow(ctx context.Context, d *dataset, name string) (row, error) {
	totals := filepath.Join(b.dir, name+"-totals.txt")
	report := filepath.Join(b.dir, name+"-report.json")
	cpu0 := b.brokerCPU()
	p, err := start(b.dir, name, exec.CommandContext(ctx, b.self, "child-limit",
		"-brokers", b.broker.Addr(), "-topic", d.topic, "-ends", endsFlag(d.ends),
		"-totals", totals, "-report", report), false)
	if err != nil {
		return row{}, err
	}
	if err := p.wait(30 * time.Minute); err != nil {
		return row{}, err
	}
	r, err := readReport(report)
	if err != nil {
		return row{}, err
	}
	got, err := readTotals(totals)
	if err != nil {
		return row{}, err
	}
	ok, detail := d.checkTotals(got)
	return row{name: name, lines: r.Lines, seconds: r.Seconds, rss: p.peakRSS(), correct: ok, detail: detail,
		cpu: p.cpuSeconds(), brokerCPU: b.brokerCPU() - cpu0}, nil
}
