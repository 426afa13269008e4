package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// runStructured runs bench/structured (TopIps.java): the job on Spark
// Structured Streaming, on the JVM with Spark SQL's built-in functions,
// reading the topic with the Kafka source in triggers of one batch's lines
// (maxOffsetsPerTrigger) until it has read what the topic held at its start
// (Trigger.AvailableNow). The time counts from the start of its two queries
// to their end (the JVM's and the session's start are not counted).
// Checked: every window's top 3 (IPs, counts and countries) and every IP's
// final total. A ranking's running total is not checked: Structured
// Streaming has no running total as of an event-time window's end (see
// TopIps.java).
func (b *bench) runStructured(ctx context.Context) error {
	dir := filepath.Join(b.dir, "structured")
	if err := os.MkdirAll(filepath.Join(dir, "checkpoints"), 0o755); err != nil {
		return err
	}
	cores := strconv.Itoa(runtime.NumCPU())
	args := append(append(append([]string{}, jvmOpens...), b.jfrFlags("structured")...), "-Xms1g", "-Xmx4g",
		"-cp", b.peerClasspath("structured"), "io.dstream.bench.TopIps",
		"--bootstrap", b.broker.Addr(), "--input", b.main.topic, "--countries", b.main.countriesFile,
		"--checkpoints", filepath.Join(dir, "checkpoints"), "--out-dir", dir,
		"--max-per-trigger", strconv.FormatInt(b.main.perPart*partitions, 10),
		"--master", "local["+cores+"]", "--shuffle-partitions", cores)
	cmd := exec.CommandContext(ctx, "java", args...)
	// Spark binds its driver to the host's first interface otherwise: keep
	// it on loopback with the broker.
	cmd.Env = append(os.Environ(), "SPARK_LOCAL_IP=127.0.0.1")
	cpu0 := b.brokerCPU()
	p, err := start(b.dir, "structured", cmd, true)
	if err != nil {
		return err
	}
	defer p.kill()
	line, err := p.waitFor("SECONDS", 60*time.Minute)
	if err != nil {
		return err
	}
	seconds, err := strconv.ParseFloat(strings.Fields(line)[1], 64)
	if err != nil {
		return fmt.Errorf("structured: %q: %w", line, err)
	}
	if err := p.wait(2 * time.Minute); err != nil {
		return err
	}
	brokerCPU := b.brokerCPU() - cpu0
	if err := os.RemoveAll(filepath.Join(dir, "checkpoints")); err != nil {
		return err
	}
	b.profilePeer(ctx, "structured")
	totals, err := readTotals(filepath.Join(dir, "structured-totals.txt"))
	if err != nil {
		return err
	}
	got, err := readStructuredTop(filepath.Join(dir, "structured-top.txt"))
	if err != nil {
		return err
	}
	ok, detail := b.main.checkTotals(totals)
	ok2, detail2 := checkRankings(b.want, got, b.main.batches, false, true)
	var lines int64
	for _, n := range totals {
		lines += n
	}
	b.rows = append(b.rows, row{name: "structured", lines: lines, seconds: seconds, rss: p.peakRSS(),
		cpu: p.cpuSeconds(), brokerCPU: brokerCPU, correct: ok && ok2,
		detail: detail + "; " + detail2 + " (counts and countries; its running totals are as of a trigger, not a window: not comparable)"})
	return nil
}

// readStructuredTop reads "windowEndMillis rank ip count total country" lines.
func readStructuredTop(path string) (map[int][]result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	got := map[int][]result{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) != 6 {
			return nil, fmt.Errorf("%s: %q is not \"end rank ip count total country\"", path, sc.Text())
		}
		end, err1 := strconv.ParseInt(fl[0], 10, 64)
		rank, err2 := strconv.Atoi(fl[1])
		n, err3 := strconv.ParseInt(fl[3], 10, 64)
		total, err4 := strconv.ParseInt(fl[4], 10, 64)
		for _, err := range []error{err1, err2, err3, err4} {
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %w", path, sc.Text(), err)
			}
		}
		batch := int(time.UnixMilli(end).Sub(epoch) / interval)
		got[batch] = append(got[batch], result{Batch: batch, Rank: rank, IP: fl[2], Count: n, Total: total, Country: fl[5]})
	}
	return got, sc.Err()
}
