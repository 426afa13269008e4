package state_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/state"
)

// TestMembers checks the member set of a sharded job's replicas on a real
// Redis: heartbeats list the live members in name order, a member that
// stops heartbeating drops out once its TTL passes (on Redis's clock), and
// one that leaves drops out at once.
func TestMembers(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	// Long enough that a slow machine keeps every pause well inside its
	// margin (half a TTL either side of the deadline).
	const ttl = 2 * time.Second
	job := "members-" + t.Name()
	first := state.NewMembers(rdb, job, "b-replica", ttl)
	silent := state.NewMembers(rdb, job, "a-replica", ttl)
	third := state.NewMembers(rdb, job, "c-replica", ttl)
	heartbeat := func(m *state.Members, want ...string) {
		t.Helper()
		got, err := m.Heartbeat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s's heartbeat: live %v, want %v", m.ID(), got, want)
		}
	}
	heartbeat(first, "b-replica")
	heartbeat(silent, "a-replica", "b-replica")
	heartbeat(third, "a-replica", "b-replica", "c-replica")
	// The silent member's last heartbeat is within its TTL for these two
	// rounds (half a TTL in all), past it after the next pause.
	for range 2 {
		time.Sleep(ttl / 4)
		heartbeat(first, "a-replica", "b-replica", "c-replica")
		heartbeat(third, "a-replica", "b-replica", "c-replica")
	}
	time.Sleep(ttl * 3 / 4)
	heartbeat(first, "b-replica", "c-replica")
	if err := third.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	heartbeat(first, "b-replica")
}

// TestShardsRecorded checks the recorded number of shards on a real Redis:
// the first claim records it, later claims in another number get the
// recorded one back, and only SetShards (a reset's last step) changes it.
func TestShardsRecorded(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	job := "shards-" + t.Name()
	if _, found, err := state.RecordedShards(ctx, rdb, job); err != nil || found {
		t.Fatalf("a new job: recorded found=%v err=%v, want none", found, err)
	}
	for _, claim := range []struct{ shards, want int }{{3, 3}, {4, 3}, {1, 3}} {
		got, err := state.ClaimShards(ctx, rdb, job, claim.shards)
		if err != nil || got != claim.want {
			t.Errorf("claim %d: got %d, %v; want %d", claim.shards, got, err, claim.want)
		}
	}
	if err := state.SetShards(ctx, rdb, job, 4); err != nil {
		t.Fatal(err)
	}
	if n, found, err := state.RecordedShards(ctx, rdb, job); err != nil || !found || n != 4 {
		t.Errorf("after SetShards(4): %d found=%v err=%v", n, found, err)
	}
	if got, _ := state.ClaimShards(ctx, rdb, job, 3); got != 4 {
		t.Errorf("claim 3 after SetShards(4): got %d, want 4", got)
	}
	if err := rdb.Set(ctx, "{dstream:"+job+"}:shards", "three", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := state.RecordedShards(ctx, rdb, job); err == nil {
		t.Error("a recorded number that is not one: no error")
	}
}
