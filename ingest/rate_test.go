package ingest_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func stats(sec int, records int, processing, delay time.Duration) microbatch.BatchStats {
	return microbatch.BatchStats{Time: t0.Add(time.Duration(sec) * time.Second), Records: records,
		ProcessingTime: processing, SchedulingDelay: delay}
}

// TestRateEstimator feeds the PID estimator (gains 1, 0.2, 0; interval 1 s;
// min rate 100) batch after batch and checks its limit against values
// computed by hand:
//
//	rate' = max(min, rate − 1·err − 0.2·hist − 0·dErr)
//	err   = rate − processed/processing time
//	hist  = scheduling delay · processing rate / interval
func TestRateEstimator(t *testing.T) {
	e := ingest.NewRateEstimator(time.Second, 100)
	for i, step := range []struct {
		name  string
		batch microbatch.BatchStats
		limit float64 // 0: no limit yet
	}{
		{"no batch yet", microbatch.BatchStats{}, 0},
		{"first batch only primes: rate 1000/0.5s = 2000", stats(1, 1000, 500*time.Millisecond, 0), 0},
		{"empty batches are ignored", stats(2, 0, time.Second, 0), 0},
		// processing rate 1000; err = 2000−1000 = 1000; hist 0
		// rate = 2000 − 1000 = 1000
		{"slower: 1000/1s", stats(2, 1000, time.Second, 0), 1000},
		// processing rate 500; err = 1000−500 = 500; hist = 2·500/1 = 1000
		// rate = 1000 − 500 − 0.2·1000 = 300
		{"slower and 2 s late: 500/1s", stats(3, 500, time.Second, 2*time.Second), 300},
		{"a batch at the same time is ignored", stats(3, 10, time.Second, 0), 300},
		{"a batch without processing time is ignored", stats(4, 10, 0, 0), 300},
		// processing rate 100; err = 300−100 = 200; hist = 5·100/1 = 500
		// rate = 300 − 200 − 0.2·500 = 0 → the min rate 100
		{"far behind: 100/1s, 5 s late", stats(4, 100, time.Second, 5*time.Second), 100},
		// processing rate 4000; err = 100−4000 = −3900; hist 0
		// rate = 100 + 3900 = 4000
		{"fast again: 1000/0.25s", stats(6, 1000, 250*time.Millisecond, 0), 4000},
		// processing rate 1250; err = 4000−1250 = 2750; hist = 0.5·1250/1 = 625
		// rate = 4000 − 2750 − 125 = 1125
		{"2500/2s, half a second late", stats(8, 2500, 2*time.Second, 500*time.Millisecond), 1125},
	} {
		if step.batch.Time != (time.Time{}) {
			e.Observe(step.batch)
		}
		got, ok := e.Limit()
		if want := step.limit != 0; ok != want || ok && math.Abs(got-step.limit) > 1e-9 {
			t.Fatalf("step %d (%s): limit %v, %v; want %v, %v", i, step.name, got, ok, step.limit, want)
		}
	}
}

// TestRateEstimatorMinRate: however slow the batches, the limit stays at or
// above the min rate (and at or above 1 record/s for a min rate below 1).
func TestRateEstimatorMinRate(t *testing.T) {
	for _, test := range []struct {
		minRate, want float64
	}{{100, 100}, {2.5, 2.5}, {0, 1}, {-5, 1}} {
		e := ingest.NewRateEstimator(time.Second, test.minRate)
		e.Observe(stats(1, 100000, time.Second, 0))
		for sec := 2; sec < 10; sec++ {
			e.Observe(stats(sec, 1, time.Minute, time.Hour))
		}
		if got, ok := e.Limit(); !ok || got != test.want {
			t.Errorf("min rate %v: limit %v, %v; want %v", test.minRate, got, ok, test.want)
		}
	}
}

// TestCutBackpressure: with backpressure, a batch takes ⌊limit × interval⌋
// records in all, shared among the partitions in proportion to what each
// may take, its backlog within MaxRatePerPartition (largest remainders
// first, then lower partitions). A batch at the min rate takes the min
// rate's worth whatever the skew.
func TestCutBackpressure(t *testing.T) {
	lags := []int{500, 100, 0, 25} // 625 in all
	e := newEnv(t, int32(len(lags)), nil)
	for p, n := range lags {
		if n > 0 {
			e.produce(int32(p), values("v", n)...)
		}
	}
	for _, test := range []struct {
		name     string
		interval time.Duration
		maxRate  int64
		batches  []microbatch.BatchStats // fed to the estimator
		want     []int64                 // Until of each partition
	}{
		{"no estimate yet: no bound", time.Second, 0,
			[]microbatch.BatchStats{stats(1, 1000, 500*time.Millisecond, 0)},
			[]int64{500, 100, 0, 25}},
		{"no estimate yet: the rate cap alone", time.Second, 30,
			nil,
			[]int64{30, 30, 0, 25}},
		// limit 300 × 1 s; shares 300·500/625 = 240, 300·100/625 = 48, 0, 300·25/625 = 12
		{"limit 300", time.Second, 0,
			[]microbatch.BatchStats{stats(1, 1000, 500*time.Millisecond, 0), stats(2, 1000, time.Second, 0), stats(3, 500, time.Second, 2*time.Second)},
			[]int64{240, 48, 0, 12}},
		// the min rate 100 × 1 s; shares 80, 16, 0, 4: 100 records, not
		// the 25 + 25 + 0 + 25 an even split would take
		{"at the min rate", time.Second, 0,
			[]microbatch.BatchStats{stats(1, 1000, 500*time.Millisecond, 0), stats(2, 1000, time.Second, 0), stats(3, 500, time.Second, 2*time.Second), stats(4, 100, time.Second, 5*time.Second)},
			[]int64{80, 16, 0, 4}},
		// 100 × 0.05 s = 5; shares 4, 0.8, 0, 0.2: 4 + 0 + 0 + 0 = 4, the
		// remainder 1 goes to the largest fraction, partition 1's
		{"remainders", 50 * time.Millisecond, 0,
			[]microbatch.BatchStats{stats(1, 1000, 500*time.Millisecond, 0), stats(2, 1000, time.Second, 0), stats(3, 500, time.Second, 2*time.Second), stats(4, 100, time.Second, 5*time.Second)},
			[]int64{4, 1, 0, 0}},
		// limit 300 with a cap of 20 per partition: the partitions may
		// take 20, 20, 0, 20, and the 300 cover all of it
		{"the rate cap binds", time.Second, 20,
			[]microbatch.BatchStats{stats(1, 1000, 500*time.Millisecond, 0), stats(2, 1000, time.Second, 0), stats(3, 500, time.Second, 2*time.Second)},
			[]int64{20, 20, 0, 20}},
		// limit 100 with a cap of 60: shares of 60, 60, 0, 25 (145 in
		// all) are 100·60/145 = 41.38, 41.38, 0, 100·25/145 = 17.24; the
		// one left over goes to partition 0, the lower of the two largest
		// remainders
		{"the rate cap and the min rate", time.Second, 60,
			[]microbatch.BatchStats{stats(1, 1000, 500*time.Millisecond, 0), stats(2, 1000, time.Second, 0), stats(3, 500, time.Second, 2*time.Second), stats(4, 100, time.Second, 5*time.Second)},
			[]int64{42, 41, 0, 17}},
		// limit 1125 × 1 s exceeds the 625 records there are: all of them
		{"limit above the backlog", time.Second, 0,
			[]microbatch.BatchStats{stats(1, 1000, 500*time.Millisecond, 0), stats(2, 1000, time.Second, 0), stats(3, 500, time.Second, 2*time.Second), stats(4, 100, time.Second, 5*time.Second), stats(6, 1000, 250*time.Millisecond, 0), stats(8, 2500, 2*time.Second, 500*time.Millisecond)},
			[]int64{500, 100, 0, 25}},
	} {
		t.Run(test.name, func(t *testing.T) {
			est := ingest.NewRateEstimator(test.interval, 100)
			for _, b := range test.batches {
				est.Observe(b)
			}
			src := e.source(ingest.Config{BatchInterval: test.interval, MaxRatePerPartition: test.maxRate},
				ingest.WithBackpressure(est))
			got := cut(t, src, nil)
			var want []microbatch.Range
			for p, until := range test.want {
				want = append(want, e.span(int32(p), 0, until))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("cut %v, want %v", got, want)
			}
		})
	}
}
