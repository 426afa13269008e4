package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/dstream-io/dstream/internal/kafkatest"
)

func (b *bench) rowNamed(name string) (row, bool) {
	for _, r := range b.rows {
		if r.name == name {
			return r, true
		}
	}
	return row{}, false
}

// derive adds the per-contender figures and the ratios. A ratio involving a
// wrong answer is not computed: a benchmark of a wrong answer is void.
func (b *bench) derive() {
	var head []figure
	for _, r := range b.rows {
		if strings.Contains(r.name, ",") {
			continue // state runs have their own figures
		}
		name := figureName(r.name)
		if r.cpu > 0 {
			head = append(head, figure{name + "_lines_per_cpu_s", float64(r.lines) / r.cpu, "lines/CPU-s"})
		}
		head = append(head, figure{name + "_lines_per_s", r.rate(), "lines/s"},
			figure{name + "_peak_rss_mb", float64(r.rss) / (1 << 20), "MiB"},
			figure{name + "_correct", boolFloat(r.correct), ""})
	}
	b.figures = append(append(head, b.ratios()...), b.figures...)
}

// figureName turns a row's name into a BENCH name.
func figureName(row string) string { return strings.ReplaceAll(row, "-", "_") }

// ratios compares dstream with every other contender whose answer was
// right: ratio_dstream_vs_fetch against the limit (the broker's raw fetch
// rate), ratio_dstream_vs_consumer against a plain consumer, and one per
// peer. Kafka Streams runs with its defaults and tuned (a row per tuned
// commit interval); ratio_dstream_vs_kstreams is against the fastest right
// one of them, as the issue asks, and the default and the best tuned row
// have ratios of their own.
func (b *bench) ratios() []figure {
	ds, ok := b.rowNamed("dstream")
	if !ok || !ds.correct || ds.rate() == 0 {
		return nil
	}
	var out []figure
	vs := func(name string, o row) {
		if o.correct && o.rate() > 0 {
			out = append(out, figure{"ratio_dstream_vs_" + name, ds.rate() / o.rate(), "x"})
		}
	}
	for _, other := range []string{"fetch", "consumer", "structured", "flink", "spark"} {
		if o, ok := b.rowNamed(other); ok {
			vs(other, o)
		}
	}
	var best, tuned row
	for _, r := range b.rows {
		if !r.correct || !strings.HasPrefix(r.name, "kstreams") {
			continue
		}
		if r.rate() > best.rate() {
			best = r
		}
		if strings.HasPrefix(r.name, "kstreams-tuned") && r.rate() > tuned.rate() {
			tuned = r
		}
	}
	if best.rate() > 0 {
		vs("kstreams", best)
	}
	if o, ok := b.rowNamed("kstreams"); ok {
		vs("kstreams_default", o)
	}
	if tuned.rate() > 0 {
		vs("kstreams_tuned", tuned)
	}
	if c, ok := b.rowNamed("consumer"); ok && c.correct {
		if f, ok := b.rowNamed("fetch"); ok && f.correct && f.rate() > 0 {
			out = append(out, figure{"ratio_consumer_vs_fetch", c.rate() / f.rate(), "x"})
		}
	}
	return out
}

func boolFloat(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

func (b *bench) figureValue(name string) (float64, bool) {
	for _, f := range b.figures {
		if f.name == name {
			return f.value, true
		}
	}
	return 0, false
}

// addRow adds a row to a section's table ("" for the throughput table).
func (b *bench) addRow(section string, r row) {
	if section == "" {
		b.rows = append(b.rows, r)
		return
	}
	if b.sections == nil {
		b.sections = map[string][]row{}
	}
	b.sections[section] = append(b.sections[section], r)
}

// sectionTable renders a section's rows, each with its rate against the
// row named vs (of the section, or of the throughput table), and its CPU
// per line.
func (b *bench) sectionTable(section, vs, vsLabel string) string {
	rows := b.sections[section]
	if len(rows) == 0 {
		return ""
	}
	base, ok := row{}, false
	for _, r := range rows {
		if r.name == vs {
			base, ok = r, true
		}
	}
	if !ok {
		base, ok = b.rowNamed(vs)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "| run | lines | seconds | lines/s | vs %s | CPU ns a line | peak RSS | CPU s | broker CPU s | answer |\n", vsLabel)
	sb.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		ratio := "–"
		if ok && base.correct && r.correct && base.rate() > 0 {
			ratio = fmt.Sprintf("%.2f×", r.rate()/base.rate())
		}
		perLine := "–"
		if r.cpu > 0 && r.lines > 0 {
			perLine = fmt.Sprintf("%.0f", r.cpu/float64(r.lines)*1e9)
		}
		answer := "right"
		if !r.correct {
			answer = "**WRONG** (figure void)"
		}
		fmt.Fprintf(&sb, "| %s | %d | %.1f | %s | %s | %s | %.0f MiB | %.1f | %.1f | %s: %s |\n",
			r.name, r.lines, r.seconds, human3(r.rate()), ratio, perLine, float64(r.rss)/(1<<20), r.cpu, r.brokerCPU, answer, r.detail)
	}
	return sb.String()
}

func (b *bench) table() string {
	var sb strings.Builder
	sb.WriteString("| contender | lines | seconds | lines/s | vs limit | peak RSS | CPU s | broker CPU s | answer |\n")
	sb.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	limit, hasLimit := b.rowNamed("fetch")
	for _, r := range b.rows {
		vs := "–"
		if hasLimit && limit.rate() > 0 && !strings.Contains(r.name, ",") {
			vs = fmt.Sprintf("%.2f×", r.rate()/limit.rate())
		}
		answer := "right"
		if !r.correct {
			answer = "**WRONG** (figure void)"
		}
		fmt.Fprintf(&sb, "| %s | %d | %.1f | %s | %s | %.0f MiB | %.1f | %.1f | %s: %s |\n",
			r.name, r.lines, r.seconds, human3(r.rate()), vs, float64(r.rss)/(1<<20), r.cpu, r.brokerCPU, answer, r.detail)
	}
	return sb.String()
}

func human3(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func (b *bench) benchLines() string {
	var sb strings.Builder
	for _, f := range b.figures {
		v := fmt.Sprintf("%.3g", f.value)
		if f.value >= 1000 || f.value == float64(int64(f.value)) {
			v = fmt.Sprintf("%.0f", f.value)
		}
		if f.value < 1000 && f.value != float64(int64(f.value)) {
			v = fmt.Sprintf("%.2f", f.value)
		}
		fmt.Fprintf(&sb, "BENCH %s %s\n", f.name, v)
	}
	return sb.String()
}

// report prints the table and the BENCH lines.
func (b *bench) report() {
	b.derive()
	fmt.Println()
	fmt.Print(b.table())
	fmt.Println()
	for _, l := range b.latencies {
		fmt.Println("latency:", l)
	}
	for _, sec := range sectionOrder {
		if t := b.sectionTable(sec.name, sec.vs, sec.vsLabel); t != "" {
			fmt.Printf("\n%s\n\n%s", sec.title, t)
		}
	}
	if t := b.noiseTable(); t != "" {
		fmt.Printf("\nnoise\n\n%s", t)
	}
	for _, n := range b.notes {
		fmt.Println("note:", n)
	}
	fmt.Println()
	fmt.Print(b.benchLines())
}

// goal is a figure with a target; a goal without ok is reported only.
type goal struct {
	what, figure string
	ok           func(float64) bool
	target       string
}

func atLeast(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
func atMost(x float64) func(float64) bool  { return func(v float64) bool { return v <= x } }

var goals = []goal{
	{"dstream vs the broker's raw fetch rate (the limit)", "ratio_dstream_vs_fetch", nil, "reported"},
	{"dstream vs a plain franz-go consumer", "ratio_dstream_vs_consumer", atLeast(0.8), "≥ 0.8×"},
	{"dstream vs Kafka Streams (the better of default and tuned)", "ratio_dstream_vs_kstreams", atLeast(10), "≥ 10×"},
	{"dstream vs Spark Structured Streaming", "ratio_dstream_vs_structured", atLeast(10), "≥ 10×"},
	{"dstream vs Flink", "ratio_dstream_vs_flink", atLeast(3), "≥ 3×"},
	{"dstream vs Spark (PySpark DStreams)", "ratio_dstream_vs_spark", atLeast(20), "≥ 20×"},
	{"small batches (50k lines): dstream vs a plain consumer, same topic", "ratio_small_dstream_vs_consumer", atLeast(0.8), "≥ 0.8×"},
	{"small batches: per-batch overhead with 10k changed keys", "small_overhead_ms_per_batch", atMost(5), "≤ 5 ms"},
	{"p99 latency at 100 ms batches", "latency_p99_ms", atMost(200), "≤ 200 ms (2 intervals)"},
	{"p99 latency at 50 ms batches", "latency_50ms_p99_ms", atMost(100), "≤ 100 ms (2 intervals)"},
	{"state: 1M distinct keys vs 10k, lines/s", "ratio_state_1m_vs_10k", atLeast(0.5), "≥ 0.5×"},
	{"state: a run with 10M distinct keys completes, right", "state_10m_correct", atLeast(1), "1 (yes)"},
	{"state: process RSS per key (10M keys, peak against the 10k run)", "state_10m_rss_bytes_per_key", atMost(150), "≤ 150 B"},
	{"state: Redis used_memory per key (10M keys)", "state_10m_redis_bytes_per_key", atMost(60), "≤ 60 B"},
	{"state: restart with 10M keys, process start to first batch committed", "state_10m_restart_ms_to_first_batch", atMost(5000), "≤ 5000 ms"},
	{"state: Go heap per key after GC (10M keys, against the 10k run)", "state_10m_heap_bytes_per_key", atMost(100), "≤ 100 B"},
	{"replicas: CPU per line, 3 replicas vs 1 (sharded in 3; median of alternating rounds)", "ratio_cpu_per_line_r3_vs_r1", atMost(1.25), "≤ 1.25×"},
	{"replicas: exchange bytes per input line", "exchange_bytes_per_line", atMost(0.05), "≤ 0.05 B"},
	{"replicas: a moved task's first commit after its replica's SIGKILL, beyond the lease TTL", "move_ms_from_kill_beyond_ttl", atMost(2000), "≤ 2000 ms"},
	{"one replica (the binary, unsharded) vs the dstream stage, lines/s", "ratio_one_replica_vs_dstream_stage", atLeast(0.9), "≥ 0.9×"},
	{"one replica vs the baseline binary (before scale-out), lines/s", "ratio_one_replica_vs_baseline", atLeast(0.9), "≥ 0.9×"},
}

// sectionOrder lists the tables of the stages after the throughput runs.
var sectionOrder = []struct{ name, title, vs, vsLabel string }{
	{"one-replica", "## One replica: the dstream binary, unsharded, on the main topic", "dstream", "the dstream stage"},
	{"small", "## Small batches: 50k lines a batch", "consumer", "the consumer"},
	{"replicas", "## Replicas: the binary sharded in 3 on a topic of 12 partitions", "unsharded, 1 replica", "unsharded"},
	{"state", "## State at scale", "dstream, 10k distinct IPs", "10k IPs"},
}

func machine() string {
	var sb strings.Builder
	cpu := "?"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := "?"
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	version := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	fmt.Fprintf(&sb, "| | |\n|---|---|\n")
	fmt.Fprintf(&sb, "| cores (nproc) | %d |\n| memory | %s |\n| CPU | %s |\n| kernel | %s |\n",
		runtime.NumCPU(), mem, cpu, strings.TrimSpace(string(kernel)))
	fmt.Fprintf(&sb, "| Go | %s |\n| Java | %s |\n| Python | %s |\n", runtime.Version(), version("java", "-version"), version("python3", "--version"))
	fmt.Fprintf(&sb, "| Kafka broker | %s (KRaft, one node, from Maven Central jars; JVM %s) |\n", kafkatest.DefaultVersion, strings.Join(brokerFlags, " "))
	fmt.Fprintf(&sb, "| Redis | %s (AOF, appendfsync always, noeviction) |\n", version("redis-server", "--version"))
	fmt.Fprintf(&sb, "| Spark | pyspark %s from PyPI, spark-sql-kafka %s from Maven Central |\n", sparkVersion, sparkVersion)
	fmt.Fprintf(&sb, "| Spark Structured Streaming | spark-sql %s and spark-sql-kafka %s from Maven Central, Java, local[%d], %d shuffle partitions, HDFS-backed state store |\n",
		sparkVersion, sparkVersion, runtime.NumCPU(), runtime.NumCPU())
	fmt.Fprintf(&sb, "| Flink | %s, flink-connector-kafka %s, DataStream API in a local MiniCluster, parallelism %d, heap state backend, exactly-once checkpoints every %v |\n",
		flinkVersion, flinkKafkaVersion, runtime.NumCPU(), interval)
	fmt.Fprintf(&sb, "| Kafka Streams | %s (EOS v2, %d stream threads, RocksDB stores); default: commit interval 100 ms, 10 MB record cache; tuned: commit interval %v, %d MB record cache |\n",
		kafkatest.DefaultVersion, runtime.NumCPU(), interval, kstreamsTunedCache>>20)
	return sb.String()
}

const sparkVersion = "4.2.0" // bench/setup-peers, bench/structured/pom.xml

// The Flink peer's versions (bench/flink/pom.xml).
const flinkVersion, flinkKafkaVersion = "2.2.1", "5.0.0-2.2"

const analysisStart, analysisEnd = "<!-- analysis: kept by the harness -->", "<!-- /analysis -->"

// writeMarkdown writes BENCHMARKS.md, keeping the hand-written analysis
// section of the previous one.
func (b *bench) writeMarkdown(path string) error {
	analysis := analysisStart + "\n" + analysisEnd
	if old, err := os.ReadFile(path); err == nil {
		s := string(old)
		if i := strings.Index(s, analysisStart); i >= 0 {
			if j := strings.Index(s[i:], analysisEnd); j >= 0 {
				analysis = s[i : i+j+len(analysisEnd)]
			}
		}
	}
	var sb strings.Builder
	size := "the default size"
	if b.cfg.lines != defaultLines {
		size = fmt.Sprintf("a size other than the default (%s lines)", human(defaultLines))
	}
	if b.cfg.quick {
		size += ", the quick profile"
	} else {
		size += ", the full profile"
	}
	fmt.Fprintf(&sb, "# Benchmarks\n\n")
	fmt.Fprintf(&sb, "Written by `make bench` (`bench/cmd/harness`) on %s from a run of **%d lines** (%s), %d distinct IPs, %d batches; the whole run took %s (%s).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), b.cfg.lines, size, b.cfg.ips, b.cfg.batches,
		time.Since(b.started).Round(time.Second), strings.Join(b.timings, ", "))
	sb.WriteString("The machine is shared and noisy: compare the ratios, which come from one run, not absolute figures across runs.\n\n")
	sb.WriteString("## Throughput: catching up on one pre-loaded topic\n\n")
	sb.WriteString(b.table())
	sb.WriteString("\n## Goals\n\n| goal | target | measured | reached |\n|---|---|---:|---|\n")
	for _, g := range goals {
		v, ok := b.figureValue(g.figure)
		if !ok {
			fmt.Fprintf(&sb, "| %s | %s | – | not measured |\n", g.what, g.target)
			continue
		}
		reached := "no"
		if g.ok == nil {
			reached = "–"
		} else if g.ok(v) {
			reached = "yes"
		}
		fmt.Fprintf(&sb, "| %s | %s | %.2f | %s |\n", g.what, g.target, v, reached)
	}
	for _, sec := range sectionOrder {
		if t := b.sectionTable(sec.name, sec.vs, sec.vsLabel); t != "" {
			fmt.Fprintf(&sb, "\n%s\n\n%s", sec.title, t)
		}
	}
	if len(b.latencies) > 0 {
		sb.WriteString("\n## Latency\n\n")
		for _, l := range b.latencies {
			fmt.Fprintf(&sb, "- %s.\n", l)
		}
	}
	if t := b.noiseTable(); t != "" {
		sb.WriteString("\n## Noise: what else ran on the machine\n\nOther processes' CPU is the machine's busy time (/proc/stat) minus the harness's process tree's (itself, the broker, Redis, the contenders), over each stage, in cores of the machine's 2.\n\n" + t)
	}
	if len(b.notes) > 0 {
		sb.WriteString("\n## Notes from this run\n\n")
		for _, n := range b.notes {
			fmt.Fprintf(&sb, "- %s\n", n)
		}
	}
	sb.WriteString("\n## Figures\n\n```\n" + b.benchLines() + "```\n")
	sb.WriteString("\n" + analysis + "\n")
	if b.prof != "" {
		sb.WriteString("\n## Where dstream's time goes: CPU profile of the catch-up run\n\n```\n" + strings.TrimSpace(b.prof) + "\n```\n")
	}
	if b.smallProf != "" {
		sb.WriteString("\n## CPU profile of dstream in batches of 50k lines\n\n```\n" + strings.TrimSpace(b.smallProf) + "\n```\n")
	}
	if b.stateProf != "" {
		sb.WriteString("\n## CPU profile of the largest state run (" + b.stateProfName + ")\n\n```\n" + strings.TrimSpace(b.stateProf) + "\n```\n")
	}
	if len(b.peerProfiles) > 0 {
		sb.WriteString("\n## Where the JVM peers' time goes: hot methods from their flight recordings\n\n")
		sb.WriteString("Java Flight Recorder, default settings (a stack sample of each running thread every 20 ms); `jfr view hot-methods`: the top frames, over every thread of the peer's JVM, its start-up included.\n")
		for _, p := range b.peerProfiles {
			sb.WriteString("\n### " + p.name + "\n\n```\n" + p.text + "\n```\n")
		}
	}
	if b.engineOut != "" {
		sb.WriteString("\n## Engine micro-benchmarks (`make bench-engine`)\n\n```\n" + strings.TrimSpace(b.engineOut) + "\n```\n")
	}
	sb.WriteString("\n## Machine\n\n" + machine())
	sb.WriteString("\n" + method)
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

const method = `## Method

` + "`make bench`" + ` builds the harness and runs it from the repository root. The harness installs what the
peers need into the git-ignored ` + "`.cache/bench/`" + ` (` + "`bench/setup-peers`" + `: pyspark from PyPI in a venv,
spark-sql-kafka from Maven Central, the Kafka Streams peer built with Maven), starts a real single-node
Kafka broker and a real redis-server on loopback ports (` + "`internal/kafkatest`, `internal/redistest`" + `),
and pre-loads topic ` + "`logs`" + ` (4 partitions) with BENCH_LINES lines from the weblog generator
(` + "`internal/weblog`" + `, Zipf-distributed over BENCH_IPS addresses), line i to partition i mod 4, each
stamped with an event time such that BENCH_BATCHES batches of 10 s drain the topic. While loading it
records every line's IP, so each contender's answer is checked against the input, not against another
contender. Before any contender runs, the harness commits one transaction and reads the first batches
both ways the Go contenders read (a consumer's fetch sessions, the ingest source's read_committed
fetches of exact ranges), so that neither pays for the broker's first transaction or for compiling a
read path the other warmed. The contenders then run one after the other, each as a process of its own
whose peak RSS is the sampled sum over its process tree (a JVM and its Python workers count together):

1. **fetch** — the limit: what the broker can serve. Raw Fetch requests (franz-go's ` + "`kmsg`" + `), one
   connection and one request in flight per partition, up to 32 MiB a response, for the same
   partitions and offsets; the record batches are thrown away undecoded (no decompression, no
   checksum, no records). Only the batches' fixed headers are read, to know where the next fetch
   starts. Checked: every offset of every partition seen exactly once, in order; its lines cannot
   be checked, since it never reads them.
2. **consumer** — a plain franz-go consumer that reads every line and counts IPs in a map: no batches,
   no state store, no output (the limit until dstream outran it by skipping kgo's per-record
   allocation). Checked: every per-IP count. It runs with dstream's garbage collector
   setting (` + "`internal/gcpolicy`" + `: target percent 400, as ` + "`cmd/dstream`" + ` sets it), so that the two Go
   contenders differ in their code only.
3. **dstream** — the reference job (` + "`internal/topips`" + `: 30 s window / 10 s slide top-3 with an
   incremental window, country join, running totals, Redis checkpoints, transactional Kafka output), in
   process as ` + "`cmd/dstream`" + ` wires it, catching up on the topic with batch times from a virtual clock and
   batch sizes from the rate cap (` + "`MaxRatePerPartition`" + `), so the batches are deterministic.
   Checked: every window's top-3 with counts, running totals and countries, read back from the output
   topic with read_committed, and every running total read back from the checkpoint in Redis.
4. **structured** — the job on Spark Structured Streaming (` + "`bench/structured`" + `, Java, Spark SQL's
   built-in functions only, the Kafka source, local[cores], shuffle partitions = cores): a
   ` + "`window(ts, 30 s, 10 s)`" + ` count per IP with a watermark in update mode, ranked per window with
   ` + "`row_number()`" + ` in a foreachBatch and merged into each window's top 3, a broadcast join with the
   countries CSV, and running totals as a second query's ` + "`groupBy(ip).count()`" + ` (one streaming
   aggregation per query). Event time is the record's timestamp, which the pre-load sets so that the
   10 s buckets of event time are exactly dstream's batches. Triggers of one batch's lines
   (` + "`maxOffsetsPerTrigger`" + `) until the topic's end at the start (` + "`Trigger.AvailableNow`" + `),
   checkpoints on local disk. Timed from the queries' start to their end. Checked: every window's top 3
   (IPs, counts, countries) and every final total; a ranking's running total is not comparable,
   since Structured Streaming has no total "as of an event-time window's end", only as of a trigger.
5. **flink** — the job on Apache Flink's DataStream API (` + "`bench/flink`" + `) in a local MiniCluster,
   parallelism = cores, heap state: per IP, tumbling 10 s event-time panes, then a sliding 30 s / 10 s
   window over the panes whose function keeps the IP's running total in per-key state (the newest pane
   of a window ends with it, so the total is as of the window's end, as dstream's), the top 3 per
   window end by a keyed function with an event-time timer, the countries from the CSV, results and
   final totals through exactly-once KafkaSinks with checkpoints every batch interval. The Kafka
   source is bounded at the topic's end and keeps a watermark per partition, so no line is late.
   Timed from the job's RUNNING state to its end (after the last checkpoint has committed the output).
   Checked like dstream: every window's top 3 with counts, running totals and countries read back from
   the output topic with read_committed, and every final total.
6. **spark** — the lecture's third program on PySpark DStreams (` + "`bench/spark/topips.py`" + `), local[*],
   with the same batches: each batch's offset ranges read by Spark's Kafka source and queued with
   queueStream; the window is the lecture's incremental ` + "`reduceByKeyAndWindow`" + ` with an inverse,
   running totals by ` + "`updateStateByKey`" + `, checkpoints to local disk. The streaming context runs on
   Spark's ManualClock, advanced one interval as soon as a batch is done, so Spark too runs batches back to
   back; the time counts from the first batch to the last (the JVM's start is not counted). Checked like
   dstream (every window, totals, countries).
7. **kstreams**, **kstreams-tuned** — the same job written for Kafka Streams (` + "`bench/kstreams`" + `): a
   hopping-window count per IP (30 s / 10 s, event time), a top-3 aggregate per window kept by
   upserting its growing counts, running totals as a KTable count, KTable joins for totals and
   countries, exactly-once v2, a stream thread per core. **kstreams** runs with exactly-once's
   defaults (a commit every 100 ms, the 10 MB record cache); **kstreams-tuned** as its users tune it
   for throughput: a commit every batch interval (10 s; BENCH_KSTREAMS_COMMIT_MS=a,b,… sweeps, a row
   each) and a 256 MB record cache. The goal's ratio is against the faster. Timed from its RUNNING
   state until its group has committed the end of the input and of every repartition topic. Checked:
   every running total, and the top-3 counts of every window (a ranking's running total joins the
   totals table as it is when the ranking changes, not as of the window's end).

**latency** — dstream at a 100 ms batch interval on the wall clock (window 300 ms, slide 100 ms: the
same job's shape, so that every batch emits its ranking) while a logsender-style producer (franz-go,
5 ms linger) sends BENCH_LATENCY_RATE lines/s; a read_committed consumer notes when each batch's
results become visible, and the latency of every line is that instant minus the instant it was
produced (the dstream-offsets header of the output names the input offsets of the batch).

**state** — dstream on two topics of BENCH_STATE_LINES lines whose IPs cycle through 10k and 1M
distinct addresses, both with the same countries table (an input, not state); bytes per key =
difference of the Go heap in use after a final GC (job and state still reachable) divided by the
difference in distinct keys, and the same with peak RSS. The heap profile of each run is written
next to its CPU profile (state-N-job.heap.pprof in the run's scratch directory). The 10k and 1M runs
alternate BENCH_STATE_ROUNDS times (5) and the best of each gives the ratio; the median of the
round-by-round ratios is reported beside it.

**engine** — ` + "`go test -bench . ./microbatch/ ./internal/weblog/`" + ` (also ` + "`make bench-engine`" + `).
`
