package chaos_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

type runner func() int

func (r runner) Run() int { return r() }

func TestMain(m *testing.M) {
	code := kafkatest.Main(runner(func() int {
		return redistest.Main(m, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"})
	}), kafkatest.Options{})
	if binary.dir != "" {
		os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}

// binary is the dstream binary, built once per test binary.
var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func dstreamBinary(t *testing.T) string {
	t.Helper()
	binary.once.Do(func() {
		binary.dir, binary.err = os.MkdirTemp("", "chaos-bin-*")
		if binary.err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			binary.path, binary.err = chaos.Build(ctx, binary.dir, raceEnabled)
		}
	})
	if binary.err != nil {
		t.Fatal(binary.err)
	}
	return binary.path
}

var seq atomic.Int64

// env is one job on a broker and a Redis: its topics, its settings and the
// processors started for it, all killed when the test ends.
type env struct {
	t        *testing.T
	bin      string
	broker   *kafkatest.Broker
	redis    *redistest.Server // nil on a cluster
	rdb      checkpoints
	job      string
	spec     chaos.Spec
	feed     chaos.Feed
	settings map[string]string
	logDir   string
	// shards is DSTREAM_SHARDS (0: unsharded); tasks names the sharded
	// job's tasks by stage.
	shards int
	tasks  [][]string

	mu struct {
		sync.Mutex
		procs []*chaos.Processor
	}
}

type envOptions struct {
	interval   time.Duration // batch interval and slide (default 500ms); the window is 3 of them
	leaseTTL   time.Duration
	ratePerSec int // DSTREAM_MAX_RATE_PER_PARTITION
	seed       uint64
	partitions int32 // of the input (default 4)
	shards     int   // DSTREAM_SHARDS (default unsharded)
	// cluster, if set, keeps the job's checkpoints on this Redis Cluster
	// (DSTREAM_REDIS_ADDR lists its nodes) instead of newEnv's server.
	cluster *redistest.Cluster
}

// checkpoints is a client of the job's Redis: a server or a cluster.
type checkpoints interface {
	state.Client
	Close() error
}

func newEnv(t *testing.T, broker *kafkatest.Broker, rds *redistest.Server, o envOptions) *env {
	t.Helper()
	n := seq.Add(1)
	name := fmt.Sprintf("%s-%d", strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()), n)
	redisAddr := ""
	e := &env{
		t: t, bin: dstreamBinary(t), broker: broker, redis: rds,
		job:    "job-" + name,
		logDir: t.TempDir(),
		spec: chaos.Spec{
			Input: "logs-" + name, Output: "top-" + name, DeadLetter: "dlq-" + name,
			Interval: 500 * time.Millisecond, Window: 1500 * time.Millisecond, Slide: 500 * time.Millisecond,
			TopN: 3,
		},
	}
	if o.interval > 0 {
		e.spec.Interval, e.spec.Window, e.spec.Slide = o.interval, 3*o.interval, o.interval
	}
	if o.cluster != nil {
		e.rdb, redisAddr = o.cluster.Client(), strings.Join(o.cluster.Addrs(), ",")
	} else {
		e.rdb, redisAddr = rds.Client(), rds.Addr()
	}
	t.Cleanup(func() { e.rdb.Close() })
	e.feed = chaos.Feed{Topic: e.spec.Input, Seed: o.seed, IPs: 1000, MalformedEvery: 997}
	ctx := context.Background()
	for _, tp := range []struct {
		name string
		n    int32
	}{{e.spec.Input, cmp.Or(o.partitions, 4)}, {e.spec.Output, 3}, {e.spec.DeadLetter, 1}} {
		if err := broker.CreateTopic(ctx, tp.name, tp.n, nil); err != nil {
			t.Fatal(err)
		}
	}
	countries := filepath.Join(e.logDir, "countries.csv")
	var err error
	if e.spec.Countries, err = e.feed.Countries(countries, 20); err != nil {
		t.Fatal(err)
	}
	e.settings = map[string]string{
		"DSTREAM_KAFKA_BROKERS":          broker.Addr(),
		"DSTREAM_REDIS_ADDR":             redisAddr,
		"DSTREAM_INPUT_TOPIC":            e.spec.Input,
		"DSTREAM_OUTPUT_TOPIC":           e.spec.Output,
		"DSTREAM_DEADLETTER_TOPIC":       e.spec.DeadLetter,
		"DSTREAM_JOB_ID":                 e.job,
		"DSTREAM_BATCH_INTERVAL":         e.spec.Interval.String(),
		"DSTREAM_WINDOW":                 e.spec.Window.String(),
		"DSTREAM_SLIDE":                  e.spec.Slide.String(),
		"DSTREAM_TOP_N":                  strconv.Itoa(e.spec.TopN),
		"DSTREAM_COUNTRIES_FILE":         countries,
		"DSTREAM_MAX_RATE_PER_PARTITION": strconv.Itoa(o.ratePerSec),
		"DSTREAM_LEASE_TTL":              o.leaseTTL.String(),
		"DSTREAM_SHUTDOWN_GRACE":         "20s",
		"DSTREAM_LOG_LEVEL":              "info",
	}
	if o.shards > 1 {
		e.shards = o.shards
		e.settings["DSTREAM_SHARDS"] = strconv.Itoa(o.shards)
		// The reference job's stages: parse (a task per shard), count (a
		// task per shard), rank (one).
		for stage, n := range []int{o.shards, o.shards, 1} {
			var names []string
			for i := range n {
				names = append(names, fmt.Sprintf("s%d-%d", stage, i))
			}
			e.tasks = append(e.tasks, names)
		}
	}
	t.Cleanup(e.cleanup)
	return e
}

// start starts a processor of the job.
func (e *env) start(name string) *chaos.Processor {
	e.t.Helper()
	p, err := chaos.Start(e.bin, name, e.logDir, e.settings)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.mu.procs = append(e.mu.procs, p)
	e.mu.Unlock()
	return p
}

// cleanup kills every processor still running and fails the test if one
// reported a data race or panicked.
func (e *env) cleanup() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.mu.procs {
		p.Kill()
		for _, bad := range []string{"WARNING: DATA RACE", "panic:"} {
			if p.Logged(bad) {
				e.t.Errorf("%s: %s%s", p.Name, bad, p.LogFrom(bad, 60))
			}
		}
	}
}

func (e *env) clientOpts() []kgo.Opt { return []kgo.Opt{kgo.SeedBrokers(e.broker.Addr())} }

// startFeed writes lines at rate in the background; stop ends it early
// (what was sent is delivered) and returns its error.
func (e *env) startFeed(lines int64, rate int) (sent *atomic.Int64, done <-chan struct{}, stop func() error) {
	f := e.feed
	f.Lines, f.Rate = lines, rate
	sent = new(atomic.Int64)
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	var err error
	go func() {
		defer close(ch)
		err = f.Write(ctx, e.clientOpts(), sent)
	}()
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			<-ch
		}
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	e.t.Cleanup(func() { _ = stop() })
	return sent, ch, stop
}

// meta reads the job's committed batch and where it ended: for a sharded
// job, the batch every task committed, and where its first-stage tasks
// ended.
func (e *env) meta(ctx context.Context) (committed uint64, offsets map[int32]int64, err error) {
	if e.shards > 0 {
		committed, _, offsets, err := e.shardedMeta(ctx)
		return committed, offsets, err
	}
	return e.metaOf(ctx, e.job)
}

// shardedMeta reads a sharded job's tasks: the lowest batch any committed,
// the highest its first-stage tasks committed, and where they ended.
func (e *env) shardedMeta(ctx context.Context) (low, first uint64, offsets map[int32]int64, err error) {
	offsets = map[int32]int64{}
	low = ^uint64(0)
	for stage, names := range e.tasks {
		for _, task := range names {
			c, o, err := e.metaOf(ctx, state.TaskJob(e.job, task))
			if err != nil {
				return 0, 0, nil, err
			}
			low = min(low, c)
			if stage == 0 {
				first = max(first, c)
				maps.Copy(offsets, o)
			}
		}
	}
	return low, first, offsets, nil
}

// metaOf reads the committed batch and offsets of job (or task) job.
func (e *env) metaOf(ctx context.Context, job string) (committed uint64, offsets map[int32]int64, err error) {
	vals, err := e.rdb.HMGet(ctx, "{dstream:"+job+"}:meta", "committed", "offsets").Result()
	if err != nil {
		return 0, nil, err
	}
	if s, ok := vals[0].(string); ok {
		committed, _ = strconv.ParseUint(s, 10, 64)
	}
	offsets = map[int32]int64{}
	if s, ok := vals[1].(string); ok {
		ranges, err := microbatch.ParseOffsetsHeader(e.spec.Input, s)
		if err != nil {
			return 0, nil, err
		}
		for _, r := range ranges {
			offsets[r.Partition] = r.Until
		}
	}
	return committed, offsets, nil
}

// waitFor polls cond every 50ms until it holds, failing the test after
// limit (a bound against hanging, not a timing assertion).
func (e *env) waitFor(what string, limit time.Duration, cond func(ctx context.Context) bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond(ctx) {
		select {
		case <-ctx.Done():
			e.t.Fatalf("gave up waiting (%v) for %s", limit, what)
		case <-tick.C:
		}
	}
}

// waitCommitted waits until the job committed at least batch n.
func (e *env) waitCommitted(n uint64, limit time.Duration, running ...*chaos.Processor) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("batch %d to commit", n), limit, func(ctx context.Context) bool {
		for _, p := range running {
			if p.Exited() {
				e.t.Fatalf("%s exited: %s%s", p.Name, p.ExitError(), p.LogTail(20))
			}
		}
		c, _, err := e.meta(ctx)
		return err == nil && c >= n
	})
}

// waitDrained waits until the job committed every line of the input.
func (e *env) waitDrained(limit time.Duration, p *chaos.Processor) {
	e.t.Helper()
	ends := e.ends()
	var first uint64
	e.waitFor(fmt.Sprintf("the job to read the input to %v", ends), limit, func(ctx context.Context) bool {
		if p.Exited() {
			e.t.Fatalf("%s exited: %s%s", p.Name, p.ExitError(), p.LogTail(20))
		}
		if e.shards > 0 {
			_, c, offsets, err := e.shardedMeta(ctx)
			first = c
			return err == nil && maps.Equal(offsets, ends)
		}
		_, offsets, err := e.meta(ctx)
		return err == nil && maps.Equal(offsets, ends)
	})
	if e.shards > 0 {
		// The later stages catch up with the first.
		e.waitCommitted(first, limit, p)
	}
}

func (e *env) ends() map[int32]int64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := chaos.ReadInput(ctx, e.clientOpts(), e.spec.Input)
	if err != nil {
		e.t.Fatal(err)
	}
	return in.Ends()
}

// stop sends SIGTERM and expects a clean exit.
func (e *env) stop(p *chaos.Processor) {
	e.t.Helper()
	p.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, err := p.Wait(ctx)
	if err != nil || code != 0 {
		e.t.Fatalf("%s: exit %d after SIGTERM (%v): %s%s", p.Name, code, err, p.ExitError(), p.LogTail(20))
	}
}

// verify reads input and output back and checks them, and the totals in
// Redis; no processor may hold the job.
func (e *env) verify() (*chaos.Report, *chaos.Input) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	in, err := chaos.ReadInput(ctx, e.clientOpts(), e.spec.Input)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := chaos.ReadOutput(ctx, e.clientOpts(), e.spec)
	if err != nil {
		e.t.Fatal(err)
	}
	rep := chaos.Check(in, out, e.spec)
	for _, p := range rep.Problems {
		e.t.Error(p)
	}
	return rep, in
}

// verifyTotals checks the running totals in Redis against the input.
func (e *env) verifyTotals(in *chaos.Input) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	committed, problems, err := chaos.CheckTotals(ctx, e.rdb, e.job, e.spec, in)
	if err != nil {
		e.t.Fatal(err)
	}
	for i, p := range problems {
		if i == 20 {
			e.t.Errorf("… %d more", len(problems)-20)
			break
		}
		e.t.Error(p)
	}
	e.t.Logf("running totals in Redis checked at committed batch %d: %d wrong", committed, len(problems))
}
