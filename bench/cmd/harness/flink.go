package main

import (
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
)

// runFlink runs bench/flink (TopIps.java): the job on Flink's DataStream API
// in a local MiniCluster, one slot per core, checkpoints every batch
// interval, results and final totals written with exactly-once KafkaSinks.
// The time counts from the job's RUNNING state to its last ranking: the job
// ends after that when the next checkpoint (up to an interval later) has
// committed the output, a wait that only a finite input has (a stream
// commits its output every interval, however fast it goes); that time is
// noted too. Checked like dstream:
// every window's top 3 with counts, running totals as of the window and
// countries, read back from the output topic with read_committed, and every
// IP's final total.
func (b *bench) runFlink(ctx context.Context) error {
	dir := filepath.Join(b.dir, "flink")
	if err := os.MkdirAll(filepath.Join(dir, "checkpoints"), 0o755); err != nil {
		return err
	}
	out, totalsTopic := "flink-out", "flink-totals"
	for _, t := range []string{out, totalsTopic} {
		if err := b.broker.CreateTopic(ctx, t, 2, nil); err != nil {
			return err
		}
	}
	args := append(append(append([]string{}, jvmOpens...), b.jfrFlags("flink")...), "-Xms1g", "-Xmx3g",
		"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-cp", b.peerClasspath("flink"), "io.dstream.bench.TopIps",
		"--bootstrap", b.broker.Addr(), "--input", b.main.topic, "--output", out, "--totals", totalsTopic,
		"--countries", b.main.countriesFile, "--checkpoints", filepath.Join(dir, "checkpoints"),
		"--parallelism", strconv.Itoa(runtime.NumCPU()),
		"--checkpoint-ms", strconv.FormatInt(interval.Milliseconds(), 10))
	cmd := exec.CommandContext(ctx, "java", args...)
	cpu0 := b.brokerCPU()
	p, err := start(b.dir, "flink", cmd, true)
	if err != nil {
		return err
	}
	defer p.kill()
	if _, err := p.waitFor("RUNNING", 3*time.Minute); err != nil {
		return err
	}
	line, err := p.waitFor("SECONDS", 60*time.Minute)
	if err != nil {
		return err
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		return fmt.Errorf("flink: %q is not \"SECONDS processing committed\"", line)
	}
	seconds, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return fmt.Errorf("flink: %q: %w", line, err)
	}
	committed, err := strconv.ParseFloat(f[2], 64)
	if err != nil {
		return fmt.Errorf("flink: %q: %w", line, err)
	}
	b.notes = append(b.notes, fmt.Sprintf("flink: last ranking after %.1f s, job done (output committed by the final checkpoint) after %.1f s", seconds, committed))
	b.figure("flink_committed_seconds", committed, "s")
	if err := p.wait(2 * time.Minute); err != nil {
		return err
	}
	brokerCPU := b.brokerCPU() - cpu0
	if err := os.RemoveAll(filepath.Join(dir, "checkpoints")); err != nil {
		return err
	}
	b.profilePeer(ctx, "flink")

	recs, err := readAll(ctx, b.broker.Addr(), out)
	if err != nil {
		return err
	}
	got := map[int][]result{}
	for _, r := range recs {
		var v struct {
			WindowEnd int64  `json:"window_end"`
			Rank      int    `json:"rank"`
			IP        string `json:"ip"`
			Count     int64  `json:"count"`
			Country   string `json:"country"`
			Total     int64  `json:"total"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			return fmt.Errorf("%s: %q: %w", out, r.Value, err)
		}
		batch := int(time.UnixMilli(v.WindowEnd).Sub(epoch) / interval)
		got[batch] = append(got[batch], result{Batch: batch, Rank: v.Rank, IP: v.IP, Count: v.Count, Total: v.Total, Country: v.Country})
	}
	// An IP's total is written each time it goes quiet; its last, and
	// largest, is its total at the end.
	trecs, err := readAll(ctx, b.broker.Addr(), totalsTopic)
	if err != nil {
		return err
	}
	totals := map[string]int64{}
	for _, r := range trecs {
		f := strings.Fields(string(r.Value))
		if len(f) != 2 {
			return fmt.Errorf("%s: %q is not \"ip total\"", totalsTopic, r.Value)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %q: %w", totalsTopic, r.Value, err)
		}
		totals[f[0]] = max(totals[f[0]], n)
	}
	ok, detail := b.main.checkTotals(totals)
	ok2, detail2 := checkResults(b.want, got, b.main.batches, true)
	var lines int64
	for _, n := range totals {
		lines += n
	}
	b.rows = append(b.rows, row{name: "flink", lines: lines, seconds: seconds, rss: p.peakRSS(),
		cpu: p.cpuSeconds(), brokerCPU: brokerCPU, correct: ok && ok2,
		detail: detail + "; " + detail2 + " (with totals and countries, read back from the output topic)"})
	return nil
}
