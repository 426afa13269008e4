package chaos_test

import (
	"context"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
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
