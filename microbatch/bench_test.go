package microbatch_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/rdd"
)

const (
	benchLinesPerBatch = 1_000_000
	benchDistinctIPs   = 10_000
	benchBatchKinds    = 4 // distinct batches, cycled
)

// benchBatches returns benchBatchKinds batches of web log lines whose source
// IPs follow a Zipf distribution over ~10k addresses, as real traffic does
// (a few IPs send much of it). Each batch's lines share one buffer.
var benchBatches = sync.OnceValue(func() [][]string {
	rng := rand.New(rand.NewPCG(42, 42))
	ips := make([]string, benchDistinctIPs)
	for i := range ips {
		ips[i] = fmt.Sprintf("%d.%d.%d.%d", 1+rng.IntN(223), rng.IntN(256), rng.IntN(256), 1+rng.IntN(254))
	}
	zipf := rand.NewZipf(rng, 1.1, 8, benchDistinctIPs-1)
	codes := []string{"200", "200", "200", "304", "404", "500"}
	out := make([][]string, benchBatchKinds)
	for b := range out {
		var buf strings.Builder
		ends := make([]int, 0, benchLinesPerBatch)
		for i := range benchLinesPerBatch {
			if i%1000 == 999 {
				ends = append(ends, buf.Len()) // an empty line now and then
				continue
			}
			fmt.Fprintf(&buf, "2016-12-06T08:58:%02d.%03d+0000 %s %s GET /codemove/%08X 0.%03d",
				i%60, i%1000, ips[zipf.Uint64()], codes[rng.IntN(len(codes))], rng.Uint32(), rng.IntN(1000))
			ends = append(ends, buf.Len())
		}
		all := buf.String()
		lines := make([]string, len(ends))
		start := 0
		for i, end := range ends {
			lines[i] = all[start:end]
			start = end
		}
		out[b] = lines
	}
	return out
})

// ipField returns the second space-separated field of a log line, the source
// IP, without allocating.
func ipField(line string) string {
	_, rest, ok := strings.Cut(line, " ")
	if !ok {
		return ""
	}
	ip, _, _ := strings.Cut(rest, " ")
	return ip
}

// cycle returns n batches, cycling through the generated ones.
func cycle(n int) [][]string {
	kinds := benchBatches()
	out := make([][]string, n)
	for i := range out {
		out[i] = kinds[i%len(kinds)]
	}
	return out
}

type ipCount = microbatch.Pair[string, int64]

func countOf(p ipCount) int64 { return p.Value }

// referenceJobs are formulations of the reference job: the top-3 source IPs
// over the last 30 s, every 10 s, with 10 s batches.
var referenceJobs = []struct {
	name  string
	build func(lines *microbatch.Stream[string]) *microbatch.Stream[ipCount]
}{
	// The product's formulation: counts reduced per batch, then the
	// window's counts kept incrementally (the batch entering is added, the
	// batch leaving subtracted), keys at zero dropped.
	{"incremental", func(lines *microbatch.Stream[string]) *microbatch.Stream[ipCount] {
		pairs := microbatch.Map(lines.Filter(func(l string) bool { return len(l) > 0 }),
			func(l string) ipCount { return microbatch.KV(ipField(l), int64(1)) })
		// ReduceByKeyAndWindow reduces each batch by key before windowing.
		counts := microbatch.ReduceByKeyAndWindow(pairs, add64, sub64, 30*time.Second, 10*time.Second,
			func(p ipCount) bool { return p.Value > 0 })
		return microbatch.Transform(counts, func(b []ipCount) []ipCount { return rdd.Top(b, 3, countOf) })
	}},
	// The lecture's structure, window first, with the cheap field parser:
	// every window recounts its three batches.
	{"window", func(lines *microbatch.Stream[string]) *microbatch.Stream[ipCount] {
		w := lines.Window(30*time.Second, 10*time.Second).Filter(func(l string) bool { return len(l) > 0 })
		pairs := microbatch.Map(w, func(l string) ipCount { return microbatch.KV(ipField(l), int64(1)) })
		counts := microbatch.ReduceByKey(pairs, add64)
		return microbatch.Transform(counts, func(b []ipCount) []ipCount { return rdd.Top(b, 3, countOf) })
	}},
	// The lecture's program literally: split every line, sortBy,
	// zipWithIndex, filter.
	{"lecture literal", func(lines *microbatch.Stream[string]) *microbatch.Stream[ipCount] {
		w := lines.Window(30*time.Second, 10*time.Second).Filter(func(l string) bool { return len(l) > 0 })
		fields := microbatch.Map(w, func(l string) []string { return strings.Split(l, " ") })
		pairs := microbatch.Map(fields, func(vals []string) ipCount { return microbatch.KV(vals[1], int64(1)) })
		counts := microbatch.ReduceByKey(pairs, add64)
		return microbatch.Transform(counts, topN[int64](3))
	}},
}

func add64(a, b int64) int64 { return a + b }
func sub64(a, b int64) int64 { return a - b }

// warmTimer times only the batches after the first `warm` of a job, so
// that windows are full when timing starts.
type warmTimer struct {
	b    *testing.B
	warm uint64
	cpu  time.Duration // CPU time at the start of timing
}

// option resets the benchmark timer when the warm-up batches are committed.
func (t *warmTimer) option() microbatch.Option {
	return microbatch.WithListener(func(s microbatch.BatchStats) {
		if s.ID == t.warm {
			runtime.GC()
			t.b.ResetTimer()
			t.cpu = cpuTime()
		}
	})
}

// run runs job and returns the CPU time of the timed batches.
func (t *warmTimer) run(job *microbatch.Job) time.Duration {
	runtime.GC()
	t.b.ReportAllocs()
	t.b.ResetTimer()
	t.cpu = cpuTime()
	if err := job.Run(context.Background()); err != nil {
		t.b.Fatal(err)
	}
	t.b.StopTimer()
	return cpuTime() - t.cpu
}

// BenchmarkReferenceJob runs the reference job over 1M-line batches; one
// op is one batch (one slide), timed once the window is full. It reports
// lines/s, CPU time per batch and, as x-hand and x-hand-cpu, the ratio of
// its time per batch to that of handLoop on the same batches, measured in
// the same run.
func BenchmarkReferenceJob(b *testing.B) {
	benchBatches()
	const warm = 3
	for _, ref := range referenceJobs {
		b.Run(ref.name, func(b *testing.B) {
			input := cycle(warm + b.N)
			var tops [][]ipCount
			timer := &warmTimer{b: b, warm: warm}
			job := microbatch.NewJob(10*time.Second,
				microbatch.WithClock(microbatch.NewVirtualClock(time.Unix(0, 0))),
				microbatch.WithBatchLimit(uint64(len(input))), timer.option())
			job.Checkpoint(microbatch.NewMemoryStore())
			ref.build(microbatch.QueueStream(job, input)).ForeachBatch(func(_ context.Context, _ microbatch.BatchInfo, top []ipCount) error {
				tops = append(tops, top)
				return nil
			})
			cpu := timer.run(job)
			elapsed := b.Elapsed()
			b.ReportMetric(float64(b.N*benchLinesPerBatch)/elapsed.Seconds(), "lines/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")

			runtime.GC()
			start, handCPU := time.Now(), cpuTime()
			want := handLoop(input)
			handWall, handCPU := time.Since(start), cpuTime()-handCPU
			perBatch := func(d time.Duration, n int) float64 { return float64(d) / float64(n) }
			b.ReportMetric(perBatch(elapsed, b.N)/perBatch(handWall, len(input)), "x-hand")
			if handCPU > 0 {
				b.ReportMetric(perBatch(cpu, b.N)/perBatch(handCPU, len(input)), "x-hand-cpu")
			}
			if !sameTops(tops, want) {
				b.Fatalf("the job's top-3 differ from the hand loop's:\n%v\n%v", tops, want)
			}
		})
	}
}

// BenchmarkHandLoop is the baseline: a hand-written loop over the same
// lines that parses the IP field, counts per batch in a map[string]int64,
// keeps the window's counts incrementally and picks the top 3.
func BenchmarkHandLoop(b *testing.B) {
	input := cycle(b.N)
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	handLoop(input)
	cpu = cpuTime() - cpu
	b.ReportMetric(float64(b.N*benchLinesPerBatch)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// handLoop computes the reference job by hand: after each batch, the top-3
// IPs of the last three batches. It counts each batch in a map, adds the
// batch to the window's counts and subtracts the batch leaving.
func handLoop(batches [][]string) [][]ipCount {
	const windowBatches = 3
	var ring []map[string]int64
	window := map[string]int64{}
	var tops [][]ipCount
	for _, batch := range batches {
		counts := make(map[string]int64, benchDistinctIPs)
		for _, line := range batch {
			if len(line) == 0 {
				continue
			}
			counts[ipField(line)]++
		}
		for ip, n := range counts {
			window[ip] += n
		}
		ring = append(ring, counts)
		if len(ring) > windowBatches {
			for ip, n := range ring[0] {
				if window[ip] -= n; window[ip] <= 0 {
					delete(window, ip)
				}
			}
			ring = ring[1:]
		}
		var top []ipCount
		for ip, n := range window {
			top = insertTop(top, microbatch.KV(ip, n), 3)
		}
		tops = append(tops, top)
	}
	return tops
}

// sameTops reports whether two runs ranked the same counts, and the same IPs
// where counts do not tie (the hand loop breaks ties in map order).
func sameTops(a, b [][]ipCount) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j].Value != b[i][j].Value {
				return false
			}
			tie := (j > 0 && a[i][j-1].Value == a[i][j].Value) || (j+1 < len(a[i]) && a[i][j+1].Value == a[i][j].Value)
			if !tie && a[i][j].Key != b[i][j].Key {
				return false
			}
		}
	}
	return true
}

// insertTop inserts p into top (sorted by count, largest first, ties in
// insertion order), keeping at most n.
func insertTop(top []ipCount, p ipCount, n int) []ipCount {
	i := len(top)
	for i > 0 && top[i-1].Value < p.Value {
		i--
	}
	if i >= n {
		return top
	}
	top = append(top, p)
	copy(top[i+1:], top[i:])
	top[i] = p
	if len(top) > n {
		top = top[:n]
	}
	return top
}

// BenchmarkReduceByKeyAndWindow counts 1M distinct keys over a window of
// `length` 10 s batches sliding every batch, with an inverse (the window's
// counts kept as state, updated by the entering and leaving batch) and
// without (every window recounted). Every batch holds 1M records drawn
// uniformly from the keys. Timing starts once the window is full. It
// reports wall and CPU ns per slide and the heap the job holds per key in
// the window after the run: checkpointed state with the MemoryStore's copy
// of it, window buffers, and the folds' scratch maps.
func BenchmarkReduceByKeyAndWindow(b *testing.B) {
	const distinctKeys = 1_000_000
	keys := make([]string, distinctKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%07d", i)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	kinds := make([][]microbatch.Pair[string, int64], benchBatchKinds)
	for i := range kinds {
		kinds[i] = make([]microbatch.Pair[string, int64], distinctKeys)
		for j := range kinds[i] {
			kinds[i][j] = microbatch.KV(keys[rng.IntN(distinctKeys)], int64(1))
		}
	}
	for _, length := range []int{3, 6} {
		for _, inverse := range []bool{true, false} {
			name := fmt.Sprintf("window=%d/inverse=%v", length, inverse)
			b.Run(name, func(b *testing.B) {
				warm := length + 1
				input := make([][]microbatch.Pair[string, int64], warm+b.N)
				for i := range input {
					input[i] = kinds[i%len(kinds)]
				}
				var before runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				timer := &warmTimer{b: b, warm: uint64(warm)}
				job := microbatch.NewJob(10*time.Second,
					microbatch.WithClock(microbatch.NewVirtualClock(time.Unix(0, 0))),
					microbatch.WithBatchLimit(uint64(len(input))), timer.option())
				job.Checkpoint(microbatch.NewMemoryStore())
				var inv func(a, b int64) int64
				if inverse {
					inv = sub64
				}
				windowed := microbatch.ReduceByKeyAndWindow(microbatch.QueueStream(job, input), add64, inv,
					time.Duration(length)*10*time.Second, 10*time.Second, nil)
				var keysInWindow int
				windowed.ForeachBatch(func(_ context.Context, _ microbatch.BatchInfo, batch []microbatch.Pair[string, int64]) error {
					keysInWindow = len(batch)
					return nil
				})
				cpu := timer.run(job)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/slide")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/slide")
				var after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&after)
				if keysInWindow > 0 {
					b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(keysInWindow), "B/key")
				}
				runtime.KeepAlive(job)
				runtime.KeepAlive(input)
			})
		}
	}
}
