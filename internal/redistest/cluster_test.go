package redistest_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/dstream-io/dstream/internal/redistest"
)

// TestClusterForms checks a new cluster: every node ok, in cluster mode with
// AOF and noeviction, and the slots split over all of them.
func TestClusterForms(t *testing.T) {
	c := redistest.RequireCluster(t, 3, redistest.Options{})
	ctx := testContext(t)
	if err := c.OK(ctx); err != nil {
		t.Fatalf("a new cluster is not ok: %v", err)
	}
	addrs := c.Addrs()
	if len(addrs) != 3 || addrs[0] == addrs[1] || addrs[1] == addrs[2] || addrs[0] == addrs[2] {
		t.Fatalf("Addrs = %v, want 3 distinct addresses", addrs)
	}
	for i := range c.Len() {
		cl := client(t, c.Node(i).ClientOptions())
		for param, want := range map[string]string{"cluster-enabled": "yes", "appendonly": "yes", "maxmemory-policy": "noeviction"} {
			got, err := cl.ConfigGet(ctx, param).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got[param] != want {
				t.Errorf("node %d: %s = %q, want %q", i, param, got[param], want)
			}
		}
	}
	ranges, err := c.Client().ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	slots := map[string]int{}
	for _, r := range ranges {
		slots[r.Nodes[0].Addr] += r.End - r.Start + 1
	}
	total := 0
	for _, a := range addrs {
		if slots[a] == 0 {
			t.Errorf("node %s serves no slot: %v", a, slots)
		}
		total += slots[a]
	}
	if total != 16384 || len(slots) != 3 {
		t.Errorf("slots by node %v: want all 16384 on the 3 nodes", slots)
	}
}

// TestClusterSpreadsHashTags writes keys of many hash tags through a cluster
// client: each lands on the node NodeFor names (which answers for it
// directly, while another node redirects), and every node gets some.
func TestClusterSpreadsHashTags(t *testing.T) {
	c := redistest.RequireCluster(t, 3, redistest.Options{})
	ctx := testContext(t)
	cc := c.Client()
	t.Cleanup(func() { cc.Close() })
	nodes := make([]*redis.Client, c.Len())
	for i := range nodes {
		nodes[i] = client(t, c.Node(i).ClientOptions())
	}
	perNode := make([]int64, c.Len())
	for n := range 60 {
		key := fmt.Sprintf("{tag-%d}:k", n)
		if err := cc.Set(ctx, key, n, 0).Err(); err != nil {
			t.Fatal(err)
		}
		i, err := c.NodeFor(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		perNode[i]++
		if got := get(ctx, t, nodes[i], key); got != fmt.Sprint(n) {
			t.Errorf("node %d, which serves %s, has %q, want %d", i, key, got, n)
		}
		other := nodes[(i+1)%len(nodes)]
		if err := other.Get(ctx, key).Err(); err == nil || !strings.HasPrefix(err.Error(), "MOVED") {
			t.Errorf("GET %s on a node that does not serve it: %v, want MOVED", key, err)
		}
	}
	for i, want := range perNode {
		if want == 0 {
			t.Errorf("node %d got none of the 60 hash tags: %v", i, perNode)
		}
		if got, err := nodes[i].DBSize(ctx).Result(); err != nil || got != want {
			t.Errorf("node %d: DBSIZE %d (%v), want %d", i, got, err, want)
		}
	}
}

// TestClusterNodeRestart kills a master: its keys are unavailable while the
// other nodes serve theirs; restarted from its AOF, it has every write it
// acknowledged and the cluster is ok again, to the same client.
func TestClusterNodeRestart(t *testing.T) {
	c := redistest.RequireCluster(t, 3, redistest.Options{})
	ctx := testContext(t)
	cc := c.Client()
	t.Cleanup(func() { cc.Close() })
	// A key on each node.
	keys := make([]string, c.Len())
	for n, found := 0, 0; found < len(keys); n++ {
		key := fmt.Sprintf("{restart-%d}:k", n)
		i, err := c.NodeFor(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if keys[i] == "" {
			keys[i] = key
			found++
			if err := cc.Set(ctx, key, "before", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	const victim = 1
	if err := c.KillNode(victim); err != nil {
		t.Fatal(err)
	}
	if c.OK(ctx) == nil {
		t.Error("OK passed with a node killed")
	}
	if err := cc.Get(ctx, keys[victim]).Err(); err == nil {
		t.Errorf("GET %s from a killed node succeeded", keys[victim])
	}
	for i, key := range keys {
		if i == victim {
			continue
		}
		if err := cc.Set(ctx, key, "during", 0).Err(); err != nil {
			t.Errorf("SET %s on node %d while node %d is down: %v", key, i, victim, err)
		}
	}
	if err := c.RestartNode(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if err := c.OK(ctx); err != nil {
		t.Fatalf("after RestartNode: %v", err)
	}
	for i, key := range keys {
		want := "during"
		if i == victim {
			want = "before"
		}
		got, err := cc.Get(ctx, key).Result()
		if err != nil || got != want {
			t.Errorf("after the restart GET %s = %q, %v; want %q", key, got, err, want)
		}
	}
	if err := cc.Set(ctx, keys[victim], "after", 0).Err(); err != nil {
		t.Errorf("SET on the restarted node: %v", err)
	}
}

// TestClusterAuth creates a cluster whose nodes take an ACL user (redis-cli
// logs in as it): clients log in as the user, and not without a password.
func TestClusterAuth(t *testing.T) {
	c := redistest.RequireCluster(t, 3, redistest.Options{Password: "default-secret", User: &redistest.User{Name: "alice", Password: "alice-secret"}})
	ctx := testContext(t)
	cc := c.Client()
	t.Cleanup(func() { cc.Close() })
	if err := cc.Set(ctx, "{auth}:k", "v", 0).Err(); err != nil {
		t.Fatalf("SET as the ACL user: %v", err)
	}
	o := c.ClusterOptions()
	o.Username, o.Password = "", ""
	anon := redis.NewClusterClient(o)
	t.Cleanup(func() { anon.Close() })
	if err := anon.Get(ctx, "{auth}:k").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("GET without a password: %v, want NOAUTH", err)
	}
}

func TestStartClusterWithout(t *testing.T) {
	for _, test := range []struct {
		name         string
		n            int
		opts         redistest.Options
		notInstalled bool
	}{
		{"redis-server", 3, redistest.Options{Binary: filepath.Join(t.TempDir(), "redis-server")}, true},
		{"redis-cli", 3, redistest.Options{CLI: filepath.Join(t.TempDir(), "redis-cli")}, true},
		{"three masters", 2, redistest.Options{}, false},
	} {
		t.Run(test.name, func(t *testing.T) {
			c, err := redistest.StartCluster(context.Background(), test.n, test.opts)
			if err == nil {
				c.Close()
				t.Fatal("StartCluster succeeded")
			}
			if errors.Is(err, redistest.ErrNotInstalled) != test.notInstalled {
				t.Fatalf("StartCluster: %v; want ErrNotInstalled: %v", err, test.notInstalled)
			}
		})
	}
}
