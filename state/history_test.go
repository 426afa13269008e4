package state_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

func TestHistory(t *testing.T) { eachRedis(t, testHistory) }

func testHistory(t *testing.T, b backend) {
	rdb := b.rdb
	ctx := context.Background()
	t0 := time.Date(2026, 11, 24, 5, 31, 50, 0, time.UTC)
	batch := func(id uint64) state.BatchRecord {
		return state.BatchRecord{
			ID: id, Time: t0.Add(time.Duration(id) * 10 * time.Second), Records: int(id) * 100,
			SchedulingDelay: time.Duration(id) * time.Millisecond, ProcessingTime: 1500 * time.Microsecond,
			CheckpointTime: 250 * time.Microsecond, OutputRecords: 3, StateChanges: int(id), Lag: int64(id%3) - 1,
			CommittedAt: t0.Add(time.Duration(id)*10*time.Second + 2*time.Second),
		}
	}
	for _, test := range []struct {
		name     string
		keep, n  int
		recorded []uint64
		want     []uint64
	}{
		{name: "empty", keep: 5, n: 5},
		{name: "fewer than kept", keep: 5, n: 10, recorded: []uint64{1, 2, 3}, want: []uint64{1, 2, 3}},
		{name: "capped", keep: 3, n: 10, recorded: []uint64{1, 2, 3, 4, 5}, want: []uint64{3, 4, 5}},
		{name: "fewer asked for", keep: 5, n: 2, recorded: []uint64{1, 2, 3, 4}, want: []uint64{3, 4}},
		// A fenced instance recorded batch 3, which the next holder ran again.
		{name: "a batch recorded twice", keep: 5, n: 5, recorded: []uint64{1, 2, 3, 3, 4}, want: []uint64{1, 2, 3, 4}},
	} {
		t.Run(test.name, func(t *testing.T) {
			h := state.NewHistory(rdb, fmt.Sprintf("history-%d", jobSeq.Add(1)), test.keep)
			for _, id := range test.recorded {
				if err := h.Record(ctx, batch(id)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := h.Recent(ctx, test.n)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(test.want) {
				t.Fatalf("Recent: %d batches, want %v", len(got), test.want)
			}
			for i, b := range got {
				if want := batch(test.want[i]); b != want {
					t.Errorf("batch %d:\n got %+v\nwant %+v", i, b, want)
				}
			}
		})
	}
}

func TestCommittedWithoutTheJob(t *testing.T) { eachRedis(t, testCommittedWithoutTheJob) }

func testCommittedWithoutTheJob(t *testing.T, b backend) {
	rdb := b.rdb
	ctx := context.Background()
	job := fmt.Sprintf("committed-%d", jobSeq.Add(1))
	open := func() *state.Redis {
		s, err := state.NewRedis(rdb, state.Config{Job: job, LeaseTTL: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	active, standby := open(), open()
	if m, err := standby.Progress(ctx); err != nil || m.Committed != 0 {
		t.Fatalf("Progress of a new job: %+v, %v; want nothing committed", m, err)
	}
	if _, err := active.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 2; id++ {
		if err := active.RecordPlan(ctx, microbatch.Plan{ID: id, Time: time.Unix(int64(id), 0)}); err != nil {
			t.Fatal(err)
		}
		if err := active.Prepare(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
		if err := active.Commit(ctx, microbatch.Checkpoint{Batch: id, KeepFrom: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := standby.Progress(ctx); err != nil || m.Committed != 2 {
		t.Fatalf("Progress: %+v, %v; want batch 2 committed", m, err)
	}
	// Reading did not take the job from the active instance.
	if err := active.Renew(ctx); err != nil {
		t.Fatalf("the active instance lost the job to a reader: %v", err)
	}
}
