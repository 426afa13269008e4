package state_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

// TestCheckOnACluster checks every node of a cluster and names the ones
// whose settings can lose checkpoints, and those it cannot read.
func TestCheckOnACluster(t *testing.T) {
	c := redistest.RequireCluster(t, 3, redistest.Options{})
	rdb := c.Client()
	defer rdb.Close()
	ctx := context.Background()
	s, err := state.NewRedis(rdb, state.Config{Job: "check"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Check(ctx); len(got) != 0 {
		t.Fatalf("warnings on a cluster of AOF and noeviction: %q", got)
	}
	for _, set := range []struct {
		node         int
		param, value string
	}{{1, "maxmemory-policy", "allkeys-lru"}, {2, "appendonly", "no"}} {
		node := c.Node(set.node).Client()
		err := node.ConfigSet(ctx, set.param, set.value).Err()
		node.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"Redis node " + c.Node(1).Addr() + " maxmemory-policy is \"allkeys-lru\"",
		"Redis node " + c.Node(2).Addr() + " persistence is off",
	}
	got := s.Check(ctx)
	if len(got) != len(want) {
		t.Fatalf("warnings %q, want %d", got, len(want))
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("warnings %q, want one that starts %q", got, w)
		}
	}
	if err := c.KillNode(0); err != nil {
		t.Fatal(err)
	}
	got = s.Check(ctx)
	if !strings.Contains(strings.Join(got, "\n"), "cannot read Redis node "+c.Node(0).Addr()+" settings") {
		t.Errorf("warnings with node 0 down: %q, want one that it cannot be read", got)
	}
}

// jobOn returns a job name with prefix whose keys node serves (on == true),
// or another node does.
func jobOn(t *testing.T, c *redistest.Cluster, prefix string, node int, on bool) string {
	t.Helper()
	for n := range 1000 {
		job := fmt.Sprintf("%s-%d", prefix, n)
		i, err := c.NodeFor(context.Background(), "{dstream:"+job+"}:meta")
		if err != nil {
			t.Fatal(err)
		}
		if (i == node) == on {
			return job
		}
	}
	t.Fatalf("no job %s-N on node %d (%v) among 1000", prefix, node, on)
	return ""
}

// TestClusterMasterRestart kills the master that holds a job in the middle
// of a batch: the job's writes fail with errors the engine retries (not a
// conflict, not fenced, not permanent) while a job on another master goes
// on; restarted from its AOF, the master has all the job acknowledged, and
// the retried commit completes the batch.
func TestClusterMasterRestart(t *testing.T) {
	c := redistest.RequireCluster(t, 3, redistest.Options{})
	ctx := context.Background()
	o := c.ClusterOptions()
	o.MaxRetries = 1 // fail fast while the master is down; the test retries
	rdb := redis.NewClusterClient(o)
	defer rdb.Close()
	b := backend{rdb: rdb, cluster: c}
	const victim = 0
	jobs := []string{jobOn(t, c, "restart-victim", victim, true), jobOn(t, c, "restart-bystander", victim, false)}
	stores := make([]*state.Redis, len(jobs))
	for i, job := range jobs {
		stores[i] = openStore(t, b, job)
		if _, err := stores[i].Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		commitBatch(t, stores[i], 1, []string{"a"}, "a")
		commitBatch(t, stores[i], 2, []string{"a"}, "a")
	}
	s := stores[0]
	if err := s.RecordPlan(ctx, microbatch.Plan{ID: 3, Time: time.Unix(3, 0).UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := s.Prepare(ctx, 3, []microbatch.Delta{{Op: "a", Batch: 3, Data: []byte("a3")}}); err != nil {
		t.Fatal(err)
	}

	if err := c.KillNode(victim); err != nil {
		t.Fatal(err)
	}
	commit := func() error {
		return s.Commit(ctx, microbatch.Checkpoint{Batch: 3, KeepFrom: 1,
			Segments: []microbatch.Segment{{Op: "a", Index: 0, Data: []byte("S@3")}},
			Drop:     []microbatch.Delta{{Op: "a", Batch: 1}}})
	}
	t0 := time.Now()
	err := commit()
	t.Logf("commit with the master down failed after %v: %v", time.Since(t0).Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("a commit went through with the job's master down")
	}
	if errors.Is(err, microbatch.ErrConflict) || errors.Is(err, microbatch.ErrPermanent) || errors.Is(err, microbatch.ErrFenced) {
		t.Fatalf("commit with the job's master down: %v; want an error the engine retries", err)
	}
	commitBatch(t, stores[1], 3, []string{"a"}, "a") // the other masters serve on

	t0 = time.Now()
	if err := c.RestartNode(ctx, victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("node %d restarted, the cluster ok again after %v", victim, time.Since(t0).Round(time.Millisecond))
	if err := commit(); err != nil {
		t.Fatalf("the commit retried after the restart: %v", err)
	}
	if err := s.Renew(ctx); err != nil {
		t.Fatalf("renew after the restart: %v", err)
	}
	if got, want := stateOf(t, s, "a"), map[string]string{"d2": "a2", "d3": "a3", "s0": "S@3"}; !maps.Equal(got, want) {
		t.Errorf("state after the restart: %q, want %q", got, want)
	}
	for i, st := range stores {
		if err := st.Release(ctx); err != nil {
			t.Fatal(err)
		}
		m, err := openStore(t, b, jobs[i]).Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Committed != 3 || m.Prepared != 0 {
			t.Errorf("job %s after the restart: %+v, want batch 3 committed", jobs[i], m)
		}
		plans, err := st.Plans(ctx, 1, 3)
		if err != nil || len(plans) != 3 {
			t.Errorf("job %s: plans %v, %v; want 1 to 3", jobs[i], plans, err)
		}
	}
}
