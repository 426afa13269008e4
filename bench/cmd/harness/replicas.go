package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/wiring"
	"github.com/dstream-io/dstream/state"
)

// The dstream binary as its users run it (issue #12): real processes of
// cmd/dstream, configured by DSTREAM_* variables, on the wall clock. A
// pre-loaded topic is drained in batches of a fixed size: the batch
// interval is short (binaryInterval) and the rate cap makes every batch
// take perPart records of each partition, so the job is always behind and
// runs its batches back to back, as the in-process catch-up runs do.

// binaryInterval is the binary's batch interval; the window and slide keep
// the reference job's shape (3 intervals, 1). It is far shorter than a
// batch takes, so the wall clock never paces the run: at 100 ms, 100
// batches of 200k lines took 10.1 s whatever the binary, because each
// batch took less than the interval and waited for the next.
const binaryInterval = 20 * time.Millisecond

// replicaShards is DSTREAM_SHARDS of the sharded runs: 2×3+1 = 7 tasks.
const replicaShards = 3

// replicaPartitions is the partitions of the replicas' topic.
const replicaPartitions = 12

// stallLimit is how long a binary run may go without its slowest task
// committing a batch before it counts as stuck: far longer than a lease
// TTL and a batch.
const stallLimit = 90 * time.Second

// binarySpec is one run of the binary.
type binarySpec struct {
	name     string // the run's name and job id
	bin      string
	d        *dataset
	shards   int // DSTREAM_SHARDS; 1 sets none (the baseline binary has no such setting)
	replicas int
	// kill SIGKILLs the replica holding the most tasks once a third of
	// the input has gone through every task.
	kill bool
}

// binaryRun is what a binary run measured.
type binaryRun struct {
	spec binarySpec
	// seconds is from the start of the processes to the moment every task
	// had committed the topic's last batch.
	seconds     float64
	firstCommit time.Duration // from the start to the first batch committed
	cpu         float64       // CPU seconds of every replica process until then
	broker      float64
	rss         int64 // the largest replica's peak RSS
	exchange    exchangeBytes
	correct     bool
	detail      string
	moves       []taskMove
}

func (r *binaryRun) rate() float64 { return float64(r.spec.d.lines) / r.seconds }

// cpuPerLine is CPU seconds per input line, in nanoseconds.
func (r *binaryRun) cpuPerLine() float64 { return r.cpu / float64(r.spec.d.lines) * 1e9 }

func (r *binaryRun) row(name string) row {
	return row{name: name, lines: r.spec.d.lines, seconds: r.seconds, rss: r.rss, correct: r.correct, detail: r.detail,
		cpu: r.cpu, brokerCPU: r.broker}
}

// taskMove is a task of a killed replica and when it committed again.
type taskMove struct {
	task string
	// fromKill is from the SIGKILL to the task's first batch committed
	// elsewhere; sinceTaken what its new replica logged (from taking the
	// task to that commit).
	fromKill, sinceTaken time.Duration
}

// exchangeBytes is what a sharded run's exchanges hold.
type exchangeBytes struct {
	logBytes   int64 // the exchange topics' log segments (DescribeLogDirs)
	valueBytes int64 // the values of the records of the topic's batches
	records    int
}

// buildBinaries builds cmd/dstream of this tree and, when BENCH_BASELINE
// names a revision, of that revision (git archive), into the run's
// directory.
func (b *bench) buildBinaries(ctx context.Context) error {
	if b.binary != "" {
		return nil
	}
	bin := filepath.Join(b.dir, "bin", "dstream")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dstream")
	cmd.Dir = b.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/dstream: %w\n%s", err, out)
	}
	b.binary = bin
	rev := b.cfg.baseline
	if rev == "" {
		return nil
	}
	src := filepath.Join(b.dir, "baseline-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	build := exec.CommandContext(ctx, "bash", "-c", `git archive "$1" | tar -x -C "$2" && cd "$2" && go build -o "$3" ./cmd/dstream`,
		"build", rev, src, filepath.Join(b.dir, "bin", "dstream-baseline"))
	build.Dir = b.root
	if out, err := build.CombinedOutput(); err != nil {
		b.notes = append(b.notes, fmt.Sprintf("baseline %s: not built (%v: %s)", rev, err, strings.TrimSpace(string(out))))
		return nil
	}
	full, _ := exec.CommandContext(ctx, "git", "rev-parse", "--short", rev).Output()
	b.baselineRev = strings.TrimSpace(string(full))
	b.baselineBin = filepath.Join(b.dir, "bin", "dstream-baseline")
	return nil
}

// runOneReplica runs the binary unsharded (DSTREAM_SHARDS=1, the default)
// on the main topic, in the dstream stage's batches: the product as one
// replica runs it, against the dstream stage (the same engine in process)
// and against the baseline revision's binary (the engine before the
// scale-out work), alternating, the best of each kept.
func (b *bench) runOneReplica(ctx context.Context) error {
	if err := b.buildBinaries(ctx); err != nil {
		return err
	}
	var cur, base []*binaryRun
	for round := range b.cfg.rounds {
		r, err := b.runBinary(ctx, binarySpec{name: fmt.Sprintf("one-replica-%d", round), bin: b.binary, d: b.main, shards: 1, replicas: 1})
		if err != nil {
			return err
		}
		cur = append(cur, r)
		if b.baselineBin == "" {
			continue
		}
		r, err = b.runBinary(ctx, binarySpec{name: fmt.Sprintf("one-replica-baseline-%d", round), bin: b.baselineBin, d: b.main, shards: 1, replicas: 1})
		if err != nil {
			return err
		}
		base = append(base, r)
	}
	c := bestBinary(cur)
	b.addRow("one-replica", c.row("dstream binary, 1 replica, unsharded"))
	b.figure("one_replica_lines_per_s", c.rate(), "lines/s")
	b.figure("one_replica_cpu_ns_per_line", c.cpuPerLine(), "ns")
	note := fmt.Sprintf("one replica, unsharded, every round's lines/s: this tree %s", binaryRates(cur))
	if ds, ok := b.rowNamed("dstream"); ok && ds.correct && c.correct {
		b.figure("ratio_one_replica_vs_dstream_stage", c.rate()/ds.rate(), "x")
	}
	if len(base) > 0 {
		bl := bestBinary(base)
		b.addRow("one-replica", bl.row("dstream binary at "+b.baselineRev+" (before scale-out), 1 replica"))
		b.figure("one_replica_baseline_lines_per_s", bl.rate(), "lines/s")
		b.figure("one_replica_baseline_cpu_ns_per_line", bl.cpuPerLine(), "ns")
		if c.correct && bl.correct {
			b.figure("ratio_one_replica_vs_baseline", c.rate()/bl.rate(), "x")
			b.figure("ratio_one_replica_cpu_per_line_vs_baseline", c.cpuPerLine()/bl.cpuPerLine(), "x")
		}
		note += "; baseline " + b.baselineRev + " " + binaryRates(base)
	}
	b.notes = append(b.notes, note+fmt.Sprintf(" (each from the processes' start to the last batch committed; %d batches of %d lines, interval %v)",
		b.main.batches, b.main.perPart*int64(b.main.parts), binaryInterval))
	return nil
}

// replicaCPURatio reports the CPU a line of the most replicas against the
// fewest: three processes and the broker share two cores, and one run's
// ratio moved by ±0.15 from run to run with the same binary, so the two run
// again, alternating, BENCH_REPLICA_ROUNDS times in all, and the figure is
// the median of the round-by-round ratios (the first round's is reported
// too).
func (b *bench) replicaCPURatio(ctx context.Context, d *dataset, one, most *binaryRun) error {
	name := fmt.Sprintf("ratio_cpu_per_line_r%d_vs_r%d", most.spec.replicas, one.spec.replicas)
	if !one.correct || !most.correct {
		return nil
	}
	ratios := []float64{most.cpuPerLine() / one.cpuPerLine()}
	b.figure(name+"_first", ratios[0], "x")
	for round := 2; round <= b.cfg.replicaRounds; round++ {
		var pair [2]*binaryRun
		for i, r := range []*binaryRun{one, most} {
			again, err := b.runBinary(ctx, binarySpec{name: fmt.Sprintf("%s-round%d", r.spec.name, round), bin: r.spec.bin, d: d,
				shards: r.spec.shards, replicas: r.spec.replicas})
			if err != nil {
				return err
			}
			if !again.correct {
				return fmt.Errorf("%s, round %d: wrong answer", r.spec.name, round)
			}
			pair[i] = again
		}
		ratios = append(ratios, pair[1].cpuPerLine()/pair[0].cpuPerLine())
	}
	b.notes = append(b.notes, fmt.Sprintf("CPU a line, %d replicas against %d, round by round: %s (the median is the figure)",
		most.spec.replicas, one.spec.replicas, joinFloats(ratios, "%.2f×")))
	b.figure(name, percentiles(ratios).p50, "x")
	return nil
}

// runReplicas runs the reference job sharded (DSTREAM_SHARDS=3: 7 tasks)
// on 1, 2 and 3 replicas, unsharded on 1, and sharded on 3 with one
// SIGKILLed, on one pre-loaded topic of 12 partitions.
func (b *bench) runReplicas(ctx context.Context) error {
	if err := b.buildBinaries(ctx); err != nil {
		return err
	}
	var d *dataset
	err := b.timed("pre-load replicas", func() error {
		var err error
		d, err = preload(ctx, b.broker.Addr(), loadSpec{topic: "replicas", lines: b.cfg.replicaLines, batches: b.cfg.replicaBatches,
			parts: replicaPartitions, src: generatorLines{newGenerator(b.cfg.ips)}, keepSeq: true}, b.dir)
		return err
	})
	if err != nil {
		return err
	}
	if err := warmReads(ctx, b.broker.Addr(), d); err != nil {
		return err
	}
	perBatch := d.perPart * int64(d.parts)
	unsharded, err := b.runBinary(ctx, binarySpec{name: "replicas-unsharded", bin: b.binary, d: d, shards: 1, replicas: 1})
	if err != nil {
		return err
	}
	b.addRow("replicas", unsharded.row("unsharded, 1 replica"))
	b.figure("replicas_unsharded_lines_per_s", unsharded.rate(), "lines/s")
	b.figure("replicas_unsharded_cpu_ns_per_line", unsharded.cpuPerLine(), "ns")
	runs := map[int]*binaryRun{}
	for _, n := range b.cfg.replicaCounts {
		r, err := b.runBinary(ctx, binarySpec{name: fmt.Sprintf("replicas-s%d-r%d", replicaShards, n), bin: b.binary, d: d, shards: replicaShards, replicas: n})
		if err != nil {
			return err
		}
		runs[n] = r
		b.addRow("replicas", r.row(fmt.Sprintf("%d shards, %d replica%s", replicaShards, n, plural(n))))
		p := fmt.Sprintf("replicas_s%d_r%d_", replicaShards, n)
		b.figure(p+"lines_per_s", r.rate(), "lines/s")
		b.figure(p+"cpu_ns_per_line", r.cpuPerLine(), "ns")
		b.figure(p+"exchange_bytes_per_line", float64(r.exchange.logBytes)/float64(d.lines), "B")
		if unsharded.correct && r.correct {
			b.figure(p+"cpu_per_line_vs_unsharded", r.cpuPerLine()/unsharded.cpuPerLine(), "x")
			b.figure(p+"rate_vs_unsharded", r.rate()/unsharded.rate(), "x")
		}
	}
	counts := slices.Sorted(maps.Keys(runs))
	if len(counts) > 1 {
		if err := b.replicaCPURatio(ctx, d, runs[counts[0]], runs[counts[len(counts)-1]]); err != nil {
			return err
		}
	}
	if r, ok := runs[counts[len(counts)-1]]; ok {
		b.figure("exchange_bytes_per_line", float64(r.exchange.logBytes)/float64(d.lines), "B")
		keys, batches := exchangedKeys(d, replicaShards)
		b.figure("exchange_keys_per_batch", float64(keys)/float64(batches), "keys")
		if keys > 0 {
			b.figure("exchange_value_bytes_per_key", float64(r.exchange.valueBytes)/float64(keys), "B")
			b.figure("exchange_log_bytes_per_key", float64(r.exchange.logBytes)/float64(keys), "B")
		}
		b.notes = append(b.notes, fmt.Sprintf("exchanges of the %d-replica run: %d bytes in the logs of dstream-<job>-counts and -top (%d records, %d bytes of values for the input's %d batches) for %d lines: %.3f B a line; "+
			"the parse tasks exchanged %d (IP, count) pairs, %.0f a batch against %d lines a batch: %.3f pairs a line, %.1f log bytes a pair",
			counts[len(counts)-1], r.exchange.logBytes, r.exchange.records, r.exchange.valueBytes, d.batches, d.lines, float64(r.exchange.logBytes)/float64(d.lines),
			keys, float64(keys)/float64(batches), perBatch, float64(keys)/float64(d.lines), float64(r.exchange.logBytes)/float64(max(1, keys))))
	}
	if b.cfg.replicaKill {
		n := counts[len(counts)-1]
		r, err := b.runBinary(ctx, binarySpec{name: fmt.Sprintf("replicas-s%d-r%d-kill", replicaShards, n), bin: b.binary, d: d, shards: replicaShards, replicas: n, kill: true})
		if err != nil {
			return err
		}
		b.addRow("replicas", r.row(fmt.Sprintf("%d shards, %d replicas, one SIGKILLed", replicaShards, n)))
		var worst, worstTaken time.Duration
		var desc []string
		moved := true
		for _, m := range r.moves {
			if m.fromKill < 0 {
				moved = false
				desc = append(desc, m.task+" never committed again")
				continue
			}
			worst, worstTaken = max(worst, m.fromKill), max(worstTaken, m.sinceTaken)
			desc = append(desc, fmt.Sprintf("%s %.0f ms from the kill (%.0f ms from being taken)", m.task, ms(m.fromKill), ms(m.sinceTaken)))
		}
		if !moved {
			worst = time.Hour // a task that never moved misses any goal
		}
		b.figure("move_ms_from_kill", ms(worst), "ms")
		b.figure("move_since_taken_ms", ms(worstTaken), "ms")
		b.figure("move_lease_ttl_ms", ms(b.cfg.leaseTTL), "ms")
		b.figure("move_ms_from_kill_beyond_ttl", ms(worst-b.cfg.leaseTTL), "ms")
		b.notes = append(b.notes, fmt.Sprintf("a replica SIGKILLed (lease TTL %v): its tasks committed their first batch elsewhere: %s", b.cfg.leaseTTL, strings.Join(desc, "; ")))
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func bestBinary(runs []*binaryRun) *binaryRun {
	out := runs[0]
	for _, r := range runs[1:] {
		if r.correct && (!out.correct || r.rate() > out.rate()) {
			out = r
		}
	}
	return out
}

func binaryRates(runs []*binaryRun) string {
	var s []string
	for _, r := range runs {
		s = append(s, human3(r.rate()))
	}
	return strings.Join(s, ", ")
}

// exchangedKeys counts the (IP, count) pairs the parse tasks of a job
// sharded in shards send for d: for every batch and parse task, the
// distinct IPs of its partitions' lines in the batch.
func exchangedKeys(d *dataset, shards int) (keys int64, batches int) {
	stamp := make([]int32, len(d.ips))
	mark := int32(0)
	for batch := 1; batch <= d.batches; batch++ {
		for task := range shards {
			mark++
			for p := task; p < d.parts; p += shards {
				from, until := d.batchRange(p, batch)
				for _, k := range d.seq[p][from:until] {
					if stamp[k] != mark {
						stamp[k] = mark
						keys++
					}
				}
			}
		}
	}
	return keys, d.batches
}

// taskJobs are the job names of a run's tasks: the job itself unsharded.
func (s binarySpec) taskJobs() []string {
	if s.shards <= 1 {
		return []string{s.name}
	}
	var out []string
	for stage, n := range []int{s.shards, s.shards, 1} {
		for i := range n {
			out = append(out, state.TaskJob(s.name, fmt.Sprintf("s%d-%d", stage, i)))
		}
	}
	return out
}

// runBinary starts spec.replicas processes of the binary on spec.d, waits
// until every task committed the topic's last batch, stops them and checks
// the answer.
func (b *bench) runBinary(ctx context.Context, spec binarySpec) (*binaryRun, error) {
	d := spec.d
	out, dlq := spec.name+"-out", spec.name+"-dlq"
	for _, t := range []struct {
		name string
		n    int32
	}{{out, 2}, {dlq, 1}} {
		if err := b.broker.CreateTopic(ctx, t.name, t.n, nil); err != nil {
			return nil, err
		}
	}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DSTREAM_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"DSTREAM_KAFKA_BROKERS="+b.broker.Addr(), "DSTREAM_REDIS_ADDR="+b.redis.Addr(),
		"DSTREAM_INPUT_TOPIC="+d.topic, "DSTREAM_OUTPUT_TOPIC="+out, "DSTREAM_DEADLETTER_TOPIC="+dlq,
		"DSTREAM_JOB_ID="+spec.name, "DSTREAM_BATCH_INTERVAL="+binaryInterval.String(),
		"DSTREAM_WINDOW="+(window/interval*binaryInterval).String(), "DSTREAM_SLIDE="+binaryInterval.String(),
		"DSTREAM_TOP_N="+strconv.Itoa(topN), "DSTREAM_COUNTRIES_FILE="+d.countriesFile,
		"DSTREAM_MAX_RATE_PER_PARTITION="+strconv.FormatInt(d.perPart*int64(time.Second/binaryInterval), 10),
		"DSTREAM_HTTP_ADDR=127.0.0.1:0", "DSTREAM_LOG_LEVEL=info", "DSTREAM_LEASE_TTL="+b.cfg.leaseTTL.String())
	if spec.shards > 1 {
		env = append(env, "DSTREAM_SHARDS="+strconv.Itoa(spec.shards))
	}
	rdb := b.redis.Client()
	defer rdb.Close()
	tasks := spec.taskJobs()
	last := uint64(d.batches)

	run := &binaryRun{spec: spec}
	cpu0 := b.brokerCPU()
	began := time.Now()
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.kill()
		}
	}()
	for i := range spec.replicas {
		cmd := exec.CommandContext(ctx, spec.bin)
		cmd.Env = env
		p, err := start(b.dir, fmt.Sprintf("%s-%d", spec.name, i), cmd, false)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
	}
	var victim *proc
	var killedAt time.Time
	moved := map[string]uint64{} // the victim's tasks, by job name: committed when killed
	movedAt := map[string]time.Time{}
	// A run whose slowest task stops advancing for stallLimit is stuck:
	// reported with where every task stands, not waited for.
	var low uint64
	var stuck string
	lastAdvance := time.Now()
	for {
		if time.Since(lastAdvance) > stallLimit {
			committed, _ := taskCommitted(ctx, rdb, tasks)
			var at []string
			for i, t := range tasks {
				at = append(at, fmt.Sprintf("%s %d", strings.TrimPrefix(t, spec.name+"/"), committed[i]))
			}
			stuck = fmt.Sprintf("stuck: no task behind advanced for %v, short of batch %d (committed: %s)", stallLimit, last, strings.Join(at, ", "))
			run.seconds = time.Since(began).Seconds()
			break
		}
		for _, p := range procs {
			if p != victim && p.exited() {
				return nil, fmt.Errorf("%s exited: %v (see %s)", p.name, p.waitErr, p.log.Name())
			}
		}
		committed, err := taskCommitted(ctx, rdb, tasks)
		if err != nil {
			return nil, err
		}
		now := time.Now()
		if m := slices.Min(committed); m > low {
			low, lastAdvance = m, now
		}
		if run.firstCommit == 0 && slices.Max(committed) > 0 {
			run.firstCommit = now.Sub(began)
		}
		for i, t := range tasks {
			if c0, ok := moved[t]; ok && committed[i] > c0 {
				if _, done := movedAt[t]; !done {
					movedAt[t] = now
				}
			}
		}
		if spec.kill && victim == nil && low >= last/3 {
			victim, err = mostTasks(procs)
			if err != nil {
				return nil, err
			}
			held := heldTasks(victim.log.Name())
			for i, t := range tasks {
				if held[strings.TrimPrefix(t, spec.name+"/")] {
					moved[t] = committed[i]
				}
			}
			killedAt = time.Now()
			victim.kill()
			<-victim.done
		}
		if low >= last && len(movedAt) == len(moved) {
			run.seconds = now.Sub(began).Seconds()
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	for _, p := range procs {
		if p != victim {
			run.cpu += processCPU(p.cmd.Process.Pid)
		}
	}
	if victim != nil {
		run.cpu += victim.cpuSeconds()
	}
	run.broker = b.brokerCPU() - cpu0
	for _, p := range procs {
		if p != victim {
			p.signal(syscall.SIGTERM)
		}
	}
	for _, p := range procs {
		if p == victim {
			continue
		}
		if err := p.wait(time.Minute); err != nil {
			return nil, err
		}
		run.rss = max(run.rss, p.peakRSS())
	}
	if victim != nil {
		taken := map[string]time.Duration{}
		for _, p := range procs {
			if p != victim {
				maps.Copy(taken, firstCommitsHere(p.log.Name(), killedAt))
			}
		}
		for t := range moved {
			name := strings.TrimPrefix(t, spec.name+"/")
			m := taskMove{task: name, fromKill: -1, sinceTaken: taken[name]}
			if at, ok := movedAt[t]; ok {
				m.fromKill = at.Sub(killedAt)
			}
			run.moves = append(run.moves, m)
		}
		slices.SortFunc(run.moves, func(x, y taskMove) int { return strings.Compare(x.task, y.task) })
	}
	if stuck != "" {
		run.detail = stuck
		b.say("%s: %s", spec.name, stuck)
		return run, nil
	}
	var err error
	if spec.shards > 1 {
		if run.exchange, err = b.exchangeBytes(ctx, spec.name, last); err != nil {
			return nil, err
		}
	}
	run.correct, run.detail, err = b.checkBinary(ctx, rdb, spec, out)
	if err != nil {
		return nil, err
	}
	b.say("%s: %d lines in %.1f s (%s lines/s), %.1f CPU-s (%.0f ns a line), first commit after %.1f s; %s",
		spec.name, d.lines, run.seconds, human3(run.rate()), run.cpu, run.cpuPerLine(), run.firstCommit.Seconds(), run.detail)
	return run, nil
}

// checkBinary checks a binary run's output and its running totals in Redis
// against the input.
func (b *bench) checkBinary(ctx context.Context, rdb *redis.Client, spec binarySpec, out string) (bool, string, error) {
	d := spec.d
	got, err := b.readResults(ctx, out)
	if err != nil {
		return false, "", err
	}
	ok2, detail2 := checkResults(d.expected(), got, d.batches, true)
	jobs := []string{spec.name}
	if spec.shards > 1 {
		jobs = nil
		for i := range spec.shards {
			jobs = append(jobs, state.TaskJob(spec.name, fmt.Sprintf("s1-%d", i)))
		}
	}
	totals := map[string]int64{}
	for _, job := range jobs {
		store, err := state.NewRedis(rdb, state.Config{Job: job})
		if err != nil {
			return false, "", err
		}
		t, err := checkpointedTotals(ctx, store)
		if err != nil {
			return false, "", fmt.Errorf("%s: totals: %w", job, err)
		}
		for ip, n := range t {
			totals[ip] += n
		}
	}
	ok, detail := d.checkTotals(totals)
	return ok && ok2, detail + "; " + detail2 + " (read back from the output topic; totals from the checkpoint)", nil
}

// taskCommitted reads every task's committed batch.
func taskCommitted(ctx context.Context, rdb *redis.Client, jobs []string) ([]uint64, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(jobs))
	for i, j := range jobs {
		cmds[i] = pipe.HGet(ctx, "{dstream:"+j+"}:meta", "committed")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]uint64, len(jobs))
	for i, c := range cmds {
		if v, err := c.Result(); err == nil {
			out[i], _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return out, nil
}

// exchangeBytes measures the exchange topics of job: the size of their
// logs, and the values of the records of batches 1..last.
func (b *bench) exchangeBytes(ctx context.Context, job string, last uint64) (exchangeBytes, error) {
	var x exchangeBytes
	topics := []string{wiring.ExchangeTopic(job, "counts"), wiring.ExchangeTopic(job, "top")}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.broker.Addr()))
	if err != nil {
		return x, err
	}
	defer cl.Close()
	// Every topic's (a set naming topics without partitions asks for none
	// of their partitions); the loop below keeps the exchanges'.
	dirs, err := kadm.NewClient(cl).DescribeAllLogDirs(ctx, nil)
	if err != nil {
		return x, fmt.Errorf("describe log dirs: %w", err)
	}
	for _, byDir := range dirs {
		for _, dir := range byDir {
			for topic, parts := range dir.Topics {
				if !slices.Contains(topics, topic) {
					continue
				}
				for _, p := range parts {
					x.logBytes += p.Size
				}
			}
		}
	}
	for _, t := range topics {
		recs, err := readAll(ctx, b.broker.Addr(), t)
		if err != nil {
			return x, err
		}
		for _, r := range recs {
			for _, h := range r.Headers {
				if h.Key == "dstream-batch-id" {
					if id, _ := strconv.ParseUint(string(h.Value), 10, 64); id <= last {
						x.valueBytes += int64(len(r.Value))
						x.records++
					}
				}
			}
		}
	}
	return x, nil
}

// logLine is what the harness reads of the binary's JSON log.
type logLine struct {
	Message      string `json:"message"`
	Task         string `json:"task"`
	SinceTakenMS int64  `json:"since_taken_ms"`
	Time         string `json:"time"`
}

func readLog(path string, each func(logLine)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			each(l)
		}
	}
}

// heldTasks reads from a replica's log the tasks it holds: taken, and not
// given back or dropped since.
func heldTasks(path string) map[string]bool {
	held := map[string]bool{}
	readLog(path, func(l logLine) {
		switch {
		case l.Message == "took the task":
			held[l.Task] = true
		case strings.HasPrefix(l.Message, "over this replica's share"), strings.HasPrefix(l.Message, "the task moved"),
			strings.HasPrefix(l.Message, "the task failed"):
			delete(held, l.Task)
		}
	})
	return held
}

// mostTasks is the replica holding the most tasks.
func mostTasks(procs []*proc) (*proc, error) {
	var out *proc
	n := -1
	for _, p := range procs {
		if h := len(heldTasks(p.log.Name())); h > n {
			out, n = p, h
		}
	}
	if n <= 0 {
		return nil, errors.New("no replica logged a task it holds")
	}
	return out, nil
}

// firstCommitsHere reads from a replica's log the tasks that committed
// their first batch there (after a move) since after (to the second of the
// log's times), with the time from taking each.
func firstCommitsHere(path string, after time.Time) map[string]time.Duration {
	out := map[string]time.Duration{}
	readLog(path, func(l logLine) {
		if l.Message != "the task committed its first batch here" {
			return
		}
		if t, err := time.Parse(time.RFC3339, l.Time); err == nil && t.Before(after.Truncate(time.Second)) {
			return
		}
		out[l.Task] = time.Duration(l.SinceTakenMS) * time.Millisecond
	})
	return out
}
