package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// smallBatchLines is the size of a small batch (issue #14, part 2): where
// a batch's fixed costs — recording its plan, preparing its state, the
// Kafka transaction, the commit — weigh against its lines.
const smallBatchLines = 50_000

// overheadKeys is how many keys every batch of the overhead runs changes.
const overheadKeys = 10_000

// runSmall measures small batches on a topic of BENCH_SMALL_LINES lines of
// the weblog generator (as the main topic, BENCH_IPS addresses), drained in
// batches of 50k lines: dstream against the plain consumer and the raw
// fetch on the same topic, in rounds (fetch, consumer, dstream; twice in
// the full run), the best of each kept.
//
// Then the per-batch overhead with 10k changed keys: a topic of the same
// size whose lines cycle through 10k IPs (so every batch, whatever its
// size, changes exactly 10k keys of the window counts and of the totals) is
// drained in batches of 50k, 200k and 500k lines. A run's wall time is
// T(n) = a + n·o for n batches: the lines cost the same whatever the batch
// size, so o, the least-squares slope of T over n, is what a batch costs
// beyond its lines — its fixed costs and the work on its 10k keys. The
// engine's timings of the 50k-line run say where it goes.
func (b *bench) runSmall(ctx context.Context) error {
	lines := b.cfg.smallLines
	batches := int(max(1, lines/smallBatchLines))
	var d *dataset
	err := b.timed("pre-load small", func() error {
		var err error
		d, err = preload(ctx, b.broker.Addr(), loadSpec{topic: "small", lines: lines, batches: batches,
			src: generatorLines{newGenerator(b.cfg.ips)}, keepSeq: true}, b.dir)
		return err
	})
	if err != nil {
		return err
	}
	if err := warmReads(ctx, b.broker.Addr(), d); err != nil {
		return err
	}
	want := d.expected()
	perBatch := d.perPart * int64(d.parts)
	var fetches, consumers, dstreams, alones []row
	var firstRun *dstreamRun
	// run drains the topic with dstream, its batches committing together
	// when they wait for a commit (group 0: the default) or each alone
	// (group 1): the same run of the engine with and without group commit.
	run := func(name string, group int, profile bool) (row, *dstreamRun, error) {
		r, err := b.dstreamCatchUp(ctx, d, catchUp{name: name, profile: profile, totals: true, group: group})
		if err != nil {
			return row{}, nil, err
		}
		ok, detail := d.checkTotals(r.totals)
		got, err := b.readResults(ctx, r.out)
		if err != nil {
			return row{}, nil, err
		}
		ok2, detail2 := checkResults(want, got, d.batches, true)
		return row{name: name, lines: r.report.Lines, seconds: r.report.Seconds, rss: r.rss, cpu: r.cpu, brokerCPU: r.broker,
			correct: ok && ok2, detail: fmt.Sprintf("%s; %s (with totals and countries, read back from the output topic); %d commits",
				detail, detail2, r.report.Commits)}, r, nil
	}
	commits := map[string]int{}
	for round := range b.cfg.rounds {
		f, _, err := b.fetchRow(ctx, d, fmt.Sprintf("small-fetch-%d", round))
		if err != nil {
			return err
		}
		fetches = append(fetches, f)
		c, err := b.consumerRow(ctx, d, fmt.Sprintf("small-consumer-%d", round))
		if err != nil {
			return err
		}
		consumers = append(consumers, c)
		ds, r, err := run(fmt.Sprintf("small-dstream-%d", round), 0, round == 0)
		if err != nil {
			return err
		}
		dstreams = append(dstreams, ds)
		commits[ds.name] = r.report.Commits
		if round == 0 {
			firstRun = r
			b.smallProf = profileHighlights(ctx, b.self, r.profile)
		}
		alone, _, err := run(fmt.Sprintf("small-alone-%d", round), 1, false)
		if err != nil {
			return err
		}
		alones = append(alones, alone)
	}
	f, c, ds, alone := best(fetches), best(consumers), best(dstreams), best(alones)
	batchesPerCommit := float64(d.batches) / float64(max(1, commits[ds.name]))
	f.name, c.name, ds.name, alone.name = "fetch", "consumer", "dstream", "dstream, every batch committed alone"
	for _, r := range []row{f, c, ds, alone} {
		b.addRow("small", r)
	}
	b.notes = append(b.notes, fmt.Sprintf("small batches (%d batches of %d lines), every round's lines/s: fetch %s; consumer %s; dstream %s; dstream committing every batch alone %s (the best of each is its row)",
		d.batches, perBatch, rates(fetches), rates(consumers), rates(dstreams), rates(alones)))
	b.figure("small_fetch_lines_per_s", f.rate(), "lines/s")
	b.figure("small_consumer_lines_per_s", c.rate(), "lines/s")
	b.figure("small_dstream_lines_per_s", ds.rate(), "lines/s")
	b.figure("small_dstream_alone_lines_per_s", alone.rate(), "lines/s")
	b.figure("small_batches_per_commit", batchesPerCommit, "batches")
	if ds.correct && c.correct {
		b.figure("ratio_small_dstream_vs_consumer", ds.rate()/c.rate(), "x")
	}
	if ds.correct && f.correct {
		b.figure("ratio_small_dstream_vs_fetch", ds.rate()/f.rate(), "x")
	}
	if ds.correct && alone.correct {
		b.figure("ratio_small_grouped_vs_alone", ds.rate()/alone.rate(), "x")
	}
	if big, ok := b.rowNamed("dstream"); ok && big.correct && ds.correct {
		b.figure("ratio_small_dstream_vs_large_batches", ds.rate()/big.rate(), "x")
	}
	pm := percentiles(firstRun.report.ProcessingMS)
	b.notes = append(b.notes, fmt.Sprintf("small batches, dstream's first round: processing per batch p50 %.1f ms, p99 %.1f ms; wall time in I/O calls: %s",
		pm.p50, pm.p99, firstRun.report.Timings))
	return b.runOverhead(ctx, lines)
}

// runOverhead derives the per-batch overhead with 10k changed keys (see
// runSmall).
func (b *bench) runOverhead(ctx context.Context, lines int64) error {
	var d *dataset
	err := b.timed("pre-load small-keys", func() error {
		var err error
		d, err = preload(ctx, b.broker.Addr(), loadSpec{topic: "small-keys", lines: lines, batches: int(max(1, lines/smallBatchLines)),
			src: &cyclingLines{n: overheadKeys}}, b.dir)
		return err
	})
	if err != nil {
		return err
	}
	type point struct {
		n       int
		seconds []float64
		run     *dstreamRun
	}
	var pts []*point
	for _, per := range []int64{smallBatchLines, 200_000, 500_000} {
		n := int(max(1, lines/per))
		if len(pts) > 0 && pts[len(pts)-1].n == n {
			continue
		}
		pts = append(pts, &point{n: n})
	}
	for round := range b.cfg.rounds {
		for _, pt := range pts {
			dn := d.withBatches(pt.n)
			pt.n = dn.batches
			r, err := b.dstreamCatchUp(ctx, dn, catchUp{name: fmt.Sprintf("overhead-%d-%d", pt.n, round)})
			if err != nil {
				return err
			}
			if ok, detail := r.check(dn); !ok {
				return fmt.Errorf("overhead run of %d batches: wrong answer: %s", pt.n, detail)
			}
			pt.seconds = append(pt.seconds, r.report.Seconds)
			if pt.run == nil {
				pt.run = r
			}
		}
	}
	// Least squares of the best time over the batches.
	var xs, ys []float64
	var desc []string
	for _, pt := range pts {
		t := slices.Min(pt.seconds)
		xs, ys = append(xs, float64(pt.n)), append(ys, t)
		desc = append(desc, fmt.Sprintf("%d batches of %d lines: %s s", pt.n, lines/int64(pt.n), joinFloats(pt.seconds, "%.2f")))
	}
	slope, intercept := fitLine(xs, ys)
	b.figure("small_overhead_ms_per_batch", slope*1000, "ms")
	small := pts[0].run.report
	for _, call := range []string{"store.RecordPlan", "store.Prepare", "store.Commit", "sink.WriteBatches", "source.Cut", "source.Read"} {
		if c, ok := small.Calls[call]; ok {
			b.figure("small_batch_"+figureName(strings.ReplaceAll(strings.ToLower(call), ".", "_"))+"_ms", c.meanMS(), "ms")
		}
	}
	pm := percentiles(small.ProcessingMS)
	b.figure("small_batch_processing_p50_ms", pm.p50, "ms")
	b.notes = append(b.notes, fmt.Sprintf("per-batch overhead with %d changed keys: %s (best of %d rounds each; least squares: %.1f ms a batch, %.2f s for the lines); the %d-batch run: processing per batch p50 %.1f ms; wall time in I/O calls: %s",
		overheadKeys, strings.Join(desc, "; "), b.cfg.rounds, slope*1000, intercept, pts[0].n, pm.p50, small.Timings))
	return nil
}

// best is the fastest right row of rows (the first if none is right).
func best(rows []row) row {
	out := rows[0]
	for _, r := range rows[1:] {
		if r.correct && (!out.correct || r.rate() > out.rate()) {
			out = r
		}
	}
	return out
}

func rates(rows []row) string {
	var s []string
	for _, r := range rows {
		s = append(s, human3(r.rate()))
	}
	return strings.Join(s, ", ")
}

func joinFloats(v []float64, format string) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf(format, x))
	}
	return strings.Join(s, ", ")
}

// fitLine fits y = intercept + slope·x by least squares.
func fitLine(xs, ys []float64) (slope, intercept float64) {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0, sy / n
	}
	slope = (n*sxy - sx*sy) / den
	return slope, (sy - slope*sx) / n
}
