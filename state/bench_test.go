package state_test

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

// The benchmarks run against a real redis-server and report figures rather
// than assert them: the goals are ≤ 20 ms per checkpoint of a batch that
// changes 10k of 1M keys, and ≤ 3 s from the start of a process to its first
// new batch with 1M keys of state and a 30 s window to rebuild.
//
//	go test -run '^$' -bench . -benchtime 20x ./state/

const (
	stateKeys   = 1_000_000
	changedKeys = 10_000
)

// benchServers runs a benchmark on Redis without persistence (the shared
// server) and with the append-only file fsynced on every write, as
// production runs it.
func benchServers(b *testing.B, run func(b *testing.B, rdb *redis.Client)) {
	for _, s := range []struct {
		name string
		srv  func() *redistest.Server
	}{
		{"aof=off", func() *redistest.Server { return redistest.Shared(b) }},
		{"aof=always", func() *redistest.Server {
			return redistest.Require(b, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"})
		}},
	} {
		b.Run(s.name, func(b *testing.B) {
			rdb := s.srv().Client()
			defer rdb.Close()
			run(b, rdb)
		})
	}
}

var benchJobs atomic.Int64

func benchStore(b *testing.B, rdb *redis.Client, job string) *state.Redis {
	b.Helper()
	s, err := state.NewRedis(rdb, state.Config{Job: job, LeaseTTL: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkCheckpoint measures the checkpoint (prepare and commit) of a
// batch of the top-ips job that changes 10k keys of a state of 1M keys.
func BenchmarkCheckpoint(b *testing.B) {
	benchServers(b, func(b *testing.B, rdb *redis.Client) {
		job := fmt.Sprintf("bench-checkpoint-%d", benchJobs.Add(1))
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		// 10 batches of 100k new IPs: 1M keys of state.
		runTopIPs(b, benchStore(b, rdb, job), start, 10, nil)
		var checkpoint time.Duration
		var batches int
		b.ResetTimer()
		for b.Loop() {
			runTopIPs(b, benchStore(b, rdb, job), start, 5, func(s microbatch.BatchStats) {
				checkpoint += s.CheckpointTime
				batches++
			})
		}
		b.ReportMetric(float64(checkpoint.Microseconds())/1000/float64(batches), "checkpoint-ms")
	})
}

// memSource is a replayable Source of web-log lines on one partition: the
// line at offset o comes from IP number o mod 1M. Batches take 100k lines
// until offset 1M, then 10k.
type memSource struct{}

func (memSource) Topic() string { return "logs" }

func (memSource) Cut(_ context.Context, after []microbatch.Range) ([]microbatch.Range, error) {
	from := int64(0)
	if len(after) > 0 {
		from = after[0].Until
	}
	n := int64(changedKeys)
	if from < stateKeys {
		n = 100_000
	}
	return []microbatch.Range{{Topic: "logs", Partition: 0, From: from, Until: from + n}}, nil
}

func (memSource) Read(_ context.Context, ranges []microbatch.Range, emit func(microbatch.Record)) error {
	for _, r := range ranges {
		for o := r.From; o < r.Until; o++ {
			k := o % stateKeys
			line := fmt.Appendf(nil, "2016-12-06T08:58:35.318+0000 10.%d.%d.%d 200 GET /codemove/X 0.1", k>>16, (k>>8)&255, k&255)
			emit(microbatch.Record{Partition: 0, Offset: o, Value: line})
		}
	}
	return nil
}

// timedStore times LoadState.
type timedStore struct {
	*state.Redis
	load time.Duration
}

func (s *timedStore) LoadState(ctx context.Context, op string, fn func(microbatch.StatePart) error) error {
	t0 := time.Now()
	defer func() { s.load += time.Since(t0) }()
	return s.Redis.LoadState(ctx, op, fn)
}

// runTopIPs runs the top-ips job (10 s batches, 30 s window) on memSource
// for batches new batches, as one process would, and returns the time from
// the start to the end of its first new batch. observe, if set, sees every
// batch.
func runTopIPs(b *testing.B, store microbatch.Store, start time.Time, batches uint64, observe func(microbatch.BatchStats)) time.Duration {
	b.Helper()
	first := make(chan struct{})
	var once atomic.Bool
	job := microbatch.NewJob(10*time.Second,
		microbatch.WithClock(microbatch.NewVirtualClock(start)),
		microbatch.WithBatchLimit(batches), microbatch.WithStdout(io.Discard),
		microbatch.WithListener(func(s microbatch.BatchStats) {
			if once.CompareAndSwap(false, true) {
				close(first)
			}
			if observe != nil {
				observe(s)
			}
		}))
	job.Checkpoint(store)
	topips.Build(job, memSource{}, microbatch.NewMemorySink(), topips.Config{Window: 30 * time.Second, Slide: 10 * time.Second, TopN: 3})
	t0 := time.Now()
	if err := job.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	var took time.Duration
	select {
	case <-first:
		took = time.Since(t0)
	case <-time.After(5 * time.Minute):
		b.Fatal("no batch after 5 minutes")
	}
	if err := job.AwaitTermination(); err != nil {
		b.Fatal(err)
	}
	if keys := job.StateStats()[1].Keys; keys < stateKeys {
		b.Fatalf("totals hold %d keys, want %d", keys, stateKeys)
	}
	return took
}

// BenchmarkRecovery measures a restart of the top-ips job holding 1M keys
// of running totals: from the start of a new process (acquire, load the
// state, rebuild the 30 s window from its recorded plans) to its first new
// batch committed.
func BenchmarkRecovery(b *testing.B) {
	benchServers(b, func(b *testing.B, rdb *redis.Client) {
		job := fmt.Sprintf("bench-recovery-%d", benchJobs.Add(1))
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		// 10 batches of 100k new IPs, then 10k lines per batch.
		runTopIPs(b, benchStore(b, rdb, job), start, 14, nil)
		var load, first time.Duration
		b.ResetTimer()
		for b.Loop() {
			s := &timedStore{Redis: benchStore(b, rdb, job)}
			first += runTopIPs(b, s, start, 1, nil)
			load += s.load
		}
		b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms-to-first-batch")
		b.ReportMetric(float64(load.Milliseconds())/float64(b.N), "load-state-ms")
	})
}
