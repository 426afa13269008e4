package state

import (
	"context"
	"crypto/rand"
	"encoding/binary"
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
	Watch(ctx context.Context, fn func(*redis.Tx) error, keys ...string) error
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

	// staged are the changes of the batch this instance prepared last, so
	// that Commit need not read them back.
	staged struct {
		batch   uint64
		changes []microbatch.Change
	}
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

// chunk bounds the fields of one HSET or HDEL in a transaction.
const chunk = 1000

// Prepare implements microbatch.Store. The changes go to …:pending, one
// string in the layout of encodePending, in a MULTI/EXEC transaction that
// Redis runs only if …:meta did not change since the epoch and batch id
// were checked (see cas).
func (r *Redis) Prepare(ctx context.Context, batch uint64, changes []microbatch.Change) error {
	blob := encodePending(changes)
	err := r.cas(ctx, fmt.Sprintf("prepare batch %d", batch), func(_ *redis.Tx, m meta) (bool, error) {
		if batch != m.committed+1 || batch != m.planned {
			return false, fmt.Errorf("prepare %d with committed %d, planned %d", batch, m.committed, m.planned)
		}
		return false, nil
	}, func(p redis.Pipeliner, _ meta) {
		p.Set(ctx, r.keys.pending, blob, 0)
		p.HSet(ctx, r.keys.meta, "prepared", batch)
	})
	if err == nil {
		r.staged.batch, r.staged.changes = batch, changes
	}
	return err
}

// Commit implements microbatch.Store: in one MULTI/EXEC transaction that
// runs only if …:meta did not change since it was checked, the staged
// changes go to the state hashes, …:pending goes and committed becomes
// batch. The changes come from this instance's Prepare, or from …:pending
// when another instance prepared the batch (recovery completing it).
func (r *Redis) Commit(ctx context.Context, batch, keepFrom uint64) error {
	if keepFrom > batch {
		return fmt.Errorf("state: commit batch %d: keeping plans from %d, after the batch: %w", batch, keepFrom, microbatch.ErrPermanent)
	}
	var changes []microbatch.Change
	offsets := ""
	err := r.cas(ctx, fmt.Sprintf("commit batch %d", batch), func(tx *redis.Tx, m meta) (bool, error) {
		if m.committed == batch && m.prepared == 0 {
			return true, nil // a retry of a commit that went through
		}
		if batch != m.committed+1 || m.prepared != batch {
			return false, fmt.Errorf("commit %d with committed %d, prepared %d", batch, m.committed, m.prepared)
		}
		changes = r.staged.changes
		if r.staged.batch != batch {
			var err error
			if changes, err = r.loadPending(ctx, tx); err != nil {
				return false, err
			}
		}
		if s, err := tx.HGet(ctx, r.keys.plans, strconv.FormatUint(batch, 10)).Result(); err == nil {
			if p, err := decodePlan(s); err == nil {
				offsets = p.OffsetsHeader()
			}
		}
		return false, nil
	}, func(p redis.Pipeliner, m meta) {
		var ops []string
		sets, dels := map[string][]any{}, map[string][]string{}
		for _, c := range changes {
			if _, ok := sets[c.Op]; !ok {
				ops = append(ops, c.Op)
				sets[c.Op] = nil
			}
			if c.Delete {
				dels[c.Op] = append(dels[c.Op], string(c.Key))
			} else {
				sets[c.Op] = append(sets[c.Op], c.Key, c.Value)
			}
		}
		for _, op := range ops {
			hash, kv, del := r.keys.statePrefix+op, sets[op], dels[op]
			for i := 0; i < len(kv); i += 2 * chunk {
				p.HSet(ctx, hash, kv[i:min(len(kv), i+2*chunk)]...)
			}
			for i := 0; i < len(del); i += chunk {
				p.HDel(ctx, hash, del[i:min(len(del), i+chunk)]...)
			}
		}
		p.Unlink(ctx, r.keys.pending)
		p.HSet(ctx, r.keys.meta, "committed", batch, "prepared", 0, "offsets", offsets)
		if keepFrom > m.trimmed {
			ids := make([]string, 0, min(keepFrom-m.trimmed, chunk))
			for id := m.trimmed; id < keepFrom; id++ {
				ids = append(ids, strconv.FormatUint(id, 10))
				if len(ids) == chunk || id == keepFrom-1 {
					p.HDel(ctx, r.keys.plans, ids...)
					ids = ids[:0]
				}
			}
			p.HSet(ctx, r.keys.meta, "trimmed", keepFrom)
		}
	})
	if err == nil {
		r.staged.batch, r.staged.changes = 0, nil
	}
	return err
}

// encodePending lays changes out as one string: for each, the op, the key
// and, unless it is a deletion, the value, each as a uvarint length and its
// bytes, a deletion marked by a length of 0 and a flag byte 0 before the
// value (1 for a value).
func encodePending(changes []microbatch.Change) []byte {
	n := 0
	for _, c := range changes {
		n += len(c.Op) + len(c.Key) + len(c.Value) + 3*binary.MaxVarintLen32 + 1
	}
	b := make([]byte, 0, n)
	for _, c := range changes {
		b = binary.AppendUvarint(b, uint64(len(c.Op)))
		b = append(b, c.Op...)
		b = binary.AppendUvarint(b, uint64(len(c.Key)))
		b = append(b, c.Key...)
		if c.Delete {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(c.Value)))
		b = append(b, c.Value...)
	}
	return b
}

// decodePending is the inverse of encodePending.
func decodePending(b []byte) ([]microbatch.Change, error) {
	var out []microbatch.Change
	next := func() ([]byte, bool) {
		n, l := binary.Uvarint(b)
		if l <= 0 || uint64(len(b)-l) < n {
			return nil, false
		}
		v := b[l : l+int(n)]
		b = b[l+int(n):]
		return v, true
	}
	for len(b) > 0 {
		op, ok1 := next()
		key, ok2 := next()
		if !ok1 || !ok2 || len(b) == 0 {
			return nil, fmt.Errorf("pending changes: malformed at change %d", len(out))
		}
		c := microbatch.Change{Op: string(op), Key: key, Delete: b[0] == 0}
		b = b[1:]
		if !c.Delete {
			v, ok := next()
			if !ok {
				return nil, fmt.Errorf("pending changes: malformed value at change %d", len(out))
			}
			c.Value = v
		}
		out = append(out, c)
	}
	return out, nil
}

// loadPending reads the staged changes of another instance. A hash is the
// layout of earlier builds: field op NUL key, value 1 and the value, or 0
// for a deletion.
func (r *Redis) loadPending(ctx context.Context, tx *redis.Tx) ([]microbatch.Change, error) {
	typ, err := tx.Type(ctx, r.keys.pending).Result()
	if err != nil {
		return nil, err
	}
	switch typ {
	case "none":
		return nil, errors.New("the staged changes are missing")
	case "string":
		b, err := tx.Get(ctx, r.keys.pending).Bytes()
		if err != nil {
			return nil, err
		}
		return decodePending(b)
	}
	fields, err := tx.HGetAll(ctx, r.keys.pending).Result()
	if err != nil {
		return nil, err
	}
	out := make([]microbatch.Change, 0, len(fields))
	for f, v := range fields {
		op, key, ok := strings.Cut(f, "\x00")
		if !ok || v == "" {
			return nil, fmt.Errorf("pending change %q: malformed", f)
		}
		c := microbatch.Change{Op: op, Key: []byte(key), Delete: v[0] == 0}
		if !c.Delete {
			c.Value = []byte(v[1:])
		}
		out = append(out, c)
	}
	return out, nil
}

// meta is what the transactions check.
type meta struct {
	committed, planned, prepared, trimmed uint64
}

// cas checks the caller's epoch against …:meta and runs check, which may
// read more (its reads see what the transaction will change); unless check
// fails or reports the work done, the commands queued by queue run in a
// MULTI/EXEC transaction. Redis runs it only if …:meta did not change since
// it was read (WATCH): an instance that took the job over meanwhile bumped
// the epoch, so a fenced instance cannot write. This keeps the atomicity and
// fencing of a script while the bulk of a batch's changes travel as plain
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
				checkErr = fmt.Errorf("%w: %w", microbatch.ErrConflict, err)
				return nil
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

var discardScript = redis.NewScript(epochCheck + `
if prepared == tonumber(ARGV[2]) then
  redis.call('UNLINK', KEYS[2])
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
