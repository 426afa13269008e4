package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/microbatch"
)

const benchPartitions = 4

// benchData is a topic of web-log lines on a broker of the benchmarks' own,
// loaded once per test binary and closed by TestMain.
var benchData struct {
	once   sync.Once
	err    error
	broker *kafkatest.Broker
	topic  string
	lines  int64
	ips    map[string]int64 // what counting every line's IP must give
}

func closeBenchBroker() {
	if b := benchData.broker; b != nil {
		if err := b.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}

// benchTopic starts a broker tuned for throughput (the tests' shared one
// runs a small, C1-only JVM) and loads it with DSTREAM_BENCH_LINES lines
// (default 2,000,000) of internal/weblog's generator over 4 partitions, as
// cmd/logsender produces them (franz-go's default snappy batches).
func benchTopic(b *testing.B) {
	b.Helper()
	benchData.once.Do(func() {
		lines := int64(2_000_000)
		if v := os.Getenv("DSTREAM_BENCH_LINES"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < benchPartitions {
				benchData.err = fmt.Errorf("DSTREAM_BENCH_LINES=%q: want a count of lines ≥ %d", v, benchPartitions)
				return
			}
			lines = n
		}
		ctx := context.Background()
		br, err := kafkatest.Start(ctx, kafkatest.Options{
			JVMFlags: []string{"-Xms1g", "-Xmx1g", "-XX:+UseParallelGC", "-XX:-UsePerfData", "-Djava.awt.headless=true"},
			Properties: map[string]string{
				"num.io.threads":      "4",
				"num.network.threads": "3",
			},
		})
		if err != nil {
			benchData.err = err
			return
		}
		benchData.broker, benchData.topic, benchData.lines = br, "weblog", lines
		if err := br.CreateTopic(ctx, benchData.topic, benchPartitions, nil); err != nil {
			benchData.err = err
			return
		}
		benchData.ips, benchData.err = load(ctx, br, benchData.topic, lines)
		if benchData.err == nil {
			// A first read warms the broker's JIT and page cache up, so
			// that whichever benchmark runs first is not penalized.
			benchData.err = warmUp()
		}
	})
	if errors.Is(benchData.err, kafkatest.ErrNotInstalled) && os.Getenv("DSTREAM_REQUIRE_IT") != "1" {
		b.Skipf("%v (set DSTREAM_REQUIRE_IT=1 to fail instead of skipping)", benchData.err)
	}
	if benchData.err != nil {
		b.Fatal(benchData.err)
	}
}

// load produces lines round-robin to the partitions and returns the count
// of every IP.
func load(ctx context.Context, br *kafkatest.Broker, topic string, lines int64) (map[string]int64, error) {
	started := time.Now()
	cl, err := br.Client(kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	gen := weblog.NewGenerator(1, 5000)
	ips := map[string]int64{}
	var mu sync.Mutex
	var firstErr error
	for range lines {
		line := gen.Append(nil)
		ips[string(ipOf(line))]++
		cl.Produce(ctx, &kgo.Record{Value: line}, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				firstErr = cmpOr(firstErr, err)
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, fmt.Errorf("load %d lines: %w", lines, firstErr)
	}
	fmt.Fprintf(os.Stderr, "bench: loaded %d lines into %s (%d partitions) in %s\n", lines, topic, benchPartitions, time.Since(started).Round(time.Millisecond))
	return ips, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// ipOf returns the second space-separated field of a web-log line.
func ipOf(line []byte) []byte {
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return nil
	}
	line = line[i+1:]
	if j := bytes.IndexByte(line, ' '); j >= 0 {
		line = line[:j]
	}
	return line
}

// BenchmarkRead reads every line of a pre-loaded 4-partition topic on a real
// broker and counts the lines of every IP, with a plain franz-go consumer
// (ConsumePartitions from the start, read_committed) and with Source,
// cutting batches under a rate cap that makes 10 of them and reading each.
// Every iteration does both, in alternating order and each after a GC, so
// that a busy machine or a warming broker weighs on both alike. It reports
// ingest's lines/s, the plain consumer's plain-lines/s and their ratio,
// ratio_vs_plain; ns/op is the time of both reads. As the broker shares the
// machine, the CPU time the test process spends per line, cpu-ns/line and
// plain-cpu-ns/line, is the steadier comparison of the two clients;
// cut-ms/batch is the time ingest spends planning a batch.
//
//	DSTREAM_BENCH_LINES=10000000 go test -run '^$' -bench Read -benchtime 5x ./ingest/
func BenchmarkRead(b *testing.B) {
	benchTopic(b)
	cutTime = 0
	var plain, ingest, plainCPU, ingestCPU time.Duration
	var batches int64
	timed := func(read func() (int64, int64, map[string]int64, error), wall, cpu *time.Duration) {
		runtime.GC()
		started, startedCPU := time.Now(), cpuTime()
		n, k, ips, err := read()
		*wall += time.Since(started)
		*cpu += cpuTime() - startedCPU
		check(b, n, ips, err)
		batches += k
	}
	plainRead := func() (int64, int64, map[string]int64, error) {
		n, ips, err := readPlain()
		return n, 0, ips, err
	}
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			timed(plainRead, &plain, &plainCPU)
			timed(readIngest, &ingest, &ingestCPU)
		} else {
			timed(readIngest, &ingest, &ingestCPU)
			timed(plainRead, &plain, &plainCPU)
		}
		i++
	}
	lines := float64(benchData.lines) * float64(b.N) // by each reader
	b.ReportMetric(lines/ingest.Seconds(), "lines/s")
	b.ReportMetric(lines/plain.Seconds(), "plain-lines/s")
	b.ReportMetric(plain.Seconds()/ingest.Seconds(), "ratio_vs_plain")
	b.ReportMetric(float64(batches)/float64(b.N), "batches")
	b.ReportMetric(cutTime.Seconds()*1000/float64(batches), "cut-ms/batch")
	if ingestCPU > 0 {
		b.ReportMetric(float64(ingestCPU.Nanoseconds())/lines, "cpu-ns/line")
		b.ReportMetric(float64(plainCPU.Nanoseconds())/lines, "plain-cpu-ns/line")
	}
}

// warmUp reads the topic once, untimed.
func warmUp() error {
	n, _, err := readPlain()
	if err == nil && n != benchData.lines {
		err = fmt.Errorf("warm-up read %d lines of %d", n, benchData.lines)
	}
	return err
}

// readPlain counts the topic's lines by IP with a plain franz-go consumer.
func readPlain() (lines int64, ips map[string]int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	starts := map[int32]kgo.Offset{}
	for p := range int32(benchPartitions) {
		starts[p] = kgo.NewOffset().AtStart()
	}
	cl, err := benchData.broker.Client(kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{benchData.topic: starts}))
	if err != nil {
		return 0, nil, err
	}
	defer cl.Close()
	ips = make(map[string]int64, len(benchData.ips))
	for lines < benchData.lines {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			return lines, ips, fmt.Errorf("plain consumer, after %d lines: %w", lines, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			ips[string(ipOf(r.Value))]++
			lines++
		})
	}
	return lines, ips, nil
}

// readIngest counts the topic's lines by IP with a Source, batch by batch.
// cutTime adds up the time readIngest spends in Cut.
var cutTime time.Duration

func readIngest() (lines, batches int64, ips map[string]int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl, err := benchData.broker.Client(kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return 0, 0, nil, err
	}
	defer cl.Close()
	perPartition := (benchData.lines + benchPartitions - 1) / benchPartitions
	src, err := ingest.New(cl, ingest.Config{Topic: benchData.topic, BatchInterval: time.Second,
		MaxRatePerPartition: (perPartition + 9) / 10})
	if err != nil {
		return 0, 0, nil, err
	}
	ips = make(map[string]int64, len(benchData.ips))
	count := func(r microbatch.Record) {
		ips[string(ipOf(r.Value))]++
		lines++
	}
	var after []microbatch.Range
	for lines < benchData.lines {
		t0 := time.Now()
		plan, err := src.Cut(ctx, after)
		cutTime += time.Since(t0)
		if err != nil {
			return lines, batches, ips, err
		}
		if err := src.Read(ctx, plan, count); err != nil {
			return lines, batches, ips, err
		}
		after = plan
		batches++
	}
	return lines, batches, ips, nil
}

func check(b *testing.B, lines int64, ips map[string]int64, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
	if lines != benchData.lines || !maps.Equal(ips, benchData.ips) {
		b.Fatalf("read %d lines of %d IPs, want %d lines of %d IPs with the counts produced",
			lines, len(ips), benchData.lines, len(benchData.ips))
	}
}
