package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dstream-io/dstream/microbatch"
)

// FormatVersion is the checkpoint layout this build reads and writes.
const FormatVersion = "1"

// Client is the part of a Redis client the store uses; *redis.Client and
// *redis.ClusterClient satisfy it.
type Client interface {
	redis.Scripter
	HScan(ctx context.Context, key string, cursor uint64, match string, count int64) *redis.ScanCmd
	HMGet(ctx context.Context, key string, fields ...string) *redis.SliceCmd
	ConfigGet(ctx context.Context, parameter string) *redis.MapStringStringCmd
}

// Config configures a Redis store.
type Config struct {
	// Job names the job: its keys and its lease. Required.
	Job string
	// LeaseTTL is how long the active instance holds the job without
	// renewing (default 5s). A standby takes over this long after the
	// active instance stopped renewing.
	LeaseTTL time.Duration
	// Owner identifies this instance in the lease (default: random).
	Owner string
}

// Validate reports settings that cannot work, saying what to change.
func (c Config) Validate() error {
	var errs []error
	if c.Job == "" {
		errs = append(errs, errors.New("state: the job id is empty: set it"))
	}
	if strings.ContainsAny(c.Job, "{}") {
		errs = append(errs, fmt.Errorf("state: job id %q: braces are not allowed (they form the Redis hash tag)", c.Job))
	}
	if c.LeaseTTL != 0 && c.LeaseTTL < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("state: lease TTL %v: use at least 100ms", c.LeaseTTL))
	}
	return errors.Join(errs...)
}

// Redis is a microbatch.Store in Redis. One Redis value is one instance of a
// job: create one per process.
type Redis struct {
	rdb   Client
	cfg   Config
	log   zerolog.Logger
	keys  keys
	epoch uint64
}

type keys struct {
	meta, lease, plans, pending, statePrefix string
}

// Option configures a Redis store.
type Option func(*Redis)

// WithLogger sets the store's logger.
func WithLogger(l zerolog.Logger) Option {
	return func(r *Redis) { r.log = l.With().Str("component", "state").Logger() }
}

// NewRedis returns the store of job cfg.Job in rdb.
func NewRedis(rdb Client, cfg Config, opts ...Option) (*Redis, error) {
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.Owner == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		cfg.Owner = hex.EncodeToString(b)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tag := "{dstream:" + cfg.Job + "}"
	r := &Redis{rdb: rdb, cfg: cfg, log: zerolog.Nop(), keys: keys{
		meta: tag + ":meta", lease: tag + ":lease", plans: tag + ":plans",
		pending: tag + ":pending", statePrefix: tag + ":state:",
	}}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// Epoch returns the fencing epoch this instance acquired (0 before).
func (r *Redis) Epoch() uint64 { return r.epoch }

// Check inspects the server's settings and returns warnings about ones that
// can lose checkpoints: eviction and disabled persistence.
func (r *Redis) Check(ctx context.Context) []string {
	var warnings []string
	policy, err := r.rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return []string{fmt.Sprintf("cannot read Redis settings (CONFIG GET: %v): make sure maxmemory-policy is noeviction and persistence is on", err)}
	}
	if p := policy["maxmemory-policy"]; p != "" && p != "noeviction" {
		warnings = append(warnings, fmt.Sprintf("Redis maxmemory-policy is %q: it may evict checkpoint keys; set it to noeviction", p))
	}
	aof, _ := r.rdb.ConfigGet(ctx, "appendonly").Result()
	save, _ := r.rdb.ConfigGet(ctx, "save").Result()
	if aof["appendonly"] != "yes" {
		if strings.TrimSpace(save["save"]) == "" {
			warnings = append(warnings, "Redis persistence is off (appendonly no, no save points): a Redis restart loses every checkpoint; set appendonly yes")
		} else {
			warnings = append(warnings, "Redis AOF is off: snapshots alone lose the checkpoints written since the last one; set appendonly yes")
		}
	}
	return warnings
}

var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return false end
local v = redis.call('HGET', KEYS[2], 'version')
if v and v ~= ARGV[3] then return {-1, v} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'version', ARGV[3])
local epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
local m = redis.call('HMGET', KEYS[2], 'committed', 'planned', 'prepared')
return {epoch, m[1] or '0', m[2] or '0', m[3] or '0'}
`)

// Acquire implements microbatch.Store: it waits while another instance
// holds a live lease, then takes the job and fences earlier holders.
func (r *Redis) Acquire(ctx context.Context) (microbatch.Meta, error) {
	waiting := false
	for {
		res, err := acquireScript.Run(ctx, r.rdb, []string{r.keys.lease, r.keys.meta},
			r.cfg.Owner, r.cfg.LeaseTTL.Milliseconds(), FormatVersion).Slice()
		switch {
		case errors.Is(err, redis.Nil):
			if !waiting {
				r.log.Info().Str("job", r.cfg.Job).Msg("another instance holds the job: standing by")
				waiting = true
			}
			t := time.NewTimer(r.cfg.LeaseTTL / 4)
			select {
			case <-ctx.Done():
				t.Stop()
				return microbatch.Meta{}, ctx.Err()
			case <-t.C:
			}
			continue
		case err != nil:
			return microbatch.Meta{}, fmt.Errorf("state: acquire %s: %w", r.cfg.Job, err)
		}
		if n, _ := res[0].(int64); n == -1 {
			return microbatch.Meta{}, permanentError{fmt.Errorf("state: the checkpoint of job %s has format version %v, this dstream reads version %s: "+
				"run the dstream version that wrote it, or reset the job by deleting its keys "+
				"(redis-cli --scan --pattern '{dstream:%s}:*' | xargs redis-cli del)", r.cfg.Job, res[1], FormatVersion, r.cfg.Job)}
		}
		nums := make([]uint64, 4)
		for i, v := range res {
			switch v := v.(type) {
			case int64:
				nums[i] = uint64(v)
			case string:
				nums[i], _ = strconv.ParseUint(v, 10, 64)
			}
		}
		r.epoch = nums[0]
		return microbatch.Meta{Epoch: nums[0], Committed: nums[1], Planned: nums[2], Prepared: nums[3]}, nil
	}
}

// ErrCheckpointLost means the job's checkpoint vanished from Redis while
// this instance held the job: Redis was flushed, evicted the keys or
// restarted without persistence. Going on would count from zero, so it is
// permanent (errors.Is(err, microbatch.ErrPermanent)).
var ErrCheckpointLost error = permanentError{errors.New("the checkpoint vanished from Redis (flushed, evicted, or restarted without persistence): " +
	"refusing to continue; run Redis with appendonly yes and maxmemory-policy noeviction, and reset the job's checkpoint and output topic to start over")}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ error }

func (e permanentError) Is(target error) bool { return target == microbatch.ErrPermanent }
func (e permanentError) Unwrap() error        { return e.error }

// fenced runs a write script whose first KEYS entry is meta and whose first
// ARGV is the epoch; scripts return "fenced" or "conflict:…" on failure.
func (r *Redis) write(ctx context.Context, what string, s *redis.Script, keys []string, args ...any) error {
	res, err := s.Run(ctx, r.rdb, keys, append([]any{r.epoch}, args...)...).Text()
	if err != nil {
		return fmt.Errorf("state: %s: %w", what, err)
	}
	switch {
	case res == "ok":
		return nil
	case res == "fenced":
		return fmt.Errorf("state: %s: %w (epoch %d)", what, microbatch.ErrFenced, r.epoch)
	case res == "lost":
		return fmt.Errorf("state: %s: job %s: %w", what, r.cfg.Job, ErrCheckpointLost)
	case strings.HasPrefix(res, "conflict"):
		return fmt.Errorf("state: %s: %w: %s", what, microbatch.ErrConflict, res)
	}
	return fmt.Errorf("state: %s: unexpected reply %q", what, res)
}

// epochCheck starts every write script.
const epochCheck = `
local m = redis.call('HMGET', KEYS[1], 'epoch', 'committed', 'planned', 'prepared')
if not m[1] then return 'lost' end
if m[1] ~= ARGV[1] then return 'fenced' end
local committed, planned, prepared = tonumber(m[2] or '0'), tonumber(m[3] or '0'), tonumber(m[4] or '0')
`

var renewScript = redis.NewScript(epochCheck + `
local cur = redis.call('GET', KEYS[2])
if cur and cur ~= ARGV[2] then return 'fenced' end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 'ok'
`)

// Renew implements microbatch.Store. A lease that lapsed (renewals failed
// while Redis restarted) is taken again if no other instance acquired the
// job meanwhile: the epoch is still this instance's.
func (r *Redis) Renew(ctx context.Context) error {
	return r.write(ctx, "renew lease", renewScript, []string{r.keys.meta, r.keys.lease}, r.cfg.Owner, r.cfg.LeaseTTL.Milliseconds())
}

var releaseScript = redis.NewScript(epochCheck + `
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 'ok'
`)

// Release implements microbatch.Store.
func (r *Redis) Release(ctx context.Context) error {
	err := r.write(ctx, "release lease", releaseScript, []string{r.keys.meta, r.keys.lease}, r.cfg.Owner)
	if errors.Is(err, microbatch.ErrFenced) {
		return nil // someone else holds it already
	}
	return err
}

var recordPlanScript = redis.NewScript(epochCheck + `
local id = tonumber(ARGV[2])
if planned >= id then
  if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then return 'ok' end
  return 'conflict: plan ' .. ARGV[2] .. ' is recorded with other ranges'
end
if id ~= planned + 1 or id ~= committed + 1 then
  return 'conflict: plan ' .. ARGV[2] .. ' after planned ' .. planned .. ', committed ' .. committed
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[1], 'planned', ARGV[2])
return 'ok'
`)

// RecordPlan implements microbatch.Store.
func (r *Redis) RecordPlan(ctx context.Context, p microbatch.Plan) error {
	data, err := encodePlan(p)
	if err != nil {
		return err
	}
	return r.write(ctx, fmt.Sprintf("record plan %d", p.ID), recordPlanScript,
		[]string{r.keys.meta, r.keys.plans}, p.ID, data)
}

// Plans implements microbatch.Store.
func (r *Redis) Plans(ctx context.Context, from, to uint64) ([]microbatch.Plan, error) {
	var out []microbatch.Plan
	for lo := from; lo <= to; lo += 1000 {
		hi := min(to, lo+999)
		fields := make([]string, 0, hi-lo+1)
		for id := lo; id <= hi; id++ {
			fields = append(fields, strconv.FormatUint(id, 10))
		}
		vals, err := r.rdb.HMGet(ctx, r.keys.plans, fields...).Result()
		if err != nil {
			return nil, fmt.Errorf("state: load plans %d-%d: %w", lo, hi, err)
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			p, err := decodePlan(s)
			if err != nil {
				return nil, fmt.Errorf("state: plan %s: %w", fields[i], err)
			}
			out = append(out, p)
		}
		if hi == to {
			break
		}
	}
	return out, nil
}

// LoadState implements microbatch.Store.
func (r *Redis) LoadState(ctx context.Context, op string, fn func(key, value []byte) error) error {
	key := r.keys.statePrefix + op
	var cursor uint64
	for {
		kvs, next, err := r.rdb.HScan(ctx, key, cursor, "", 10000).Result()
		if err != nil {
			return fmt.Errorf("state: load %s: %w", op, err)
		}
		for i := 0; i+1 < len(kvs); i += 2 {
			if err := fn([]byte(kvs[i]), []byte(kvs[i+1])); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

var prepareScript = redis.NewScript(epochCheck + `
local id = tonumber(ARGV[2])
if id ~= committed + 1 or id ~= planned then
  return 'conflict: prepare ' .. ARGV[2] .. ' with committed ' .. committed .. ', planned ' .. planned
end
redis.call('DEL', KEYS[2])
local n = #ARGV
local i = 3
while i <= n do
  local last = math.min(n, i + 999)
  redis.call('HSET', KEYS[2], unpack(ARGV, i, last))
  i = last + 1
end
redis.call('HSET', KEYS[1], 'prepared', ARGV[2])
return 'ok'
`)

// Prepare implements microbatch.Store.
func (r *Redis) Prepare(ctx context.Context, batch uint64, changes []microbatch.Change) error {
	args := make([]any, 0, 1+2*len(changes))
	args = append(args, batch)
	for _, c := range changes {
		field := make([]byte, 0, len(c.Op)+1+len(c.Key))
		field = append(append(append(field, c.Op...), 0), c.Key...)
		var val []byte
		if c.Delete {
			val = []byte{0}
		} else {
			val = append(append(make([]byte, 0, 1+len(c.Value)), 1), c.Value...)
		}
		args = append(args, field, val)
	}
	return r.write(ctx, fmt.Sprintf("prepare batch %d", batch), prepareScript,
		[]string{r.keys.meta, r.keys.pending}, args...)
}

var commitScript = redis.NewScript(epochCheck + `
local id = tonumber(ARGV[2])
if committed == id and prepared == 0 then return 'ok' end
if id ~= committed + 1 or prepared ~= id then
  return 'conflict: commit ' .. ARGV[2] .. ' with committed ' .. committed .. ', prepared ' .. prepared
end
local pending = redis.call('HGETALL', KEYS[2])
for i = 1, #pending, 2 do
  local f, v = pending[i], pending[i + 1]
  local sep = string.find(f, '\0', 1, true)
  local hash = ARGV[3] .. string.sub(f, 1, sep - 1)
  local key = string.sub(f, sep + 1)
  if string.byte(v, 1) == 0 then
    redis.call('HDEL', hash, key)
  else
    redis.call('HSET', hash, key, string.sub(v, 2))
  end
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'committed', ARGV[2], 'prepared', '0', 'offsets', ARGV[5])
local keep = tonumber(ARGV[4])
local trimmed = tonumber(redis.call('HGET', KEYS[1], 'trimmed') or '1')
if keep > trimmed then
  for p = trimmed, keep - 1 do redis.call('HDEL', KEYS[3], tostring(p)) end
  redis.call('HSET', KEYS[1], 'trimmed', keep)
end
return 'ok'
`)

// Commit implements microbatch.Store.
func (r *Redis) Commit(ctx context.Context, batch, keepFrom uint64) error {
	offsets := ""
	if plans, err := r.Plans(ctx, batch, batch); err == nil && len(plans) == 1 {
		offsets = plans[0].OffsetsHeader()
	}
	return r.write(ctx, fmt.Sprintf("commit batch %d", batch), commitScript,
		[]string{r.keys.meta, r.keys.pending, r.keys.plans}, batch, r.keys.statePrefix, keepFrom, offsets)
}

var discardScript = redis.NewScript(epochCheck + `
if prepared == tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'prepared', '0')
end
return 'ok'
`)

// Discard implements microbatch.Store.
func (r *Redis) Discard(ctx context.Context, batch uint64) error {
	return r.write(ctx, fmt.Sprintf("discard batch %d", batch), discardScript,
		[]string{r.keys.meta, r.keys.pending}, batch)
}

// planJSON is the stored form of a plan.
type planJSON struct {
	ID     uint64      `json:"id"`
	Time   time.Time   `json:"time"`
	Ranges []rangeJSON `json:"ranges"`
}

type rangeJSON struct {
	Topic     string `json:"t"`
	Partition int32  `json:"p"`
	From      int64  `json:"f"`
	Until     int64  `json:"u"`
}

func encodePlan(p microbatch.Plan) (string, error) {
	pj := planJSON{ID: p.ID, Time: p.Time.UTC(), Ranges: make([]rangeJSON, len(p.Ranges))}
	for i, r := range p.Ranges {
		pj.Ranges[i] = rangeJSON(r)
	}
	b, err := json.Marshal(pj)
	if err != nil {
		return "", fmt.Errorf("state: encode plan %d: %w", p.ID, err)
	}
	return string(b), nil
}

func decodePlan(s string) (microbatch.Plan, error) {
	var pj planJSON
	if err := json.Unmarshal([]byte(s), &pj); err != nil {
		return microbatch.Plan{}, fmt.Errorf("decode: %w", err)
	}
	p := microbatch.Plan{ID: pj.ID, Time: pj.Time.UTC(), Ranges: make([]microbatch.Range, len(pj.Ranges))}
	for i, r := range pj.Ranges {
		p.Ranges[i] = microbatch.Range(r)
	}
	return p, nil
}
