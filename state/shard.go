package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The keys a sharded job's tasks share sit under the job's own hash tag,
// {dstream:<job>}; each task's checkpoint under its own, {dstream:<job>/<task>}
// (TaskJob), so that on Redis Cluster the tasks spread over its masters.

// TaskJob is the job name of task of a sharded job: its keys and lease.
func TaskJob(job, task string) string { return job + "/" + task }

var firstBatchScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`)

// FirstBatchTime returns the time of the first batch of sharded job job,
// which every task shares: the first task to ask sets it to proposed
// (docs/scale-out.md).
func FirstBatchTime(ctx context.Context, rdb Client, job string, proposed time.Time) (time.Time, error) {
	key := "{dstream:" + job + "}:timeline"
	v, err := firstBatchScript.Run(ctx, rdb, []string{key}, proposed.UTC().UnixNano()).Text()
	if err != nil {
		return time.Time{}, fmt.Errorf("state: the timeline of %s: %w", job, err)
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("state: the timeline of %s is %q: %w", job, v, err)
	}
	return time.Unix(0, ns).UTC(), nil
}

var holderScript = redis.NewScript(`return redis.call('GET', KEYS[1])`)

// Holder returns the owner of the job's live lease ("" when none holds it):
// the replica running a task of a sharded job.
func (r *Redis) Holder(ctx context.Context) (string, error) {
	owner, err := holderScript.Run(ctx, r.rdb, []string{r.keys.lease}).Text()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("state: holder of %s: %w", r.cfg.Job, err)
	}
	return owner, nil
}

// Members is the member set of a sharded job's replicas: each replica
// heartbeats its deadline into a sorted set; a member is live while its
// deadline is ahead. The replicas divide the job's tasks by it. Deadlines
// are on Redis's clock, as leases are, so replicas whose clocks disagree
// still agree on who is live.
type Members struct {
	rdb Client
	key string
	id  string
	ttl time.Duration
}

// NewMembers returns replica id's view of job's members, whose heartbeats
// last ttl.
func NewMembers(rdb Client, job, id string, ttl time.Duration) *Members {
	return &Members{rdb: rdb, key: "{dstream:" + job + "}:members", id: id, ttl: ttl}
}

var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`)

// ID is this member's name in the set.
func (m *Members) ID() string { return m.id }

// Heartbeat renews the member's deadline and returns the live members, in
// name order.
func (m *Members) Heartbeat(ctx context.Context) ([]string, error) {
	ids, err := heartbeatScript.Run(ctx, m.rdb, []string{m.key}, m.id, m.ttl.Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("state: heartbeat of %s: %w", m.id, err)
	}
	slices.Sort(ids)
	return ids, nil
}

var leaveScript = redis.NewScript(`return redis.call('ZREM', KEYS[1], ARGV[1])`)

// Leave removes the member at once, rather than when its deadline passes.
func (m *Members) Leave(ctx context.Context) error {
	if err := leaveScript.Run(ctx, m.rdb, []string{m.key}, m.id).Err(); err != nil {
		return fmt.Errorf("state: %s leaves: %w", m.id, err)
	}
	return nil
}

// The number of shards a job runs in is recorded at its first start: a
// keyed stage's state is divided by it, so a job may not start in another
// number; only `dstream reset` changes it (docs/scale-out.md).

func shardsKey(job string) string { return "{dstream:" + job + "}:shards" }

var claimShardsScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
`)

// ClaimShards records that job runs in shards shards unless a number is
// recorded already; it returns the recorded number.
func ClaimShards(ctx context.Context, rdb Client, job string, shards int) (int, error) {
	v, err := claimShardsScript.Run(ctx, rdb, []string{shardsKey(job)}, shards).Text()
	if err != nil {
		return 0, fmt.Errorf("state: the shards of %s: %w", job, err)
	}
	return parseShards(job, v)
}

var recordedShardsScript = redis.NewScript(`return redis.call('GET', KEYS[1])`)

// RecordedShards returns the number of shards recorded for job, and false
// if none is.
func RecordedShards(ctx context.Context, rdb Client, job string) (int, bool, error) {
	v, err := recordedShardsScript.Run(ctx, rdb, []string{shardsKey(job)}).Text()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("state: the shards of %s: %w", job, err)
	}
	n, err := parseShards(job, v)
	return n, err == nil, err
}

var setShardsScript = redis.NewScript(`return redis.call('SET', KEYS[1], ARGV[1])`)

// SetShards records that job runs in shards shards from now on: a reset's
// last step, once every task's checkpoint is reset.
func SetShards(ctx context.Context, rdb Client, job string, shards int) error {
	if err := setShardsScript.Run(ctx, rdb, []string{shardsKey(job)}, shards).Err(); err != nil {
		return fmt.Errorf("state: set the shards of %s: %w", job, err)
	}
	return nil
}

func parseShards(job, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("state: the shards of %s are recorded as %q, not a number ≥ 1", job, v)
	}
	return n, nil
}
