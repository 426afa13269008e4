package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dstream-io/dstream/microbatch"
)

// FormatVersion is the checkpoint layout this build reads and writes
// (docs/checkpoint.md).
const FormatVersion = "2"

// Client is the part of a Redis client the store uses; *redis.Client and
// *redis.ClusterClient satisfy it.
type Client interface {
	redis.Scripter
	Watch(ctx context.Context, fn func(*redis.Tx) error, keys ...string) error
	HScan(ctx context.Context, key string, cursor uint64, match string, count int64) *redis.ScanCmd
	HMGet(ctx context.Context, key string, fields ...string) *redis.SliceCmd
	ConfigGet(ctx context.Context, parameter string) *redis.MapStringStringCmd
}

var (
	_ Client        = (*redis.Client)(nil)
	_ Client        = (*redis.ClusterClient)(nil)
	_ HistoryClient = (*redis.Client)(nil)
	_ HistoryClient = (*redis.ClusterClient)(nil)
)

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

// stateKey is the hash of operator op's segments and deltas.
func (k keys) stateKey(op string) string { return k.statePrefix + op }

// Fields of a state hash: segment i is s<i>, the delta of batch n d<n>.
func segmentField(i uint32) string { return "s" + strconv.FormatUint(uint64(i), 10) }
func deltaField(n uint64) string   { return "d" + strconv.FormatUint(n, 10) }

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
		pending: tag + ":pending", statePrefix: tag + ":st:",
	}}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// Epoch returns the fencing epoch this instance acquired (0 before).
func (r *Redis) Epoch() uint64 { return r.epoch }

// Progress reads the job's progress without taking the job: for standbys'
// status, audits and tools. Meta.Epoch is the current holder's.
func (r *Redis) Progress(ctx context.Context) (microbatch.Meta, error) {
	vals, err := r.rdb.HMGet(ctx, r.keys.meta, "epoch", "committed", "planned", "prepared", "base", "graph").Result()
	if err != nil {
		return microbatch.Meta{}, fmt.Errorf("state: progress of %s: %w", r.cfg.Job, err)
	}
	num := func(i int) uint64 {
		s, _ := vals[i].(string)
		n, _ := strconv.ParseUint(s, 10, 64)
		return n
	}
	m := microbatch.Meta{Epoch: num(0), Committed: num(1), Planned: num(2), Prepared: num(3), Base: num(4)}
	if g, _ := vals[5].(string); g != "" {
		m.Graph = []byte(g)
	}
	return m, nil
}

// Check inspects the server's settings and returns warnings about ones that
// can lose checkpoints: eviction and disabled persistence. On a Redis
// Cluster it inspects every node, replicas too (a replica promoted by a
// failover serves the jobs of its master's slots), and names the node.
func (r *Redis) Check(ctx context.Context) []string {
	cluster, ok := r.rdb.(nodes)
	if !ok {
		return checkServer(ctx, r.rdb, "Redis")
	}
	var mu sync.Mutex
	var warnings []string
	err := cluster.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
		w := checkServer(ctx, node, "Redis node "+node.Options().Addr)
		mu.Lock()
		warnings = append(warnings, w...)
		mu.Unlock()
		return nil
	})
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("cannot list the Redis Cluster's nodes (%v): make sure every node has maxmemory-policy noeviction and persistence on", err))
	}
	slices.Sort(warnings) // nodes answer in any order
	return warnings
}

// nodes is what a Redis Cluster client (*redis.ClusterClient) has beyond
// Client: its nodes, each a client of its own.
type nodes interface {
	ForEachShard(ctx context.Context, fn func(ctx context.Context, node *redis.Client) error) error
}

// checkServer returns the warnings about one server's settings; who names
// it in them.
func checkServer(ctx context.Context, rdb interface {
	ConfigGet(ctx context.Context, parameter string) *redis.MapStringStringCmd
}, who string) []string {
	var warnings []string
	policy, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return []string{fmt.Sprintf("cannot read %s settings (CONFIG GET: %v): make sure maxmemory-policy is noeviction and persistence is on", who, err)}
	}
	if p := policy["maxmemory-policy"]; p != "" && p != "noeviction" {
		warnings = append(warnings, fmt.Sprintf("%s maxmemory-policy is %q: it may evict checkpoint keys; set it to noeviction", who, p))
	}
	aof, _ := rdb.ConfigGet(ctx, "appendonly").Result()
	save, _ := rdb.ConfigGet(ctx, "save").Result()
	if aof["appendonly"] != "yes" {
		if strings.TrimSpace(save["save"]) == "" {
			warnings = append(warnings, who+" persistence is off (appendonly no, no save points): a Redis restart loses every checkpoint; set appendonly yes")
		} else {
			warnings = append(warnings, who+" AOF is off: snapshots alone lose the checkpoints written since the last one; set appendonly yes")
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
local m = redis.call('HMGET', KEYS[2], 'committed', 'planned', 'prepared', 'base', 'graph')
return {epoch, m[1] or '0', m[2] or '0', m[3] or '0', m[4] or '0', m[5] or ''}
`)

// Acquire implements microbatch.Store: it waits while another instance
// holds a live lease, then takes the job and fences earlier holders.
func (r *Redis) Acquire(ctx context.Context) (microbatch.Meta, error) {
	waiting := false
	for {
		meta, ok, err := r.TryAcquire(ctx)
		if err != nil || ok {
			return meta, err
		}
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
	}
}

// TryAcquire is Acquire that does not wait: ok is false while another
// instance holds the job's lease.
func (r *Redis) TryAcquire(ctx context.Context) (meta microbatch.Meta, ok bool, err error) {
	res, err := acquireScript.Run(ctx, r.rdb, []string{r.keys.lease, r.keys.meta},
		r.cfg.Owner, r.cfg.LeaseTTL.Milliseconds(), FormatVersion).Slice()
	switch {
	case errors.Is(err, redis.Nil):
		return microbatch.Meta{}, false, nil
	case err != nil:
		return microbatch.Meta{}, false, fmt.Errorf("state: acquire %s: %w", r.cfg.Job, err)
	}
	if n, _ := res[0].(int64); n == -1 {
		return microbatch.Meta{}, false, permanentError{fmt.Errorf("state: the checkpoint of job %s has format version %v, this dstream reads version %s "+
			"(docs/checkpoint.md): run the dstream version that wrote it, or `dstream reset --yes` to start the job over "+
			"(its state goes; batch ids go on)", r.cfg.Job, res[1], FormatVersion)}
	}
	nums := make([]uint64, 5)
	for i, v := range res[:5] {
		switch v := v.(type) {
		case int64:
			nums[i] = uint64(v)
		case string:
			nums[i], _ = strconv.ParseUint(v, 10, 64)
		}
	}
	r.epoch = nums[0]
	meta = microbatch.Meta{Epoch: nums[0], Committed: nums[1], Planned: nums[2], Prepared: nums[3], Base: nums[4]}
	if g, _ := res[5].(string); g != "" {
		meta.Graph = []byte(g)
	}
	return meta, true, nil
}

// ErrCheckpointLost means the job's checkpoint vanished from Redis while
// this instance held the job: Redis was flushed, evicted the keys or
// restarted without persistence. The instance must stop writing, as if
// fenced (errors.Is(err, microbatch.ErrFenced)), and take the job again: its
// recovery recomputes the lost batches from the markers of the output
// (docs/checkpoint.md), or refuses if they cannot be.
var ErrCheckpointLost error = lostError{}

type lostError struct{}

func (lostError) Error() string {
	return "the checkpoint vanished from Redis (flushed, evicted, or restarted without persistence; " +
		"run Redis with appendonly yes and maxmemory-policy noeviction)"
}

func (lostError) Is(target error) bool { return target == microbatch.ErrFenced }

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

// recordPlanScript records the plans in ARGV[2…] (id, encoded plan, …):
// all of them, or none.
var recordPlanScript = redis.NewScript(epochCheck + `
local last = planned
for i = 2, #ARGV, 2 do
  local id = tonumber(ARGV[i])
  if id <= last then
    if id > planned or redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[i+1] then
      return 'conflict: plan ' .. ARGV[i] .. ' is recorded with other ranges'
    end
  elseif id ~= last + 1 then
    return 'conflict: plan ' .. ARGV[i] .. ' after planned ' .. last .. ', committed ' .. committed
  else
    last = id
  end
end
for i = 2, #ARGV, 2 do
  if tonumber(ARGV[i]) > planned then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+1]) end
end
if last > planned then redis.call('HSET', KEYS[1], 'planned', last) end
return 'ok'
`)

// RecordPlan implements microbatch.Store.
func (r *Redis) RecordPlan(ctx context.Context, plans ...microbatch.Plan) error {
	if len(plans) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(plans))
	for _, p := range plans {
		data, err := encodePlan(p)
		if err != nil {
			return err
		}
		args = append(args, p.ID, data)
	}
	what := fmt.Sprintf("record plan %d", plans[0].ID)
	if n := len(plans); n > 1 {
		what = fmt.Sprintf("record plans %d-%d", plans[0].ID, plans[n-1].ID)
	}
	return r.write(ctx, what, recordPlanScript, []string{r.keys.meta, r.keys.plans}, args...)
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
func (r *Redis) LoadState(ctx context.Context, op string, fn func(microbatch.StatePart) error) error {
	key := r.keys.stateKey(op)
	var cursor uint64
	for {
		// Values are large (a segment holds up to 65536 entries): a few
		// fields a call.
		kvs, next, err := r.rdb.HScan(ctx, key, cursor, "", 16).Result()
		if err != nil {
			return fmt.Errorf("state: load %s: %w", op, err)
		}
		for i := 0; i+1 < len(kvs); i += 2 {
			p, err := statePart(kvs[i], kvs[i+1])
			if err != nil {
				return permanentError{fmt.Errorf("state: load %s: %w", op, err)}
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// statePart parses a field of a state hash.
func statePart(field, value string) (microbatch.StatePart, error) {
	if len(field) > 1 {
		n, err := strconv.ParseUint(field[1:], 10, 64)
		switch {
		case err != nil:
		case field[0] == 's' && n <= 1<<32-1:
			return microbatch.StatePart{Kind: microbatch.SegmentPart, Index: uint32(n), Data: []byte(value)}, nil
		case field[0] == 'd':
			return microbatch.StatePart{Kind: microbatch.DeltaPart, Batch: n, Data: []byte(value)}, nil
		}
	}
	return microbatch.StatePart{}, fmt.Errorf("unknown field %q in a state hash", field)
}

// chunk bounds the fields of one HDEL in a transaction.
const chunk = 1000

// Prepare implements microbatch.Store: each delta goes to its operator's
// state hash as field d<batch>, where loads ignore it until the batch
// commits, and …:pending lists the operators, in a MULTI/EXEC transaction
// that Redis runs only if …:meta did not change since the epoch and batch
// id were checked (see cas).
func (r *Redis) Prepare(ctx context.Context, batch uint64, deltas []microbatch.Delta) error {
	ops := make([]string, 0, len(deltas))
	for _, d := range deltas {
		ops = append(ops, d.Op)
	}
	return r.cas(ctx, fmt.Sprintf("prepare batch %d", batch), func(tx *redis.Tx, m meta) (bool, error) {
		if batch <= m.committed || batch > m.planned {
			return false, conflictf("prepare %d with committed %d, planned %d", batch, m.committed, m.planned)
		}
		return false, nil
	}, func(p redis.Pipeliner, _ meta) {
		for _, d := range deltas {
			p.HSet(ctx, r.keys.stateKey(d.Op), deltaField(batch), d.Data)
		}
		p.Set(ctx, r.keys.pending, strings.Join(ops, "\n"), 0)
		p.HSet(ctx, r.keys.meta, "prepared", batch)
	})
}

// Commit implements microbatch.Store: in one MULTI/EXEC transaction that
// runs only if …:meta did not change since it was checked, the replaced
// operators' hashes go, the rewritten segments and the dropped deltas
// change, …:pending goes and committed becomes c.Batch.
func (r *Redis) Commit(ctx context.Context, c microbatch.Checkpoint) error {
	batch := c.Batch
	if c.KeepFrom > batch {
		return permanentError{fmt.Errorf("state: commit batch %d: keeping plans from %d, after the batch", batch, c.KeepFrom)}
	}
	offsets := ""
	return r.cas(ctx, fmt.Sprintf("commit batch %d", batch), func(tx *redis.Tx, m meta) (bool, error) {
		if m.committed == batch && m.prepared == 0 {
			return true, nil // a retry of a commit that went through
		}
		if batch <= m.committed || m.prepared != batch {
			return false, conflictf("commit %d with committed %d, prepared %d", batch, m.committed, m.prepared)
		}
		s, err := tx.HGet(ctx, r.keys.plans, strconv.FormatUint(batch, 10)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, err
		}
		if p, err := decodePlan(s); err == nil {
			offsets = p.OffsetsHeader()
		}
		return false, nil
	}, func(p redis.Pipeliner, m meta) {
		for _, op := range c.Replace {
			p.Unlink(ctx, r.keys.stateKey(op))
		}
		for _, seg := range c.Segments {
			p.HSet(ctx, r.keys.stateKey(seg.Op), segmentField(seg.Index), seg.Data)
		}
		drops := map[string][]string{}
		var dropOps []string
		for _, d := range c.Drop {
			if _, ok := drops[d.Op]; !ok {
				dropOps = append(dropOps, d.Op)
			}
			drops[d.Op] = append(drops[d.Op], deltaField(d.Batch))
		}
		for _, op := range dropOps {
			fields := drops[op]
			for i := 0; i < len(fields); i += chunk {
				p.HDel(ctx, r.keys.stateKey(op), fields[i:min(len(fields), i+chunk)]...)
			}
		}
		p.Unlink(ctx, r.keys.pending)
		p.HSet(ctx, r.keys.meta, "committed", batch, "prepared", 0, "offsets", offsets)
		if c.Graph != nil {
			p.HSet(ctx, r.keys.meta, "graph", c.Graph)
		}
		if c.KeepFrom > m.trimmed {
			ids := make([]string, 0, min(c.KeepFrom-m.trimmed, chunk))
			for id := m.trimmed; id < c.KeepFrom; id++ {
				ids = append(ids, strconv.FormatUint(id, 10))
				if len(ids) == chunk || id == c.KeepFrom-1 {
					p.HDel(ctx, r.keys.plans, ids...)
					ids = ids[:0]
				}
			}
			p.HSet(ctx, r.keys.meta, "trimmed", c.KeepFrom)
		}
	})
}

// meta is what the transactions check.
type meta struct {
	committed, planned, prepared, trimmed uint64
}

// conflictError is a compare-and-set that found other progress: the one
// error of a check that is microbatch.ErrConflict. Anything else a check
// returns (the network, a timeout) is left for the caller to retry.
type conflictError struct{ msg string }

func (e conflictError) Error() string        { return e.msg }
func (e conflictError) Is(target error) bool { return target == microbatch.ErrConflict }

func conflictf(format string, args ...any) error { return conflictError{fmt.Sprintf(format, args...)} }

// cas checks the caller's epoch against …:meta and runs check, which may
// read more (its reads see what the transaction will change); unless check
// fails or reports the work done, the commands queued by queue run in a
// MULTI/EXEC transaction. Redis runs it only if …:meta did not change since
// it was read (WATCH): an instance that took the job over meanwhile bumped
// the epoch, so a fenced instance cannot write. This keeps the atomicity and
// fencing of a script while the bulk of a batch's state travels as plain
// commands rather than through Lua, which costs ten times as much.
func (r *Redis) cas(ctx context.Context, what string, check func(tx *redis.Tx, m meta) (done bool, err error), queue func(p redis.Pipeliner, m meta)) error {
	var checkErr error
	for attempt := 1; ; attempt++ {
		checkErr = nil
		err := r.rdb.Watch(ctx, func(tx *redis.Tx) error {
			vals, err := tx.HMGet(ctx, r.keys.meta, "epoch", "committed", "planned", "prepared", "trimmed").Result()
			if err != nil {
				return err
			}
			num := func(i int, def uint64) uint64 {
				if s, ok := vals[i].(string); ok {
					if n, err := strconv.ParseUint(s, 10, 64); err == nil {
						return n
					}
				}
				return def
			}
			switch epoch, ok := vals[0].(string); {
			case !ok:
				checkErr = fmt.Errorf("job %s: %w", r.cfg.Job, ErrCheckpointLost)
				return nil
			case epoch != strconv.FormatUint(r.epoch, 10):
				checkErr = fmt.Errorf("%w (epoch %d)", microbatch.ErrFenced, r.epoch)
				return nil
			}
			m := meta{committed: num(1, 0), planned: num(2, 0), prepared: num(3, 0), trimmed: num(4, 1)}
			done, err := check(tx, m)
			if err != nil {
				if errors.Is(err, microbatch.ErrConflict) {
					checkErr = err
					return nil
				}
				return err
			}
			if done {
				return nil
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				queue(p, m)
				return nil
			})
			return err
		}, r.keys.meta)
		switch {
		case errors.Is(err, redis.TxFailedErr) && attempt < 10:
			continue // meta changed: check again
		case err != nil && ctx.Err() != nil:
			// A transaction's connection notices the cancellation only
			// at its read timeout: report the cause, not the timeout.
			return fmt.Errorf("state: %s: %w", what, ctx.Err())
		case err != nil:
			return fmt.Errorf("state: %s: %w", what, err)
		case checkErr != nil:
			return fmt.Errorf("state: %s: %w", what, checkErr)
		}
		return nil
	}
}

// Discard implements microbatch.Store: the prepared batch's deltas go from
// the state hashes …:pending lists.
func (r *Redis) Discard(ctx context.Context, batch uint64) error {
	var ops []string
	return r.cas(ctx, fmt.Sprintf("discard batch %d", batch), func(tx *redis.Tx, m meta) (bool, error) {
		if m.prepared != batch {
			return true, nil
		}
		list, err := tx.Get(ctx, r.keys.pending).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, err
		}
		ops = nil
		if list != "" {
			ops = strings.Split(list, "\n")
		}
		return false, nil
	}, func(p redis.Pipeliner, _ meta) {
		for _, op := range ops {
			p.HDel(ctx, r.keys.stateKey(op), deltaField(batch))
		}
		p.Unlink(ctx, r.keys.pending)
		p.HSet(ctx, r.keys.meta, "prepared", 0)
	})
}

// planJSON is the stored form of a plan.
type planJSON struct {
	ID     uint64      `json:"id"`
	Time   time.Time   `json:"time"`
	Ranges []rangeJSON `json:"ranges"`
	// IDs maps each topic to its topic ID.
	IDs map[string]string `json:"ids,omitempty"`
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
		pj.Ranges[i] = rangeJSON{Topic: r.Topic, Partition: r.Partition, From: r.From, Until: r.Until}
		if r.TopicID != "" {
			if pj.IDs == nil {
				pj.IDs = map[string]string{}
			}
			pj.IDs[r.Topic] = r.TopicID
		}
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
		p.Ranges[i] = microbatch.Range{Topic: r.Topic, Partition: r.Partition, From: r.From, Until: r.Until, TopicID: pj.IDs[r.Topic]}
	}
	return p, nil
}
