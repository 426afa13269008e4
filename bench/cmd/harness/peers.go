package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// runSpark runs bench/spark/topips.py: the lecture's program on PySpark
// DStreams, fed dstream's batches of the topic (see the program's doc).
func (b *bench) runSpark(ctx context.Context) error {
	dir := filepath.Join(b.dir, "spark")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	python := filepath.Join(b.root, ".cache", "bench", "venv", "bin", "python")
	cmd := exec.CommandContext(ctx, python, filepath.Join(b.root, "bench", "spark", "topips.py"),
		"--brokers", b.broker.Addr(), "--topic", b.main.topic, "--ends", endsFlag(b.main.ends),
		"--per-partition", strconv.FormatInt(b.main.perPart, 10), "--batches", strconv.Itoa(b.main.batches),
		"--countries", b.main.countriesFile, "--jars", filepath.Join(b.root, ".cache", "bench", "spark-jars"),
		"--checkpoint", filepath.Join(dir, "checkpoint"), "--out", dir, "--master", b.cfg.sparkMaster)
	if v := os.Getenv("BENCH_SPARK_CHECKPOINT_EVERY"); v != "" {
		cmd.Args = append(cmd.Args, "--checkpoint-every", v)
	}
	cmd.Env = append(os.Environ(), "PYSPARK_PYTHON="+python, "PYSPARK_DRIVER_PYTHON="+python)
	cpu0 := b.brokerCPU()
	p, err := start(b.dir, "spark", cmd, false)
	if err != nil {
		return err
	}
	if err := p.wait(60 * time.Minute); err != nil {
		return err
	}
	var stats struct {
		Seconds         float64   `json:"seconds"`
		PlanningSeconds float64   `json:"planning_seconds"`
		BatchSeconds    []float64 `json:"batch_seconds"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "stats.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &stats); err != nil {
		return err
	}
	totals, err := readTotals(filepath.Join(dir, "totals.txt"))
	if err != nil {
		return err
	}
	got := map[int][]result{}
	f, err := os.Open(filepath.Join(dir, "results.jsonl"))
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			f.Close()
			return err
		}
		got[r.Batch] = append(got[r.Batch], r)
	}
	f.Close()
	ok, detail := b.main.checkTotals(totals)
	ok2, detail2 := checkResults(b.want, got, b.main.batches, true)
	if err := os.RemoveAll(filepath.Join(dir, "checkpoint")); err != nil {
		return err
	}
	bs := percentiles(stats.BatchSeconds)
	b.notes = append(b.notes, fmt.Sprintf("spark: %d batches, per batch p50 %.2f s, max %.2f s", len(stats.BatchSeconds), bs.p50, bs.max))
	var lines int64
	for _, n := range totals {
		lines += n
	}
	b.rows = append(b.rows, row{name: "spark", lines: lines, seconds: stats.Seconds, rss: p.peakRSS(),
		cpu: p.cpuSeconds(), brokerCPU: b.brokerCPU() - cpu0,
		correct: ok && ok2, detail: detail + "; " + detail2 + " (with totals and countries)"})
	return nil
}

// kstreamsGrace is how late a record may be for its hopping window: the
// four input partitions are processed by independent tasks whose event
// times drift apart while catching up, so event time reaches the windowed
// count out of order, by up to the whole backlog.
const kstreamsGrace = time.Hour

// needsPeers tells whether a stage that runs a JVM peer is selected, so
// that bench/setup-peers must run.
func (c config) needsPeers() bool {
	for _, s := range []string{"structured", "flink", "spark", "kstreams", "kstreams-tuned"} {
		if c.only[s] {
			return true
		}
	}
	return false
}

// kstreamsVariant is one configuration of the Kafka Streams peer.
type kstreamsVariant struct {
	name       string // the row's name
	commitMS   int64
	cacheBytes int64 // 0: Kafka Streams' default (10 MB)
}

// kstreamsTunedCache is the tuned record cache: 256 MB, the top of the
// 128–256 MB its users give it for throughput, in a 2 GiB heap.
const kstreamsTunedCache = 256 << 20

// runKStreamsDefault runs Kafka Streams as exactly-once sets it up: a commit
// every 100 ms and the default record cache, with a stream thread per core.
func (b *bench) runKStreamsDefault(ctx context.Context) error {
	return b.runKStreams(ctx, kstreamsVariant{name: "kstreams", commitMS: 100})
}

// runKStreamsTuned runs Kafka Streams tuned for throughput as its users
// tune it: the commit interval at dstream's batch interval (or each of
// BENCH_KSTREAMS_COMMIT_MS, a sweep, each a row of its own) and a 256 MB
// record cache.
func (b *bench) runKStreamsTuned(ctx context.Context) error {
	commits := []int64{interval.Milliseconds()}
	if v := os.Getenv("BENCH_KSTREAMS_COMMIT_MS"); v != "" {
		commits = nil
		for _, f := range strings.Split(v, ",") {
			ms, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || ms <= 0 {
				return fmt.Errorf("BENCH_KSTREAMS_COMMIT_MS: %q is no positive number of milliseconds", f)
			}
			commits = append(commits, ms)
		}
	}
	for _, ms := range commits {
		name := "kstreams-tuned"
		if len(commits) > 1 {
			name = fmt.Sprintf("kstreams-tuned-%dms", ms)
		}
		if err := b.runKStreams(ctx, kstreamsVariant{name: name, commitMS: ms, cacheBytes: kstreamsTunedCache}); err != nil {
			return err
		}
	}
	return nil
}

// runKStreams runs bench/kstreams (TopIps.java) from its RUNNING state until
// its consumer group has consumed and committed everything, input and
// repartition topics alike.
func (b *bench) runKStreams(ctx context.Context, v kstreamsVariant) error {
	dir := filepath.Join(b.dir, v.name)
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o755); err != nil {
		return err
	}
	countries, out, appID := v.name+"-countries", v.name+"-out", v.name+"-top-ips"
	compact := "compact"
	if err := b.broker.CreateTopic(ctx, countries, partitions, map[string]*string{"cleanup.policy": &compact}); err != nil {
		return err
	}
	if err := b.broker.CreateTopic(ctx, out, 2, nil); err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.broker.Addr()), kgo.DefaultProduceTopic(countries))
	if err != nil {
		return err
	}
	defer cl.Close()
	var recs []*kgo.Record
	for ip, c := range b.main.countries {
		recs = append(recs, &kgo.Record{Key: []byte(ip), Value: []byte(c)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return err
	}

	ks := filepath.Join(b.root, ".cache", "bench", "kstreams")
	args := append(b.jfrFlags(v.name), "-Xms256m", "-Xmx2g",
		"-cp", filepath.Join(ks, "classes")+":"+filepath.Join(ks, "lib", "*"), "io.dstream.bench.TopIps",
		"--bootstrap", b.broker.Addr(), "--input", b.main.topic, "--countries", countries, "--output", out,
		"--app-id", appID, "--state-dir", filepath.Join(dir, "state"), "--out-dir", dir,
		"--threads", strconv.Itoa(runtime.NumCPU()), "--commit-ms", strconv.FormatInt(v.commitMS, 10),
		"--grace-ms", strconv.FormatInt(kstreamsGrace.Milliseconds(), 10))
	if v.cacheBytes > 0 {
		args = append(args, "--cache-bytes", strconv.FormatInt(v.cacheBytes, 10))
	}
	cmd := exec.CommandContext(ctx, "java", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	cpu0 := b.brokerCPU()
	p, err := start(b.dir, v.name, cmd, true)
	if err != nil {
		return err
	}
	defer p.kill()
	if _, err := p.waitFor("RUNNING", 3*time.Minute); err != nil {
		return err
	}
	began := time.Now()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(60 * time.Minute)
	for {
		if time.Now().After(deadline) {
			return fmt.Errorf("kstreams: not caught up after 60 minutes")
		}
		select {
		case <-p.done:
			// A Streams client that failed stops committing: say so now
			// rather than at the deadline.
			return fmt.Errorf("%s exited before catching up: %v (see %s)", v.name, p.waitErr, p.log.Name())
		case <-time.After(200 * time.Millisecond):
		}
		lags, err := adm.Lag(ctx, appID)
		if err != nil {
			continue
		}
		l, ok := lags[appID]
		if !ok || l.Error() != nil {
			continue
		}
		input := true
		for part, end := range b.main.ends {
			m, ok := l.Lag.Lookup(b.main.topic, int32(part))
			if !ok || m.Commit.At < end {
				input = false
			}
		}
		if input && l.Lag.Total() == 0 {
			break
		}
	}
	elapsed := time.Since(began)
	if _, err := fmt.Fprintln(stdin, "dump"); err != nil {
		return err
	}
	if _, err := p.waitFor("DUMPED", 5*time.Minute); err != nil {
		return err
	}
	stdin.Close()
	if err := p.wait(2 * time.Minute); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
		return err
	}
	b.profilePeer(ctx, v.name)
	totals, err := readTotals(filepath.Join(dir, "kstreams-totals.txt"))
	if err != nil {
		return err
	}
	got, err := readKStreamsTop(filepath.Join(dir, "kstreams-top.txt"))
	if err != nil {
		return err
	}
	ok, detail := b.main.checkTotals(totals)
	ok2, detail2 := checkResults(b.want, got, b.main.batches, false)
	var lines int64
	for _, n := range totals {
		lines += n
	}
	b.rows = append(b.rows, row{name: v.name, lines: lines, seconds: elapsed.Seconds(), rss: p.peakRSS(),
		cpu: p.cpuSeconds(), brokerCPU: b.brokerCPU() - cpu0,
		correct: ok && ok2, detail: detail + "; " + detail2 + " (counts)"})
	return nil
}

// readKStreamsTop reads "windowEndMillis rank ip count" lines.
func readKStreamsTop(path string) (map[int][]result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	got := map[int][]result{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 4 {
			continue
		}
		end, _ := strconv.ParseInt(fl[0], 10, 64)
		rank, _ := strconv.Atoi(fl[1])
		n, _ := strconv.ParseInt(fl[3], 10, 64)
		batch := int(time.UnixMilli(end).Sub(epoch) / interval)
		got[batch] = append(got[batch], result{Batch: batch, Rank: rank, IP: fl[2], Count: n})
	}
	return got, sc.Err()
}
