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

// change is a state change as the engine writes it: an IP-like key and a
// value of ~15 bytes (sequence, last touched, count).
func change(k int, v int64) microbatch.Change {
	key := fmt.Appendf(nil, "10.%d.%d.%d", k>>16, (k>>8)&255, k&255)
	val := fmt.Appendf(nil, "%06d%09d", k, v)
	return microbatch.Change{Op: "updateStateByKey-1", Key: key, Value: val}
}

func benchPlan(id uint64) microbatch.Plan {
	return microbatch.Plan{ID: id, Time: time.Unix(int64(id)*10, 0).UTC(), Ranges: []microbatch.Range{
		{Topic: "logs", Partition: 0, From: int64(id-1) * changedKeys, Until: int64(id) * changedKeys},
	}}
}

// commitBatch runs the protocol's store steps for batch id.
func commitBatch(ctx context.Context, s *state.Redis, id uint64, changes []microbatch.Change) (prepare, commit time.Duration, err error) {
	if err := s.RecordPlan(ctx, benchPlan(id)); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	if err := s.Prepare(ctx, id, changes); err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	keep := uint64(1)
	if id > 100 {
		keep = id - 100
	}
	if err := s.Commit(ctx, id, keep); err != nil {
		return 0, 0, err
	}
	return t1.Sub(t0), time.Since(t1), nil
}

// BenchmarkCheckpoint measures Prepare+Commit of a batch that changes 10k
// keys of a state of 1M keys.
func BenchmarkCheckpoint(b *testing.B) {
	benchServers(b, func(b *testing.B, rdb *redis.Client) {
		ctx := context.Background()
		s := benchStore(b, rdb, fmt.Sprintf("bench-checkpoint-%d", benchJobs.Add(1)))
		if _, err := s.Acquire(ctx); err != nil {
			b.Fatal(err)
		}
		// 1M keys, 50k per batch.
		id := uint64(0)
		for k := 0; k < stateKeys; k += 50_000 {
			changes := make([]microbatch.Change, 0, 50_000)
			for i := k; i < k+50_000; i++ {
				changes = append(changes, change(i, 1))
			}
			id++
			if _, _, err := commitBatch(ctx, s, id, changes); err != nil {
				b.Fatal(err)
			}
		}
		var prepare, commit time.Duration
		next := 0
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			changes := make([]microbatch.Change, changedKeys)
			for i := range changes {
				changes[i] = change((next+i*97)%stateKeys, int64(id))
			}
			next += changedKeys
			id++
			b.StartTimer()
			p, c, err := commitBatch(ctx, s, id, changes)
			if err != nil {
				b.Fatal(err)
			}
			prepare += p
			commit += c
		}
		n := float64(b.N)
		b.ReportMetric(float64(prepare.Microseconds())/1000/n, "prepare-ms")
		b.ReportMetric(float64(commit.Microseconds())/1000/n, "commit-ms")
		b.ReportMetric(float64((prepare+commit).Microseconds())/1000/n, "ms/batch")
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

type nopSink struct{}

func (nopSink) WriteBatch(context.Context, microbatch.BatchInfo, []microbatch.Message) error {
	return nil
}

// timedStore times LoadState.
type timedStore struct {
	*state.Redis
	load time.Duration
}

func (s *timedStore) LoadState(ctx context.Context, op string, fn func(key, value []byte) error) error {
	t0 := time.Now()
	defer func() { s.load += time.Since(t0) }()
	return s.Redis.LoadState(ctx, op, fn)
}

// runTopIPs runs the top-ips job (10 s batches, 30 s window) on memSource
// for batches new batches, as one process would, and returns the time from
// the start to the end of its first new batch.
func runTopIPs(b *testing.B, store microbatch.Store, start time.Time, batches uint64) time.Duration {
	b.Helper()
	first := make(chan struct{})
	var once atomic.Bool
	job := microbatch.NewJob(10*time.Second,
		microbatch.WithClock(microbatch.NewVirtualClock(start)),
		microbatch.WithBatchLimit(batches), microbatch.WithStdout(io.Discard),
		microbatch.WithListener(func(microbatch.BatchStats) {
			if once.CompareAndSwap(false, true) {
				close(first)
			}
		}))
	job.Checkpoint(store)
	topips.Build(job, memSource{}, nopSink{}, topips.Config{Window: 30 * time.Second, Slide: 10 * time.Second, TopN: 3})
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
		runTopIPs(b, benchStore(b, rdb, job), start, 14)
		var load, first time.Duration
		b.ResetTimer()
		for b.Loop() {
			s := &timedStore{Redis: benchStore(b, rdb, job)}
			first += runTopIPs(b, s, start, 1)
			load += s.load
		}
		b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms-to-first-batch")
		b.ReportMetric(float64(load.Milliseconds())/float64(b.N), "load-state-ms")
		n, err := rdb.HLen(context.Background(), "{dstream:"+job+"}:state:updateStateByKey-1").Result()
		if err != nil || n < stateKeys {
			b.Fatalf("totals hold %d keys (%v), want %d", n, err, stateKeys)
		}
		b.ReportMetric(float64(n), "keys")
	})
}
