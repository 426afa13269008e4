package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/gcpolicy"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/internal/wiring"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/rdd"
	"github.com/dstream-io/dstream/state"
)

// childDstream runs the reference job in this process, as cmd/dstream wires
// it (ingest from Kafka, Redis checkpoints, transactional Kafka output).
//
// mode "catchup" drains a pre-loaded topic: batch times come from a virtual
// clock and batch sizes from the rate cap, so the batches are exactly the
// plans the harness expects, and run back to back. mode "latency" runs on
// the wall clock until SIGTERM.
func childDstream(args []string) error {
	fs := flag.NewFlagSet("dstream", flag.ContinueOnError)
	mode := fs.String("mode", "catchup", "catchup or latency")
	brokers := fs.String("brokers", "", "")
	redisAddr := fs.String("redis", "", "")
	topic := fs.String("topic", "", "")
	out := fs.String("out", "", "output topic")
	dlq := fs.String("dlq", "", "dead-letter topic")
	job := fs.String("job", "", "job id")
	countriesPath := fs.String("countries", "", "")
	batches := fs.Uint64("batches", 0, "batches to run (catchup)")
	rate := fs.Int64("rate", 0, "max rate per partition, records/s (catchup)")
	intervalFlag := fs.Duration("interval", interval, "")
	windowFlag := fs.Duration("window", window, "")
	slideFlag := fs.Duration("slide", interval, "")
	cpuProfile := fs.String("cpuprofile", "", "")
	tracePath := fs.String("trace", "", "write an execution trace of the run here")
	heapProfile := fs.String("heapprofile", "", "write the heap after the run's final GC here")
	totalsPath := fs.String("totals", "", "write the checkpointed running totals here")
	cycle := fs.Int("cycle", 0, "check the checkpointed totals here instead: the topic holds -cycle-lines lines of this many IPs in turn (cyclingLines)")
	cycleLines := fs.Int64("cycle-lines", 0, "")
	reportPath := fs.String("report", "", "")
	group := fs.Int("group", 0, "at most this many batches commit together (0: the engine's default; 1: every batch alone)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	began := time.Now()
	gc := gcpolicy.Apply(gcpolicy.DefaultPercent, "/sys/fs/cgroup") // as cmd/dstream does
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	defer gc.StartBound(ctx, time.Second)()

	var countries *rdd.Table[string, string]
	if *countriesPath != "" {
		f, err := os.Open(*countriesPath)
		if err != nil {
			return err
		}
		countries, err = topips.LoadCountries(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(*brokers), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	icfg := ingest.Config{Topic: *topic, BatchInterval: *intervalFlag}
	if *mode == "catchup" {
		icfg.MaxRatePerPartition = *rate
	}
	src, err := ingest.New(cl, icfg)
	if err != nil {
		return err
	}
	sink, err := wiring.NewSink(ctx, wiring.SinkConfig{Job: *job, Output: *out, DeadLetters: *dlq},
		[]kgo.Opt{kgo.SeedBrokers(*brokers)}, zerolog.Nop())
	if err != nil {
		return err
	}
	defer sink.Close()
	rdb := redis.NewClient(&redis.Options{Addr: *redisAddr, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer rdb.Close()
	store, err := state.NewRedis(rdb, state.Config{Job: *job})
	if err != nil {
		return err
	}

	var (
		mu     sync.Mutex
		report = childReport{StartUnixNano: began.UnixNano()}
		ready  sync.Once
	)
	opts := []microbatch.Option{microbatch.WithStdout(io.Discard),
		microbatch.WithListener(func(s microbatch.BatchStats) {
			mu.Lock()
			if report.FirstCommitUnixNano == 0 {
				report.FirstCommitUnixNano = time.Now().UnixNano()
			}
			report.Lines += int64(s.Records)
			report.Batches++
			if s.LastInGroup {
				report.Commits++
			}
			report.ProcessingMS = append(report.ProcessingMS, float64(s.ProcessingTime.Microseconds())/1000)
			report.CheckpointMS = append(report.CheckpointMS, float64(s.CheckpointTime.Microseconds())/1000)
			report.SchedulingMS = append(report.SchedulingMS, float64(s.SchedulingDelay.Microseconds())/1000)
			mu.Unlock()
			ready.Do(func() { fmt.Println("READY") })
		})}
	if *group > 0 {
		opts = append(opts, microbatch.WithCommitGroup(*group))
	}
	if *mode == "catchup" {
		// Half an interval before the first batch time epoch+interval.
		opts = append(opts, microbatch.WithClock(microbatch.NewVirtualClock(epoch.Add(*intervalFlag/2))),
			microbatch.WithBatchLimit(*batches))
	}
	tm := newTimings()
	j := microbatch.NewJob(*intervalFlag, opts...)
	j.Checkpoint(timedStore{store, tm})
	topips.Build(j, timedSource{src, tm}, timedSink{sink, tm}, topips.Config{Window: *windowFlag, Slide: *slideFlag, TopN: topN,
		InputTopic: *topic, DeadLetterTopic: *dlq, Countries: countries})

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
	}
	if *tracePath != "" {
		f, err := os.Create(*tracePath)
		if err != nil {
			return err
		}
		if err := trace.Start(f); err != nil {
			return err
		}
		defer func() { trace.Stop(); f.Close() }()
	}
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	err = j.Run(ctx)
	elapsed := time.Since(start)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return fmt.Errorf("job: %w", err)
	}
	// The peak of the run itself, before anything below reads the state
	// back.
	peak := highWaterRSS(os.Getpid())
	stats := j.StateStats()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if *heapProfile != "" {
		f, err := os.Create(*heapProfile)
		if err != nil {
			return err
		}
		err = pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
		if err != nil {
			return err
		}
	}
	runtime.KeepAlive(j)

	mu.Lock()
	report.Seconds = elapsed.Seconds()
	seconds := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	report.UserSeconds = seconds(after.Utime) - seconds(before.Utime)
	report.SysSeconds = seconds(after.Stime) - seconds(before.Stime)
	report.MinorFaults = after.Minflt - before.Minflt
	report.HeapInuse = ms.HeapInuse
	report.PeakRSS = peak
	report.Timings = tm.summary(elapsed)
	report.Calls = tm.stats()
	for _, st := range stats {
		report.StateKeys = append(report.StateKeys, st.Keys)
	}
	mu.Unlock()
	fmt.Printf("dstream: %d lines in %d batches, %v\n", report.Lines, report.Batches, elapsed)
	if *cycle > 0 {
		meta, err := store.Progress(context.Background())
		if err != nil {
			return err
		}
		pairs, err := microbatch.ReadState[weblog.IP, int64](context.Background(), store, "totals", meta.Committed)
		if err != nil {
			return err
		}
		ok, detail := checkCycleTotals(*cycle, *cycleLines, func(yield func(string, int64) bool) {
			for _, kv := range pairs {
				if !yield(kv.Key.String(), kv.Value) {
					return
				}
			}
		})
		report.Checked, report.Correct, report.Detail = true, ok, detail
	}
	if *totalsPath != "" {
		totals, err := checkpointedTotals(context.Background(), store)
		if err != nil {
			return err
		}
		if err := writeTotals(*totalsPath, totals); err != nil {
			return err
		}
	}
	return writeReport(*reportPath, report)
}

// checkpointedTotals reads the running totals (the totals operator's state)
// back from the job's checkpoint in Redis: what a restart would resume from.
func checkpointedTotals(ctx context.Context, store *state.Redis) (map[string]int64, error) {
	meta, err := store.Progress(ctx)
	if err != nil {
		return nil, err
	}
	pairs, err := microbatch.ReadState[weblog.IP, int64](ctx, store, "totals", meta.Committed)
	if err != nil {
		return nil, err
	}
	totals := make(map[string]int64, len(pairs))
	for _, kv := range pairs {
		totals[kv.Key.String()] = kv.Value
	}
	return totals, nil
}
