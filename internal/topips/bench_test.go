package topips_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/cputime"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/microbatch"
)

// cyclingSource is an in-memory topic of one partition whose line n comes
// from IP number n mod keys, as the harness's state stage writes them: every
// batch of batchLines lines changes min(batchLines, keys) keys, and after
// keys/batchLines batches the state holds every key. Batches are cut
// batchLines lines apart.
type cyclingSource struct {
	lines      [][]byte // one period of the topic
	batchLines int64
}

func newCyclingSource(keys, batchLines int) *cyclingSource {
	period := max(keys, batchLines)
	period = (period + keys - 1) / keys * keys // whole cycles of the keys
	s := &cyclingSource{lines: make([][]byte, period), batchLines: int64(batchLines)}
	for n := range s.lines {
		k := n % keys
		s.lines[n] = fmt.Appendf(nil, "2016-12-06T08:58:35.318+0000 %d.%d.%d.7 200 GET /codemove/TTCENCUFMH3C 0.026",
			10+k>>16, k>>8&0xff, k&0xff)
	}
	return s
}

func (s *cyclingSource) Topic() string { return "logs" }

func (s *cyclingSource) Cut(_ context.Context, after []microbatch.Range) ([]microbatch.Range, error) {
	from := int64(0)
	if len(after) > 0 {
		from = after[0].Until
	}
	return []microbatch.Range{{Topic: "logs", Partition: 0, From: from, Until: from + s.batchLines}}, nil
}

func (s *cyclingSource) Read(_ context.Context, ranges []microbatch.Range, emit func(microbatch.Record)) error {
	for _, r := range ranges {
		for off := r.From; off < r.Until; off++ {
			emit(microbatch.Record{Partition: r.Partition, Offset: off, Value: s.lines[off%int64(len(s.lines))]})
		}
	}
	return nil
}

// BenchmarkStateScale runs the reference job in process (in-memory topic,
// store and sink: no broker, no Redis) over batches of 200k lines cycling
// through 10k and 1M IPs, as the harness's state stage does; one op is one
// batch, timed once the window is full and every key has state. It reports
// the job's CPU time a line, which, unlike the harness's rates, does not
// move with the broker's share of the machine: the 1M-key figure over the
// 10k one is the CPU side of #14's state-at-scale ratio.
func BenchmarkStateScale(b *testing.B) {
	const batchLines = 200_000
	b.Run("fill/keys=1000000", func(b *testing.B) {
		// From no state to 1M keys: 5 batches of 200k new keys each.
		src := newCyclingSource(1_000_000, batchLines)
		var cpu time.Duration
		for b.Loop() {
			j := microbatch.NewJob(10*time.Second,
				microbatch.WithClock(microbatch.NewVirtualClock(time.Unix(0, 0))),
				microbatch.WithBatchLimit(5))
			j.Checkpoint(microbatch.NewMemoryStore())
			topips.Build(j, src, microbatch.NewMemorySink(), topips.Config{Window: 30 * time.Second, Slide: 10 * time.Second, TopN: 3})
			cpu0 := cputime.Process()
			if err := j.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
			cpu += cputime.Process() - cpu0
		}
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*5*batchLines), "cpu-ns/line")
	})
	for _, keys := range []int{10_000, 1_000_000} {
		b.Run("keys="+strconv.Itoa(keys), func(b *testing.B) {
			src := newCyclingSource(keys, batchLines)
			warm := uint64(max(3, keys/batchLines)) + 1
			var cpu0 time.Duration
			j := microbatch.NewJob(10*time.Second,
				microbatch.WithClock(microbatch.NewVirtualClock(time.Unix(0, 0))),
				microbatch.WithBatchLimit(warm+uint64(b.N)),
				microbatch.WithListener(func(s microbatch.BatchStats) {
					if s.ID == warm {
						runtime.GC()
						b.ResetTimer()
						cpu0 = cputime.Process()
					}
				}))
			j.Checkpoint(microbatch.NewMemoryStore())
			topips.Build(j, src, microbatch.NewMemorySink(), topips.Config{Window: 30 * time.Second, Slide: 10 * time.Second, TopN: 3})
			if err := j.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu := cputime.Process() - cpu0
			b.ReportMetric(float64(b.N*batchLines)/b.Elapsed().Seconds(), "lines/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*batchLines), "cpu-ns/line")
		})
	}
}
