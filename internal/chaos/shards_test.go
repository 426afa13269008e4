package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/jsonschema"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/internal/weblog"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

// shardedTotals reads a sharded job's running totals: each count task
// keeps those of its shard of the IPs.
func (e *env) shardedTotals(ctx context.Context) map[string]int64 {
	e.t.Helper()
	out := map[string]int64{}
	for _, task := range e.tasks[1] {
		for ip, total := range e.totalsOf(ctx, state.TaskJob(e.job, task)) {
			if _, dup := out[ip]; dup {
				e.t.Errorf("%s's total is kept by two tasks", ip)
			}
			out[ip] = total
		}
	}
	return out
}

// totalsOf reads the running totals a job (or a task of one) committed.
func (e *env) totalsOf(ctx context.Context, job string) map[string]int64 {
	e.t.Helper()
	store, err := state.NewRedis(e.rdb, state.Config{Job: job})
	if err != nil {
		e.t.Fatal(err)
	}
	meta, err := store.Progress(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	totals, err := microbatch.ReadState[weblog.IP, int64](ctx, store, "totals", meta.Committed)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make(map[string]int64, len(totals))
	for _, kv := range totals {
		out[kv.Key.String()] = kv.Value
	}
	return out
}

// results reads the job's results by batch id, as JSON values without the
// batch time (the runs compared started at other times).
func (e *env) results(ctx context.Context) map[string][]string {
	e.t.Helper()
	out, err := chaos.ReadOutput(ctx, e.clientOpts(), e.spec)
	if err != nil {
		e.t.Fatal(err)
	}
	byBatch := map[string][]string{}
	for _, r := range out.Results() {
		var res topips.Result
		if err := json.Unmarshal(r.Value, &res); err != nil {
			e.t.Fatal(err)
		}
		res.BatchTime = time.Time{}
		v, _ := json.Marshal(res)
		byBatch[r.Batch] = append(byBatch[r.Batch], string(v))
	}
	for _, vs := range byBatch {
		slices.Sort(vs)
	}
	return byBatch
}

// preloadedRate is DSTREAM_MAX_RATE_PER_PARTITION of runs over a preloaded
// input: it cuts their batches, so runs compared batch by batch share it.
const preloadedRate = 200

// runPreloaded runs a job over a preloaded input with replicas processes
// until it drained it, and returns its results. The input is input's (the
// topic of another env's), or one written here when input is nil.
func runPreloaded(t *testing.T, rds *redistest.Server, shards, replicas int, input *env) (map[string][]string, *env) {
	t.Helper()
	schema := statusSchema(t)
	e := newEnv(t, kafkatest.Shared(t), rds, envOptions{leaseTTL: time.Second, ratePerSec: preloadedRate, seed: 41, partitions: 12, shards: shards})
	if input == nil {
		_, fed, stopFeed := e.startFeed(24_000, 0)
		<-fed
		if err := stopFeed(); err != nil {
			t.Fatal(err)
		}
	} else {
		e.spec.Input, e.settings["DSTREAM_INPUT_TOPIC"] = input.spec.Input, input.spec.Input
		e.spec.Countries, e.settings["DSTREAM_COUNTRIES_FILE"] = input.spec.Countries, input.settings["DSTREAM_COUNTRIES_FILE"]
	}
	var procs []*chaos.Processor
	for i := range replicas {
		procs = append(procs, e.start(fmt.Sprintf("replica-%d", i)))
	}
	e.waitDrained(4*time.Minute, procs[0])
	e.waitWindowsPast(procs...)
	if shards > 1 {
		e.checkTasksDivided(procs, schema)
	}
	for _, p := range procs {
		e.stop(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return e.results(ctx), e
}

// checkMarkersOnce checks that the job's control topic holds each task's
// marker of each batch once: a task commits a batch in one transaction.
func (e *env) checkMarkersOnce(ctx context.Context) {
	e.t.Helper()
	counts, err := chaos.MarkerCounts(ctx, e.clientOpts(), "dstream-"+e.job+"-control")
	if err != nil {
		e.t.Fatal(err)
	}
	if len(counts) == 0 {
		e.t.Fatal("the control topic holds no markers")
	}
	for k, n := range counts {
		if n != 1 {
			e.t.Errorf("the marker of task@batch %s is in the control topic %d times: a batch committed in %d transactions", k, n, n)
		}
	}
}

// waitWindowsPast waits, after the job drained its input, until every
// window moved past the input's last lines: a window holds them for a
// window's worth of batches, and two runs compare equal once all of them
// were written (the batches after that write nothing), not when each run
// happened to stop.
func (e *env) waitWindowsPast(running ...*chaos.Processor) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	drained, _, err := e.meta(ctx)
	cancel()
	if err != nil {
		e.t.Fatal(err)
	}
	e.waitCommitted(drained+uint64(e.spec.Window/e.spec.Interval), 4*time.Minute, running...)
}

// checkTasksDivided checks, through every replica's /api/status, that the
// replicas divide the job's tasks: each runs on one replica, the one its
// lease names, and no replica runs more than its fair share.
func (e *env) checkTasksDivided(procs []*chaos.Processor, schema *jsonschema.Schema) {
	e.t.Helper()
	runs := map[string]string{}
	share := (len(slices.Concat(e.tasks...)) + len(procs) - 1) / len(procs)
	for _, p := range procs {
		s := e.status(p, schema)
		here := 0
		for _, task := range s.Job.Tasks {
			if !task.Here {
				continue
			}
			here++
			if other, ok := runs[task.Name]; ok {
				e.t.Errorf("task %s runs on %s and %s", task.Name, other, p.Name)
			}
			runs[task.Name] = p.Name
		}
		if here > share {
			e.t.Errorf("%s runs %d tasks, over its share of %d", p.Name, here, share)
		}
		if len(s.Job.Tasks) != len(slices.Concat(e.tasks...)) {
			e.t.Errorf("%s lists %d tasks, want %d", p.Name, len(s.Job.Tasks), len(slices.Concat(e.tasks...)))
		}
	}
	if len(runs) != len(slices.Concat(e.tasks...)) {
		e.t.Errorf("%d of %d tasks run: %v", len(runs), len(slices.Concat(e.tasks...)), runs)
	}
}

// TestShardedJobOnThreeReplicas runs the reference job sharded in 3 on 3
// replicas (7 tasks divided among them, exchanging through Kafka), on a
// preloaded input of 12 partitions: its output is exactly once and right
// against a recomputation from the input, its running totals are the
// input's, and its results equal, batch by batch, those of the same job on
// one replica and those of the unsharded job.
func TestShardedJobOnThreeReplicas(t *testing.T) {
	rds := redistest.Shared(t)
	sharded, e := runPreloaded(t, rds, 3, 3, nil)
	rep, in := e.verify()
	if !rep.OK() || rep.Batches < 10 {
		t.Fatalf("sharded on 3 replicas: %s", rep)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.checkMarkersOnce(ctx)
	if got, want := e.shardedTotals(ctx), in.Totals(); !maps.Equal(got, want) {
		t.Errorf("the count tasks' totals: %d IPs, want the input's %d (e.g. %s)", len(got), len(want), firstDiff(got, want))
	}
	// A replay of a batch of the sharded job merges its first-stage tasks'
	// plans and recomputes it unsharded: the records the output holds.
	out, code := e.command("replay", "--batch", "7")
	if code != 0 {
		t.Fatalf("replay: exit %d:\n%s", code, out)
	}
	var replayed []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "{") {
			var res topips.Result
			if err := json.Unmarshal([]byte(l), &res); err != nil {
				t.Fatal(err)
			}
			res.BatchTime = time.Time{}
			v, _ := json.Marshal(res)
			replayed = append(replayed, string(v))
		}
	}
	slices.Sort(replayed)
	if len(replayed) == 0 || !slices.Equal(replayed, sharded["7"]) {
		t.Errorf("replay of batch 7: %v, the output holds %v", replayed, sharded["7"])
	}
	oneReplica, _ := runPreloaded(t, rds, 3, 1, e)
	unsharded, _ := runPreloaded(t, rds, 0, 1, e)
	for name, other := range map[string]map[string][]string{"sharded on one replica": oneReplica, "unsharded": unsharded} {
		if !maps.EqualFunc(sharded, other, slices.Equal[[]string]) {
			t.Errorf("the results on 3 replicas differ from %s's: %d and %d batches", name, len(sharded), len(other))
			for id, vs := range sharded {
				if !slices.Equal(vs, other[id]) {
					t.Errorf("batch %s: %v, %s has %v", id, vs, name, other[id])
					break
				}
			}
		}
	}
}

// TestShardedChaos runs a sharded job (3 shards, 7 tasks) on several
// replicas while a feed writes, and meanwhile SIGKILLs random replicas at
// random moments (restarting them), SIGSTOPs one past its leases and lets it
// go on (a zombie, fenced), scales the replicas 3 → 2 → 4, and restarts
// Redis under them; then drains the input and checks the output and the
// running totals against the input: nothing lost, doubled or wrong.
func TestShardedChaos(t *testing.T) {
	cfg := loadChaosConfig(t)
	rds := redistest.Require(t, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"})
	e := newEnv(t, kafkatest.Shared(t), rds, envOptions{leaseTTL: time.Second, ratePerSec: cfg.cap, seed: cfg.seed, partitions: 12, shards: 3})
	lines := cfg.lines / 2
	t.Logf("sharded chaos: seed %d, %d lines at %d/s, 3 shards on 12 partitions", cfg.seed, lines, cfg.rate)
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5a4d))
	moment := func() time.Duration { return 300*time.Millisecond + time.Duration(rng.Int64N(int64(2*time.Second))) }
	_, fed, stopFeed := e.startFeed(lines, cfg.rate)

	n := 0
	replica := func() *chaos.Processor {
		n++
		return e.start(fmt.Sprintf("replica-%02d", n))
	}
	alive := []*chaos.Processor{replica(), replica(), replica()}
	pick := func() int { return rng.IntN(len(alive)) }
	check := func() {
		for _, p := range alive {
			if p.Exited() {
				t.Fatalf("%s exited by itself: %s%s", p.Name, p.ExitError(), p.LogTail(20))
			}
		}
	}
	var events []string
	step := func(what string, do func()) {
		time.Sleep(moment())
		check()
		do()
		events = append(events, what)
		c, _, _ := e.meta(context.Background())
		t.Logf("%s (every task committed up to %d)", what, c)
	}
	for range 3 {
		step("SIGKILL a replica and start another", func() {
			i := pick()
			alive[i].Kill()
			<-alive[i].Done()
			alive[i] = replica()
		})
	}
	step("SIGSTOP a replica past its leases, then SIGCONT", func() {
		p := alive[pick()]
		p.Signal(syscall.SIGSTOP)
		time.Sleep(3 * time.Second)
		p.Signal(syscall.SIGCONT)
	})
	step("scale 3 → 2", func() {
		i := pick()
		e.stop(alive[i])
		alive = slices.Delete(alive, i, i+1)
	})
	step("scale 2 → 4", func() { alive = append(alive, replica(), replica()) })
	step("restart Redis", func() {
		if err := rds.Kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if err := rds.Restart(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	step("SIGKILL a replica", func() {
		i := pick()
		alive[i].Kill()
		<-alive[i].Done()
		alive = slices.Delete(alive, i, i+1)
	})
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	e.waitDrained(10*time.Minute, alive[0])
	for _, p := range alive {
		e.stop(p)
	}
	rep, in := e.verify()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if got, want := e.shardedTotals(ctx), in.Totals(); !maps.Equal(got, want) {
		t.Errorf("the count tasks' totals: %d IPs, want the input's %d (e.g. %s)", len(got), len(want), firstDiff(got, want))
	}
	e.checkMarkersOnce(ctx)
	fmt.Printf("sharded chaos: events=%d %s\n", len(events), rep)
	if !rep.OK() || rep.Batches < 10 {
		t.Fatalf("sharded chaos: %s", rep)
	}
}
