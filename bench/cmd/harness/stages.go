package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/sinks"
)

func newGenerator(ips int) *weblog.Generator { return weblog.NewGenerator(1, ips) }

// dstreamRun is one catch-up run of the reference job on a dataset.
type dstreamRun struct {
	report childReport
	rss    int64
	cpu    float64
	broker float64 // the broker's CPU seconds meanwhile
	// redis is Redis's CPU seconds meanwhile and the bytes it received
	// (INFO: used_cpu_user + used_cpu_sys and its children's,
	// total_net_input_bytes).
	redis   redisUse
	totals  map[string]int64
	out     string // output topic
	profile string
	started time.Time // when the harness started the process
}

// catchUp says how a dstream child runs on a dataset.
type catchUp struct {
	name    string // the run's name: its files, and its job id unless job is set
	job     string
	profile bool
	// batches is how many batches the child runs (default: the dataset's).
	batches int
	// reuse runs on the job's existing topics and checkpoint: a restart.
	reuse bool
	// totals: the child writes the checkpointed totals for the harness
	// (false for cyclingLines topics, which it checks itself).
	totals bool
	// checkLines is how many of a cyclingLines topic's lines the
	// checkpointed totals must count (default: all).
	checkLines int64
	// group bounds the batches that commit together (0: the engine's
	// default).
	group int
}

func (b *bench) dstreamCatchUp(ctx context.Context, d *dataset, c catchUp) (*dstreamRun, error) {
	job := cmpOr(c.job, c.name)
	out, dlq := job+"-out", job+"-dlq"
	if !c.reuse {
		for _, t := range []struct {
			name string
			n    int32
		}{{out, 2}, {dlq, 1}} {
			if err := b.broker.CreateTopic(ctx, t.name, t.n, nil); err != nil {
				return nil, err
			}
		}
	}
	r := &dstreamRun{out: out}
	totals := filepath.Join(b.dir, c.name+"-totals.txt")
	report := filepath.Join(b.dir, c.name+"-report.json")
	batches := d.batches
	if c.batches > 0 {
		batches = c.batches
	}
	args := []string{"child-dstream", "-mode", "catchup",
		"-brokers", b.broker.Addr(), "-redis", b.redis.Addr(),
		"-topic", d.topic, "-out", out, "-dlq", dlq, "-job", job, "-countries", d.countriesFile,
		"-batches", strconv.Itoa(batches), "-rate", strconv.FormatInt(d.ratePerPartition(), 10),
		"-report", report}
	if c.group > 0 {
		args = append(args, "-group", strconv.Itoa(c.group))
	}
	if c.totals {
		args = append(args, "-totals", totals)
	} else if d.cycle != nil {
		args = append(args, "-cycle", strconv.Itoa(d.cycle.n), "-cycle-lines", strconv.FormatInt(cmp.Or(c.checkLines, d.lines), 10))
	}
	if c.profile {
		r.profile = filepath.Join(b.dir, c.name+".cpu.pprof")
		args = append(args, "-cpuprofile", r.profile, "-heapprofile", filepath.Join(b.dir, c.name+".heap.pprof"))
		if os.Getenv("BENCH_TRACE") == "1" {
			args = append(args, "-trace", filepath.Join(b.dir, c.name+".trace"))
		}
	}
	cpu0 := b.brokerCPU()
	redis0, err := b.redisUse(ctx)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	p, err := start(b.dir, c.name, exec.CommandContext(ctx, b.self, args...), false)
	if err != nil {
		return nil, err
	}
	if err := p.wait(60 * time.Minute); err != nil {
		return nil, err
	}
	r.rss, r.cpu, r.broker = p.peakRSS(), p.cpuSeconds(), b.brokerCPU()-cpu0
	redis1, err := b.redisUse(ctx)
	if err != nil {
		return nil, err
	}
	r.redis = redisUse{cpu: redis1.cpu - redis0.cpu, received: redis1.received - redis0.received}
	if r.report, err = readReport(report); err != nil {
		return nil, err
	}
	r.started = started
	if c.totals {
		if r.totals, err = readTotals(totals); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// firstCommit is the time from the process's start (as the harness
// started it) to its first committed batch.
func (r *dstreamRun) firstCommit() time.Duration {
	if r.report.FirstCommitUnixNano == 0 {
		return 0
	}
	return time.Unix(0, r.report.FirstCommitUnixNano).Sub(r.started)
}

// check is the run's answer on d: totals the child wrote, or checked
// itself.
func (r *dstreamRun) check(d *dataset) (bool, string) {
	if r.report.Checked {
		return r.report.Correct, r.report.Detail
	}
	return d.checkTotals(r.totals)
}

func (b *bench) runDstream(ctx context.Context) error {
	r, err := b.dstreamCatchUp(ctx, b.main, catchUp{name: "dstream", profile: true, totals: true})
	if err != nil {
		return err
	}
	ok, detail := b.main.checkTotals(r.totals)
	got, err := b.readResults(ctx, r.out)
	if err != nil {
		return err
	}
	ok2, detail2 := checkResults(b.want, got, b.main.batches, true)
	b.rows = append(b.rows, row{name: "dstream", lines: r.report.Lines, seconds: r.report.Seconds, rss: r.rss, cpu: r.cpu, brokerCPU: r.broker,
		correct: ok && ok2, detail: detail + "; " + detail2 + " (with totals and countries, read back from the output topic)"})
	pm := percentiles(r.report.ProcessingMS)
	cm := percentiles(r.report.CheckpointMS)
	b.notes = append(b.notes, fmt.Sprintf("dstream catch-up: %d batches; processing per batch p50 %.0f ms, max %.0f ms; of which Redis checkpoint p50 %.1f ms",
		r.report.Batches, pm.p50, pm.max, cm.p50))
	b.notes = append(b.notes, "dstream catch-up, wall time in I/O calls (share of the run): "+r.report.Timings)
	b.prof = profileHighlights(ctx, b.self, r.profile)
	return nil
}

// readResults reads every committed result of a dstream output topic, by
// batch id (batch ids of a fresh job count from 1, so batch id = window).
func (b *bench) readResults(ctx context.Context, topic string) (map[int][]result, error) {
	recs, err := readAll(ctx, b.broker.Addr(), topic)
	if err != nil {
		return nil, err
	}
	got := map[int][]result{}
	for _, r := range recs {
		var id int
		for _, h := range r.Headers {
			if h.Key == sinks.HeaderBatchID {
				id, _ = strconv.Atoi(string(h.Value))
			}
		}
		var res topips.Result
		if err := json.Unmarshal(r.Value, &res); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", topic, r.Value, err)
		}
		got[id] = append(got[id], result{Batch: id, Rank: res.Rank, IP: res.IP, Count: res.Count, Total: res.Total, Country: res.Country})
	}
	return got, nil
}

// readAll reads every committed record of topic.
func readAll(ctx context.Context, brokers, topic string) ([]*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		return nil, err
	}
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	cl.Close()
	if err != nil {
		return nil, err
	}
	offsets := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		offsets[o.Partition] = kgo.NewOffset().AtStart()
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var out []*kgo.Record
	for len(remaining) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w (still waiting for %v)", topic, err, remaining)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := remaining[r.Partition]; ok && r.Offset >= end-1 {
				delete(remaining, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out, nil
}

type dist struct{ p50, p99, max float64 }

func percentiles(v []float64) dist {
	if len(v) == 0 {
		return dist{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return dist{p50: at(0.50), p99: at(0.99), max: s[len(s)-1]}
}

// profileHighlights summarises a CPU profile with go tool pprof: the
// functions with the most flat time, and cumulative time by package.
func profileHighlights(ctx context.Context, binary, profile string) string {
	if profile == "" {
		return ""
	}
	var sb strings.Builder
	for _, args := range [][]string{
		{"-top", "-nodecount=25"},
		{"-top", "-cum", "-nodecount=40"},
	} {
		cmd := exec.CommandContext(ctx, "go", append(append([]string{"tool", "pprof"}, args...), binary, profile)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Sprintf("pprof failed: %v\n%s", err, out)
		}
		sb.WriteString("$ go tool pprof " + strings.Join(args, " ") + "\n")
		sb.Write(trimPprof(out))
		sb.WriteString("\n")
	}
	return sb.String()
}

// trimPprof drops pprof's preamble lines about files and build ids.
func trimPprof(out []byte) []byte {
	var keep [][]byte
	for _, l := range bytes.Split(out, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("File:")) || bytes.HasPrefix(l, []byte("Build ID:")) || bytes.HasPrefix(l, []byte("Type:")) || bytes.HasPrefix(l, []byte("Time:")) {
			continue
		}
		keep = append(keep, l)
	}
	return bytes.Join(keep, []byte("\n"))
}

func shortKeys(n int) string {
	if n >= 1_000_000 {
		return strconv.Itoa(n/1_000_000) + "m"
	}
	return strconv.Itoa(n/1000) + "k"
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

// runEngine runs the Go micro-benchmarks of the engine, the parser, ingest
// (a real broker topic against a plain consumer) and the Redis checkpoint
// and recovery.
func (b *bench) runEngine(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", "3x",
		"./microbatch/", "./internal/weblog/", "./ingest/", "./state/")
	cmd.Dir = b.root
	out, err := cmd.CombinedOutput()
	if err2 := os.WriteFile(filepath.Join(b.dir, "engine.txt"), out, 0o644); err2 != nil {
		return err2
	}
	if err != nil {
		return fmt.Errorf("go test -bench: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name := strings.ToLower(strings.NewReplacer("/", "_", "-", "_", "=", "_", ".", "_").Replace(m[1]))
		f := strings.Fields(m[4])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			switch unit {
			case "lines/s", "plain-lines/s", "ratio_vs_plain", "x-hand", "B/key", "ns/op", "ns/slide",
				"ms/batch", "ms-to-first-batch", "load-state-ms":
				b.figure("engine_"+name+"_"+strings.NewReplacer("/", "_per_", "-", "_").Replace(unit), v, unit)
			}
		}
	}
	b.engineOut = string(out)
	return nil
}
