package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/sinks"
)

// latencyIntervals are the batch intervals the latency stage runs: 100 ms,
// and 50 ms (issue #14's small-batch goal: p99 within 2 intervals).
var latencyIntervals = []time.Duration{100 * time.Millisecond, 50 * time.Millisecond}

// runLatency measures end-to-end latency at every latencyIntervals.
func (b *bench) runLatency(ctx context.Context) error {
	for _, iv := range latencyIntervals {
		if err := b.latencyAt(ctx, iv); err != nil {
			return fmt.Errorf("at %v batches: %w", iv, err)
		}
	}
	return nil
}

// latencyFigure names a latency figure: latency_<what> at 100 ms batches,
// latency_<interval>_<what> at others.
func latencyFigure(iv time.Duration, what string) string {
	if iv == 100*time.Millisecond {
		return "latency_" + what
	}
	return fmt.Sprintf("latency_%dms_%s", iv.Milliseconds(), what)
}

// latencyAt measures end-to-end latency: a logsender-style producer sends
// lines at a fixed rate while dstream runs the reference job on the wall
// clock with batches of latencyInterval (window 3 intervals, slide 1: the
// 30 s / 10 s job's shape, so every batch emits a ranking). A
// read_committed consumer of the output topic notes when each batch's
// results become visible; the dstream-offsets header names the input
// offsets the batch covered, and the latency of every line is that instant
// minus the instant it was produced.
func (b *bench) latencyAt(ctx context.Context, latencyInterval time.Duration) error {
	tag := fmt.Sprintf("lat%d", latencyInterval.Milliseconds())
	in, out, dlq := tag+"-logs", tag+"-out", tag+"-dlq"
	for _, t := range []struct {
		name string
		n    int32
	}{{in, partitions}, {out, 2}, {dlq, 1}} {
		if err := b.broker.CreateTopic(ctx, t.name, t.n, nil); err != nil {
			return err
		}
	}
	report := filepath.Join(b.dir, tag+"-report.json")
	p, err := start(b.dir, tag+"-dstream", exec.CommandContext(ctx, b.self, "child-dstream", "-mode", "latency",
		"-brokers", b.broker.Addr(), "-redis", b.redis.Addr(), "-topic", in, "-out", out, "-dlq", dlq,
		"-job", tag, "-interval", latencyInterval.String(), "-window", (3*latencyInterval).String(),
		"-slide", latencyInterval.String(), "-report", report), true)
	if err != nil {
		return err
	}
	defer p.kill()
	if _, err := p.waitFor("READY", 2*time.Minute); err != nil {
		return err
	}

	// The reader: when does each batch become visible?
	type seen struct {
		at     time.Time
		ranges []microbatch.Range
	}
	var (
		mu      sync.Mutex
		batches = map[string]seen{}
	)
	rctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	rd, err := kgo.NewClient(kgo.SeedBrokers(b.broker.Addr()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{out: {0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart()}}))
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer rd.Close()
		for rctx.Err() == nil {
			fs := rd.PollFetches(rctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				var id, offsets string
				for _, h := range r.Headers {
					switch h.Key {
					case sinks.HeaderBatchID:
						id = string(h.Value)
					case sinks.HeaderOffsets:
						offsets = string(h.Value)
					}
				}
				mu.Lock()
				if _, ok := batches[id]; !ok {
					ranges, _ := microbatch.ParseOffsetsHeader(in, offsets)
					batches[id] = seen{at: now, ranges: ranges}
				}
				mu.Unlock()
			})
		}
	})

	// The producer: logsender's settings, a fixed rate.
	rate, secs := b.cfg.latencyRate, b.cfg.latencySeconds
	produced := map[int32]map[int64]time.Time{}
	var pmu sync.Mutex
	pr, err := kgo.NewClient(kgo.SeedBrokers(b.broker.Addr()), kgo.DefaultProduceTopic(in), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	gen := newGenerator(b.cfg.ips)
	startAt := time.Now()
	total := int64(rate * secs)
	for sent := int64(0); sent < total; sent++ {
		if sent%int64(max(1, rate/100)) == 0 {
			due := startAt.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			time.Sleep(time.Until(due))
		}
		rec := &kgo.Record{Value: gen.Append(nil), Timestamp: time.Now()}
		pr.Produce(ctx, rec, func(r *kgo.Record, err error) {
			if err != nil {
				return
			}
			pmu.Lock()
			m := produced[r.Partition]
			if m == nil {
				m = map[int64]time.Time{}
				produced[r.Partition] = m
			}
			m[r.Offset] = r.Timestamp
			pmu.Unlock()
		})
	}
	if err := pr.Flush(ctx); err != nil {
		return err
	}
	pr.Close()
	time.Sleep(3 * time.Second) // the last batches
	p.signal(syscall.SIGTERM)
	waitErr := p.wait(time.Minute)
	stopReader()
	wg.Wait()
	if waitErr != nil {
		return waitErr
	}

	warm := startAt.Add(time.Second)
	var lat []float64
	observed := map[int32]map[int64]bool{}
	mu.Lock()
	for _, s := range batches {
		for _, r := range s.ranges {
			for off := r.From; off < r.Until; off++ {
				t, ok := produced[r.Partition][off]
				if !ok {
					continue
				}
				if observed[r.Partition] == nil {
					observed[r.Partition] = map[int64]bool{}
				}
				observed[r.Partition][off] = true
				if t.Before(warm) {
					continue
				}
				lat = append(lat, float64(s.at.Sub(t).Microseconds())/1000)
			}
		}
	}
	nBatches := len(batches)
	mu.Unlock()
	missing := 0
	for part, m := range produced {
		for off := range m {
			if !observed[part][off] {
				missing++
			}
		}
	}
	d := percentiles(lat)
	rep, err := readReport(report)
	if err != nil {
		return err
	}
	pm := percentiles(rep.ProcessingMS)
	cm := percentiles(rep.CheckpointMS)
	b.figure(latencyFigure(latencyInterval, "p50_ms"), d.p50, "ms")
	b.figure(latencyFigure(latencyInterval, "p99_ms"), d.p99, "ms")
	b.figure(latencyFigure(latencyInterval, "max_ms"), d.max, "ms")
	b.figure(latencyFigure(latencyInterval, "batch_processing_p50_ms"), pm.p50, "ms")
	b.figure(latencyFigure(latencyInterval, "batch_processing_p99_ms"), pm.p99, "ms")
	b.figure(latencyFigure(latencyInterval, "p99_intervals"), d.p99/float64(latencyInterval.Milliseconds()), "intervals")
	sd := percentiles(rep.SchedulingMS)
	b.latencies = append(b.latencies, fmt.Sprintf("**%v batches** (window %v, slide %v): %d lines at %d lines/s for %d s; %d lines measured (after 1 s warm-up) in %d output batches, %d produced lines never seen in the output (sent after the job stopped); "+
		"latency p50 %.1f ms, p99 %.1f ms (%.2f intervals), max %.1f ms; per batch: scheduling delay p50 %.1f ms, p99 %.1f ms; processing p50 %.1f ms, p99 %.1f ms, max %.1f ms, of which Redis checkpoint p50 %.1f ms, p99 %.1f ms; %d batches ran; wall time in I/O calls: %s",
		latencyInterval, 3*latencyInterval, latencyInterval, total, rate, secs, len(lat), nBatches, missing,
		d.p50, d.p99, d.p99/float64(latencyInterval.Milliseconds()), d.max, sd.p50, sd.p99, pm.p50, pm.p99, pm.max, cm.p50, cm.p99, rep.Batches, rep.Timings))
	return nil
}
