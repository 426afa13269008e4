package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// stateBatchLines is the lines of every batch of the state runs: the same
// for every number of keys, so that what differs between the runs' memory
// is the state, not the batches in flight.
const stateBatchLines = 200_000

// statePoint is one run of the state stage.
type statePoint struct {
	keys    int
	d       *dataset
	run     *dstreamRun // every batch but the last
	restart *dstreamRun // a new process: recovery, then the last batch
	// redisBytes is what Redis's used_memory grew by over the run;
	// segments and deltas the bytes of the job's state values in it.
	redisBytes         int64
	segments, deltas   int64
	segCount, delCount int64
	// rows are the rate runs, one a round: run's, then the repeats
	// (catch-ups on the same topic under new job names).
	rows       []row
	first      int   // the batches of a rate run
	firstLines int64 // and the lines they count
}

// runState runs the reference job on topics whose lines cycle through N
// distinct IPs, for each N of BENCH_STATE_KEYS (every batch changes
// min(N, 200k) keys; the running totals end with N keys). Each run stops one
// batch short of the topic's end; a second process then restarts the job
// (loads the state, rebuilds the window from its recorded plans) and runs
// the last batch: the time from its start to that batch's commit is the
// restart figure, and the totals it leaves are checked against the topic.
// The rate runs alternate BENCH_ROUNDS times (the largest of three or more
// key counts runs once); each key count's best rate is its figure, and the
// ratios are of the best rates.
//
// Memory per key, against the smallest run (10k keys, whose state is
// negligible, with batches of the same size): peak RSS of the child
// process (its VmHWM when its last batch committed, before anything reads
// the state back) and Go heap in use after a final GC, minus the same of
// the smallest run, divided by the difference in keys; Redis's used_memory
// after the run minus before it, divided by the keys.
func (b *bench) runState(ctx context.Context) error {
	rdb := b.redis.Client()
	defer rdb.Close()
	var pts []*statePoint
	for _, keys := range b.cfg.stateKeys {
		name := "state-" + shortKeys(keys)
		lines := max(b.cfg.stateLines, 2*int64(keys))
		lines = (lines + stateBatchLines - 1) / stateBatchLines * stateBatchLines
		pt := &statePoint{keys: keys}
		err := b.timed("pre-load "+name, func() error {
			var err error
			pt.d, err = preload(ctx, b.broker.Addr(), loadSpec{topic: name, lines: lines, batches: int(lines / stateBatchLines),
				src: &cyclingLines{n: keys}}, b.dir)
			return err
		})
		if err != nil {
			return err
		}
		d := pt.d
		used0, err := redisUsedMemory(ctx, rdb)
		if err != nil {
			return err
		}
		pt.first = d.batches - 1
		pt.firstLines = min(d.lines, int64(pt.first)*d.perPart*int64(d.parts))
		pt.run, err = b.dstreamCatchUp(ctx, d, catchUp{name: name + "-job", profile: true, batches: pt.first, checkLines: pt.firstLines})
		if err != nil {
			return err
		}
		used1, err := redisUsedMemory(ctx, rdb)
		if err != nil {
			return err
		}
		pt.redisBytes = used1 - used0
		pt.segments, pt.deltas, pt.segCount, pt.delCount, err = stateValues(ctx, rdb, name+"-job")
		if err != nil {
			return err
		}
		pt.restart, err = b.dstreamCatchUp(ctx, d, catchUp{name: name + "-restart", job: name + "-job", reuse: true, batches: 1, profile: true})
		if err != nil {
			return err
		}
		pts = append(pts, pt)

		r := pt.run
		ok, detail := r.check(d)
		ok2, detail2 := pt.restart.check(d)
		pt.rows = append(pt.rows, row{name: fmt.Sprintf("dstream, %s distinct IPs", human(float64(keys))),
			lines: r.report.Lines, seconds: r.report.Seconds, rss: r.report.PeakRSS, correct: ok && ok2,
			detail: fmt.Sprintf("%d batches of %d lines: %s; restarted for the last batch: %s", r.report.Batches, d.perPart*int64(d.parts), detail, detail2),
			cpu:    r.cpu, brokerCPU: r.broker})
		k := shortKeys(keys)
		b.figure("state_"+k+"_peak_rss_mb", float64(r.report.PeakRSS)/(1<<20), "MiB")
		b.figure("state_"+k+"_heap_mb", float64(r.report.HeapInuse)/(1<<20), "MiB")
		b.figure("state_"+k+"_redis_mb", float64(pt.redisBytes)/(1<<20), "MiB")
		b.figure("state_"+k+"_redis_bytes_per_key", float64(pt.redisBytes)/float64(keys), "B")
		b.figure("state_"+k+"_restart_ms_to_first_batch", ms(pt.restart.firstCommit()), "ms")
		b.figure("state_"+k+"_restart_peak_rss_mb", float64(pt.restart.report.PeakRSS)/(1<<20), "MiB")
		calls := pt.restart.report.Calls
		b.notes = append(b.notes, fmt.Sprintf("%s: %s lines/s over %d batches of %d lines; batch processing p50 %.0f ms; the job's CPU %.2f s in itself, %.2f s in the kernel (%d page faults) over %.2f s; Redis's CPU %.2f s, %.1f MiB received; wall time in I/O calls: %s",
			name, human3(float64(r.report.Lines)/r.report.Seconds), r.report.Batches, d.perPart*int64(d.parts),
			percentiles(r.report.ProcessingMS).p50, r.report.UserSeconds, r.report.SysSeconds, r.report.MinorFaults, r.report.Seconds, r.redis.cpu, float64(r.redis.received)/(1<<20), r.report.Timings))
		b.notes = append(b.notes, fmt.Sprintf("%s in Redis: %.1f MiB of used_memory for %d keys (%.1f B a key); the job's state values: %d segments of %.1f MiB, %d deltas of %.1f MiB (%.1f B a key together)",
			name, float64(pt.redisBytes)/(1<<20), keys, float64(pt.redisBytes)/float64(keys), pt.segCount, float64(pt.segments)/(1<<20),
			pt.delCount, float64(pt.deltas)/(1<<20), float64(pt.segments+pt.deltas)/float64(keys)))
		b.notes = append(b.notes, fmt.Sprintf("%s restart: %.0f ms from the process's start to its first batch committed (in the process: %.0f ms); load the state %.0f ms (%d operators), the window's plans %.0f ms, re-read the window's batches %.0f ms (%d reads), acquire %.0f ms; peak RSS %.0f MiB",
			name, ms(pt.restart.firstCommit()), float64(pt.restart.report.FirstCommitUnixNano-pt.restart.report.StartUnixNano)/1e6,
			calls["store.LoadState"].Seconds*1000, calls["store.LoadState"].N, calls["store.Plans"].Seconds*1000,
			calls["source.Read"].Seconds*1000, calls["source.Read"].N, calls["store.Acquire"].Seconds*1000,
			float64(pt.restart.report.PeakRSS)/(1<<20)))
		if keys == b.cfg.stateKeys[len(b.cfg.stateKeys)-1] {
			b.stateProf = profileHighlights(ctx, b.self, r.profile)
			b.stateProfName = name
		}
	}
	// The rates vary from run to run on a shared machine as much as the
	// ratios differ; like the other stages, the runs compared alternate
	// and the best of each is kept. The runs are short (1–2 s), and on
	// this VM the kernel's cost of the same page faults varies threefold
	// from run to run, so they alternate BENCH_STATE_ROUNDS times: the
	// best of two moved the ratio by ±0.1 with the same binary. The
	// largest of three or more key counts (10M: a long run, and its ratio
	// is only reported) runs once.
	for round := 1; round < b.cfg.stateRounds; round++ {
		for i, pt := range pts {
			if len(pts) >= 3 && i == len(pts)-1 {
				continue
			}
			name := fmt.Sprintf("state-%s-job-%d", shortKeys(pt.keys), round)
			r, err := b.dstreamCatchUp(ctx, pt.d, catchUp{name: name, batches: pt.first, checkLines: pt.firstLines})
			if err != nil {
				return err
			}
			ok, detail := r.check(pt.d)
			pt.rows = append(pt.rows, row{name: pt.rows[0].name, lines: r.report.Lines, seconds: r.report.Seconds, rss: r.report.PeakRSS,
				correct: ok, detail: fmt.Sprintf("round %d, %d batches: %s", round+1, r.report.Batches, detail), cpu: r.cpu, brokerCPU: r.broker})
		}
	}
	for _, pt := range pts {
		k := shortKeys(pt.keys)
		correct := true
		for _, r := range pt.rows {
			correct = correct && r.correct
		}
		b.addRow("state", best(pt.rows))
		b.figure("state_"+k+"_correct", boolFloat(correct), "")
		b.figure("state_"+k+"_lines_per_s", best(pt.rows).rate(), "lines/s")
		if len(pt.rows) > 1 {
			b.notes = append(b.notes, fmt.Sprintf("state-%s: every round's lines/s: %s (the best is its row and figure; the first round's process gives the memory figures)",
				k, rates(pt.rows)))
		}
	}
	if len(pts) < 2 {
		return nil
	}
	base := pts[0]
	baseRate := best(base.rows).rate()
	for _, pt := range pts[1:] {
		k := shortKeys(pt.keys)
		dk := float64(pt.keys - base.keys)
		b.figure("ratio_state_"+k+"_vs_"+shortKeys(base.keys), best(pt.rows).rate()/baseRate, "x")
		if len(pt.rows) == len(base.rows) && len(pt.rows) > 1 {
			// Round by round (each round runs the two back to back): the
			// middle of these says how far the best-against-best figure
			// is from a typical pair.
			var paired []float64
			for r := range pt.rows {
				paired = append(paired, pt.rows[r].rate()/base.rows[r].rate())
			}
			b.notes = append(b.notes, fmt.Sprintf("state-%s vs %s, round by round: %s", k, shortKeys(base.keys), joinFloats(paired, "%.2f×")))
			b.figure("ratio_state_"+k+"_vs_"+shortKeys(base.keys)+"_paired_median", percentiles(paired).p50, "x")
		}
		b.figure("state_"+k+"_rss_bytes_per_key", float64(pt.run.report.PeakRSS-base.run.report.PeakRSS)/dk, "B")
		b.figure("state_"+k+"_heap_bytes_per_key", (float64(pt.run.report.HeapInuse)-float64(base.run.report.HeapInuse))/dk, "B")
	}
	if len(pts) >= 3 {
		// The marginal cost of a key between the two largest runs, which
		// both hold the same window (3 batches' keys) beside their totals.
		hi, lo := pts[len(pts)-1], pts[len(pts)-2]
		dk := float64(hi.keys - lo.keys)
		b.figure("state_marginal_rss_bytes_per_key", float64(hi.run.report.PeakRSS-lo.run.report.PeakRSS)/dk, "B")
		b.figure("state_marginal_heap_bytes_per_key", (float64(hi.run.report.HeapInuse)-float64(lo.run.report.HeapInuse))/dk, "B")
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// redisUsedMemory is INFO memory's used_memory: the bytes Redis's allocator
// holds.
func redisUsedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO memory: %w", err)
	}
	v, err := infoNumber(info, "Memory", "used_memory")
	return int64(v), err
}

// infoNumber is the number INFO gave for key in section.
func infoNumber(info map[string]map[string]string, section, key string) (float64, error) {
	v, ok := info[section][key]
	if !ok {
		return 0, fmt.Errorf("redis INFO: no %s in section %s", key, section)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("redis INFO %s: %w", key, err)
	}
	return f, nil
}

// redisUse is what Redis has spent: CPU seconds and bytes received.
type redisUse struct {
	cpu      float64
	received int64
}

// redisUse reads Redis's CPU time (its own and its children's: an AOF
// rewrite forks) and input bytes so far (INFO cpu, stats).
func (b *bench) redisUse(ctx context.Context) (redisUse, error) {
	rdb := b.redis.Client()
	defer rdb.Close()
	info, err := rdb.InfoMap(ctx, "cpu", "stats").Result()
	if err != nil {
		return redisUse{}, fmt.Errorf("redis INFO cpu stats: %w", err)
	}
	var u redisUse
	for _, key := range []string{"used_cpu_user", "used_cpu_sys", "used_cpu_user_children", "used_cpu_sys_children"} {
		f, err := infoNumber(info, "CPU", key)
		if err != nil {
			return redisUse{}, err
		}
		u.cpu += f
	}
	received, err := infoNumber(info, "Stats", "total_net_input_bytes")
	u.received = int64(received)
	return u, err
}

// stateValues sums the lengths of job's state values in Redis: its
// operators' segments (fields s<i> of {dstream:<job>}:st:<op>) and deltas
// (d<n>).
func stateValues(ctx context.Context, rdb *redis.Client, job string) (segments, deltas, segCount, delCount int64, err error) {
	keys, err := rdb.Keys(ctx, "{dstream:"+job+"}:st:*").Result()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for _, key := range keys {
		fields, err := rdb.HKeys(ctx, key).Result()
		if err != nil {
			return 0, 0, 0, 0, err
		}
		for _, f := range fields {
			n, err := rdb.HStrLen(ctx, key, f).Result()
			if err != nil {
				return 0, 0, 0, 0, err
			}
			switch {
			case strings.HasPrefix(f, "s"):
				segments += n
				segCount++
			case strings.HasPrefix(f, "d"):
				deltas += n
				delCount++
			}
		}
	}
	return segments, deltas, segCount, delCount, nil
}
