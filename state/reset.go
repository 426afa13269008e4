package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/dstream-io/dstream/microbatch"
)

// ErrJobRunning means another instance holds the job's lease: a reset needs
// the job stopped, or force.
var ErrJobRunning = errors.New("another instance holds the job (its lease is live): stop it first, or force the reset")

var seizeScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and ARGV[3] ~= '1' then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local epoch = redis.call('HINCRBY', KEYS[2], 'epoch', 1)
local m = redis.call('HMGET', KEYS[2], 'committed', 'version', 'graph')
return {epoch, m[1] or '0', m[2] or '', m[3] or ''}
`)

// Seize takes the job for a lifecycle command, whatever the checkpoint's
// format: it fences every earlier holder, as Acquire does, but does not
// wait for a live lease; it fails with ErrJobRunning instead, unless force,
// which takes the job from a running instance (its next write is fenced).
// It returns the checkpoint's committed batch, format version and graph.
func (r *Redis) Seize(ctx context.Context, force bool) (committed uint64, version string, graph []byte, err error) {
	f := "0"
	if force {
		f = "1"
	}
	res, err := seizeScript.Run(ctx, r.rdb, []string{r.keys.lease, r.keys.meta}, r.cfg.Owner, r.cfg.LeaseTTL.Milliseconds(), f).Slice()
	if errors.Is(err, redis.Nil) {
		return 0, "", nil, fmt.Errorf("state: seize %s: %w", r.cfg.Job, ErrJobRunning)
	}
	if err != nil {
		return 0, "", nil, fmt.Errorf("state: seize %s: %w", r.cfg.Job, err)
	}
	epoch, _ := res[0].(int64)
	r.epoch = uint64(epoch)
	s, _ := res[1].(string)
	committed, _ = strconv.ParseUint(s, 10, 64)
	version, _ = res[2].(string)
	if g, _ := res[3].(string); g != "" {
		graph = []byte(g)
	}
	return committed, version, graph, nil
}

// Reset drops the job's state, plans and history and records its reset
// point: batch start.ID is committed, with start as its plan (empty ranges
// where the next batch starts), and becomes the reset base. The caller
// holds the job (Seize).
func (r *Redis) Reset(ctx context.Context, start microbatch.Plan) error {
	plan, err := encodePlan(start)
	if err != nil {
		return err
	}
	var drop []string
	return r.cas(ctx, fmt.Sprintf("reset at batch %d", start.ID), func(tx *redis.Tx, _ meta) (bool, error) {
		graph, err := tx.HGet(ctx, r.keys.meta, "graph").Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, err
		}
		drop = nil
		for _, op := range graphOps([]byte(graph)) {
			drop = append(drop, r.keys.stateKey(op))
		}
		legacy, err := r.scan(ctx, tx, strings.TrimSuffix(r.keys.statePrefix, "st:")+"state:*")
		if err != nil {
			return false, err
		}
		current, err := r.scan(ctx, tx, r.keys.statePrefix+"*")
		if err != nil {
			return false, err
		}
		drop = append(append(drop, legacy...), current...)
		return false, nil
	}, func(p redis.Pipeliner, _ meta) {
		tag := strings.TrimSuffix(r.keys.meta, ":meta")
		p.Unlink(ctx, append(drop, r.keys.plans, r.keys.pending, tag+":history")...)
		p.HDel(ctx, r.keys.meta, "graph")
		p.HSet(ctx, r.keys.meta, "version", FormatVersion, "committed", start.ID, "planned", start.ID, "prepared", 0,
			"trimmed", start.ID, "base", start.ID, "offsets", start.OffsetsHeader())
		p.HSet(ctx, r.keys.plans, strconv.FormatUint(start.ID, 10), plan)
	})
}

// DropState drops the state of the named operators and their entries in
// the stored graph: on the next start they count as added, and start empty
// (or from their initial state). It accepts a removed operator, or one
// whose state type changed. The caller holds the job (Seize).
func (r *Redis) DropState(ctx context.Context, ops []string) error {
	var graph []byte
	return r.cas(ctx, "drop state of "+strings.Join(ops, ", "), func(tx *redis.Tx, _ meta) (bool, error) {
		stored, err := tx.HGet(ctx, r.keys.meta, "graph").Bytes()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, err
		}
		known := graphOps(stored)
		for _, op := range ops {
			if !slices.Contains(known, op) {
				return false, permanentError{fmt.Errorf("the checkpoint has no stateful operator %q (it has: %s)", op, strings.Join(known, ", "))}
			}
		}
		var fp microbatch.Fingerprint
		if err := json.Unmarshal(stored, &fp); err != nil {
			return false, permanentError{fmt.Errorf("decode the stored graph: %w", err)}
		}
		fp.State = slices.DeleteFunc(fp.State, func(s microbatch.StateFingerprint) bool { return slices.Contains(ops, s.Name) })
		graph, err = json.Marshal(fp)
		return false, err
	}, func(p redis.Pipeliner, _ meta) {
		for _, op := range ops {
			p.Unlink(ctx, r.keys.stateKey(op))
		}
		p.HSet(ctx, r.keys.meta, "graph", graph)
	})
}

// graphOps returns the stateful operators a stored graph names.
func graphOps(graph []byte) []string {
	var fp microbatch.Fingerprint
	if len(graph) == 0 || json.Unmarshal(graph, &fp) != nil {
		return nil
	}
	var ops []string
	for _, s := range fp.State {
		ops = append(ops, s.Name)
	}
	return ops
}

// scan lists the keys matching pattern. It runs on the transaction's
// connection: on a Redis Cluster that is the master of the job's slot
// (go-redis routes WATCH by its key), where every key of the job's hash tag
// lives, so one node's SCAN finds them all. A server that refuses SCAN
// (CROSSSLOT from a proxy) leaves the keys its stored graph names.
func (r *Redis) scan(ctx context.Context, tx *redis.Tx, pattern string) ([]string, error) {
	var keys []string
	iter := tx.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil && !strings.Contains(err.Error(), "CROSSSLOT") {
		return nil, err
	}
	return keys, nil
}
