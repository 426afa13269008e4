package ingest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Timestamps of a ListOffsets request that ask for offsets, not times.
const (
	earliestOffset = -2 // the log start
	latestOffset   = -1 // the end: the last stable offset when read committed
)

// partitionOffsets lists the log start and the last stable offset of every
// partition in leaders, with the two requests to each leader in flight at
// once. Both come from the same metadata, so they name the same partitions.
func (s *Source) partitionOffsets(ctx context.Context, leaders map[int32]int32) (starts, ends map[int32]int64, err error) {
	var wg sync.WaitGroup
	var startErr, endErr error
	wg.Go(func() { starts, startErr = s.listOffsets(ctx, leaders, earliestOffset) })
	wg.Go(func() { ends, endErr = s.listOffsets(ctx, leaders, latestOffset) })
	wg.Wait()
	if err := errors.Join(startErr, endErr); err != nil {
		return nil, nil, err
	}
	return starts, ends, nil
}

// listOffsets asks every leader for the offsets at timestamp (earliestOffset
// or latestOffset) of its partitions, read committed.
func (s *Source) listOffsets(ctx context.Context, leaders map[int32]int32, timestamp int64) (map[int32]int64, error) {
	byLeader := map[int32][]int32{}
	for _, p := range slices.Sorted(maps.Keys(leaders)) {
		l := leaders[p]
		if l < 0 {
			return nil, fmt.Errorf("ingest: list offsets of %s[%d]: %w", s.cfg.Topic, p, kerr.LeaderNotAvailable)
		}
		byLeader[l] = append(byLeader[l], p)
	}
	var (
		mu   sync.Mutex
		out  = make(map[int32]int64, len(leaders))
		errs []error
		wg   sync.WaitGroup
	)
	for leader, partitions := range byLeader {
		wg.Go(func() {
			req := kmsg.NewPtrListOffsetsRequest()
			req.ReplicaID = -1
			req.IsolationLevel = 1
			t := kmsg.NewListOffsetsRequestTopic()
			t.Topic = s.cfg.Topic
			for _, p := range partitions {
				rp := kmsg.NewListOffsetsRequestTopicPartition()
				rp.Partition = p
				rp.CurrentLeaderEpoch = -1
				rp.Timestamp = timestamp
				t.Partitions = append(t.Partitions, rp)
			}
			req.Topics = append(req.Topics, t)
			resp, err := req.RequestWith(ctx, s.cl.Broker(int(leader)))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("ingest: list offsets of %s from broker %d: %w", s.cfg.Topic, leader, err))
				return
			}
			for _, rt := range resp.Topics {
				for _, rp := range rt.Partitions {
					if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
						errs = append(errs, fmt.Errorf("ingest: list offsets of %s[%d]: %w", s.cfg.Topic, rp.Partition, err))
						continue
					}
					out[rp.Partition] = rp.Offset
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for p := range leaders {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("ingest: list offsets of %s[%d]: no answer for the partition", s.cfg.Topic, p)
		}
	}
	return out, nil
}
