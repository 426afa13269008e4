package chaos_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/state"
)

// TestRedisCluster runs the reference job with its checkpoints on a real
// Redis Cluster of three masters (DSTREAM_REDIS_ADDR lists them; AOF fsynced
// on every write). A first run drains a preloaded input and is verified
// exactly once, with the running totals in Redis. Then, while a feed writes
// more, the master that holds the job is killed in the middle of the second
// run, stays down longer than the lease, and is restarted from its AOF: the
// processor rides it out without exiting, drains the input, and the output
// and the totals are verified again: nothing lost, doubled or wrong.
func TestRedisCluster(t *testing.T) {
	cluster := redistest.RequireCluster(t, 3, redistest.Options{})
	e := newEnv(t, kafkatest.Shared(t), nil, envOptions{leaseTTL: time.Second, ratePerSec: 1000, seed: 17, cluster: cluster})
	ctx := context.Background()
	victim, err := cluster.NodeFor(ctx, "{dstream:"+e.job+"}:meta")
	if err != nil {
		t.Fatal(err)
	}

	_, fed, stopFeed := e.startFeed(20_000, 0)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	first := e.start("first")
	e.waitDrained(3*time.Minute, first)
	e.stop(first)
	rep, in := e.verify()
	if !rep.OK() || rep.Batches < 3 {
		t.Fatalf("output of the first run: %s", rep)
	}
	e.verifyTotals(in)
	firstRun, _, err := e.meta(ctx)
	if err != nil {
		t.Fatal(err)
	}

	_, fed, stopFeed = e.startFeed(30_000, 5_000)
	second := e.start("second")
	e.waitCommitted(firstRun+3, time.Minute, second)
	t0 := time.Now()
	if err := cluster.KillNode(victim); err != nil {
		t.Fatal(err)
	}
	waitOrExit(second, 3*time.Second/2) // longer than the lease
	if err := cluster.RestartNode(ctx, victim); err != nil {
		t.Fatal(err)
	}
	atRestart, _, err := e.meta(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("master %d (%s), which holds the job, killed and restarted under %s: down for %v, committed %d",
		victim, cluster.Node(victim).Addr(), second.Name, time.Since(t0).Round(time.Millisecond), atRestart)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	e.waitDrained(5*time.Minute, second)
	if !second.Logged("connection refused") && !second.Logged("CLUSTERDOWN") {
		t.Errorf("%s never found the job's master down%s", second.Name, second.LogTail(20))
	}
	e.stop(second)
	rep, in = e.verify()
	if !rep.OK() || rep.Last <= atRestart {
		t.Fatalf("output across the master's restart (committed %d then): %s", atRestart, rep)
	}
	e.verifyTotals(in)
	t.Logf("%d lines over two runs, a master restarted: %s", in.Lines, rep)
}

// TestShardedJobOnRedisCluster runs the reference job sharded in 3 on 3
// replicas with its 7 tasks' checkpoints on a real 3-master Redis Cluster:
// each task's keys carry its own hash tag, so the tasks spread over the
// masters. The master that holds the most tasks is killed mid-run, stays
// down past the lease and is restarted from its AOF. The output is exactly
// once and right against the input, the count tasks' totals are the
// input's, and the results equal, batch by batch, the unsharded job's on
// one replica and a single Redis.
func TestShardedJobOnRedisCluster(t *testing.T) {
	cluster := redistest.RequireCluster(t, 3, redistest.Options{})
	e := newEnv(t, kafkatest.Shared(t), nil, envOptions{leaseTTL: time.Second, ratePerSec: preloadedRate, seed: 43, partitions: 12, shards: 3, cluster: cluster})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, fed, stopFeed := e.startFeed(30_000, 0)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	tasksOn := map[int][]string{}
	for _, names := range e.tasks {
		for _, task := range names {
			n, err := cluster.NodeFor(ctx, "{dstream:"+state.TaskJob(e.job, task)+"}:meta")
			if err != nil {
				t.Fatal(err)
			}
			tasksOn[n] = append(tasksOn[n], task)
		}
	}
	victim := 0
	for n, tasks := range tasksOn {
		if len(tasks) > len(tasksOn[victim]) {
			victim = n
		}
	}
	if len(tasksOn) < 2 {
		t.Errorf("the 7 tasks' checkpoints all sit on master %d: %v", victim, tasksOn)
	}

	var procs []*chaos.Processor
	for i := range 3 {
		procs = append(procs, e.start(fmt.Sprintf("replica-%d", i)))
	}
	e.waitCommitted(3, 2*time.Minute, procs...)
	if err := cluster.KillNode(victim); err != nil {
		t.Fatal(err)
	}
	waitOrExit(procs[0], 3*time.Second/2) // longer than the lease
	if err := cluster.RestartNode(ctx, victim); err != nil {
		t.Fatal(err)
	}
	atRestart, _, err := e.meta(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("master %d, holding tasks %v of %v, killed and restarted: every task committed up to %d then", victim, tasksOn[victim], tasksOn, atRestart)
	e.waitDrained(4*time.Minute, procs[0])
	e.waitWindowsPast(procs...)
	for _, p := range procs {
		e.stop(p)
	}
	rep, in := e.verify()
	if !rep.OK() || rep.Last <= atRestart {
		t.Fatalf("sharded on a Redis Cluster, a master restarted after batch %d: %s", atRestart, rep)
	}
	e.checkMarkersOnce(ctx)
	if got, want := e.shardedTotals(ctx), in.Totals(); !maps.Equal(got, want) {
		t.Errorf("the count tasks' totals: %d IPs, want the input's %d (e.g. %s)", len(got), len(want), firstDiff(got, want))
	}
	sharded := e.results(ctx)
	unsharded, _ := runPreloaded(t, redistest.Shared(t), 0, 1, e)
	if !maps.EqualFunc(sharded, unsharded, slices.Equal[[]string]) {
		t.Errorf("the results on a Redis Cluster differ from the unsharded job's: %d and %d batches", len(sharded), len(unsharded))
		for id, vs := range sharded {
			if !slices.Equal(vs, unsharded[id]) {
				t.Errorf("batch %s: %v, unsharded has %v", id, vs, unsharded[id])
				break
			}
		}
	}
	t.Logf("%d lines on 3 replicas, 7 tasks on %d masters, one restarted: %s", in.Lines, len(tasksOn), rep)
}
