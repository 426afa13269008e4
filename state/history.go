package state

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// BatchRecord is what History keeps of one committed batch: the statistics
// its plan lacks (the plan holds its time and offsets).
type BatchRecord struct {
	ID              uint64
	Time            time.Time // batch time
	Records         int
	SchedulingDelay time.Duration
	ProcessingTime  time.Duration
	CheckpointTime  time.Duration
	OutputRecords   int
	StateChanges    int
	// Lag is how many records the input held past the batch's end when
	// it was planned (-1: not known).
	Lag         int64
	CommittedAt time.Time // wall clock of the commit
}

// HistoryClient is the part of a Redis client History uses;
// *redis.Client and *redis.ClusterClient satisfy it.
type HistoryClient interface {
	TxPipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
	LRange(ctx context.Context, key string, start, stop int64) *redis.StringSliceCmd
}

// History keeps the statistics of a job's last batches in Redis, a capped
// list under the job's hash tag (…:history, newest first), so that the
// instance that takes a job over, and a standby, can show the batches
// another instance ran. It is a record for people, not part of the
// checkpoint: it is written after the commit, and a crash in between loses
// that batch's entry.
type History struct {
	rdb  HistoryClient
	key  string
	keep int64
}

// NewHistory returns the history of job, keeping its last keep batches.
func NewHistory(rdb HistoryClient, job string, keep int) *History {
	return &History{rdb: rdb, key: "{dstream:" + job + "}:history", keep: int64(max(1, keep))}
}

// batchJSON is the stored form of a BatchRecord: durations in
// microseconds, times in Unix microseconds.
type batchJSON struct {
	ID              uint64 `json:"id"`
	Time            int64  `json:"t"`
	Records         int    `json:"n"`
	SchedulingDelay int64  `json:"sd"`
	ProcessingTime  int64  `json:"pt"`
	CheckpointTime  int64  `json:"ct"`
	OutputRecords   int    `json:"o"`
	StateChanges    int    `json:"s"`
	Lag             *int64 `json:"l,omitempty"`
	CommittedAt     int64  `json:"at"`
}

// Record adds b to the history and drops the entries beyond the cap.
func (h *History) Record(ctx context.Context, b BatchRecord) error {
	var lag *int64
	if b.Lag >= 0 {
		lag = &b.Lag
	}
	data, err := json.Marshal(batchJSON{
		ID: b.ID, Time: b.Time.UnixMicro(), Records: b.Records,
		SchedulingDelay: b.SchedulingDelay.Microseconds(), ProcessingTime: b.ProcessingTime.Microseconds(),
		CheckpointTime: b.CheckpointTime.Microseconds(), OutputRecords: b.OutputRecords,
		StateChanges: b.StateChanges, Lag: lag, CommittedAt: b.CommittedAt.UnixMicro(),
	})
	if err != nil {
		return fmt.Errorf("state: record batch %d in the history: %w", b.ID, err)
	}
	_, err = h.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, h.key, data)
		p.LTrim(ctx, h.key, 0, h.keep-1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: record batch %d in the history: %w", b.ID, err)
	}
	return nil
}

// Recent returns up to n of the latest batches, oldest first, each batch
// once (an instance fenced after its commit may have recorded a batch that
// the next holder recorded again) and in batch order. Entries that do not
// decode are skipped.
func (h *History) Recent(ctx context.Context, n int) ([]BatchRecord, error) {
	vals, err := h.rdb.LRange(ctx, h.key, 0, int64(min(max(n, 1), int(h.keep)))-1).Result()
	if err != nil {
		return nil, fmt.Errorf("state: read the history: %w", err)
	}
	out := make([]BatchRecord, 0, len(vals))
	seen := make(map[uint64]bool, len(vals))
	for _, v := range vals {
		var b batchJSON
		if json.Unmarshal([]byte(v), &b) != nil || b.ID == 0 || seen[b.ID] {
			continue
		}
		seen[b.ID] = true
		lag := int64(-1)
		if b.Lag != nil {
			lag = *b.Lag
		}
		out = append(out, BatchRecord{
			ID: b.ID, Time: time.UnixMicro(b.Time).UTC(), Records: b.Records,
			SchedulingDelay: time.Duration(b.SchedulingDelay) * time.Microsecond,
			ProcessingTime:  time.Duration(b.ProcessingTime) * time.Microsecond,
			CheckpointTime:  time.Duration(b.CheckpointTime) * time.Microsecond,
			OutputRecords:   b.OutputRecords, StateChanges: b.StateChanges, Lag: lag,
			CommittedAt: time.UnixMicro(b.CommittedAt).UTC(),
		})
	}
	slices.SortFunc(out, func(a, b BatchRecord) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}
