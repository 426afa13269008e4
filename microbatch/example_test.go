package microbatch_test

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/dstream-io/dstream/microbatch"
)

// exampleJob runs batches back to back from 2026-01-01 00:00:01, one second
// apart.
func exampleJob(batches uint64) *microbatch.Job {
	start := time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.UTC)
	return microbatch.NewJob(time.Second,
		microbatch.WithClock(microbatch.NewVirtualClock(start)),
		microbatch.WithBatchLimit(batches))
}

// Counting words over a sliding window incrementally: the batch entering the
// window is added, the one leaving it subtracted, and keys whose count falls
// to zero are dropped by the keep filter.
func ExampleReduceByKeyAndWindow() {
	job := exampleJob(4)
	job.Checkpoint(microbatch.NewMemoryStore()) // the window's counts are checkpointed state
	words := microbatch.QueueStream(job, [][]string{{"a", "b"}, {"a"}, {}, {"b"}})
	ones := microbatch.Map(words, func(w string) microbatch.Pair[string, int] { return microbatch.KV(w, 1) })
	counts := microbatch.ReduceByKeyAndWindow(ones,
		func(a, b int) int { return a + b }, // add what enters
		func(a, b int) int { return a - b }, // subtract what leaves
		2*time.Second, time.Second,
		func(p microbatch.Pair[string, int]) bool { return p.Value > 0 })
	counts.Pprint(10)
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// -------------------------------------------
	// Time: 2026-01-01 00:00:01
	// -------------------------------------------
	// ('a', 1)
	// ('b', 1)
	//
	// -------------------------------------------
	// Time: 2026-01-01 00:00:02
	// -------------------------------------------
	// ('a', 2)
	// ('b', 1)
	//
	// -------------------------------------------
	// Time: 2026-01-01 00:00:03
	// -------------------------------------------
	// ('a', 1)
	//
	// -------------------------------------------
	// Time: 2026-01-01 00:00:04
	// -------------------------------------------
	// ('b', 1)
	//
}

// Running totals per key across the whole stream, as the lecture's
// updateFunction: keys without new values keep their state.
func ExampleUpdateStateByKey() {
	job := exampleJob(3)
	job.Checkpoint(microbatch.NewMemoryStore())
	words := microbatch.QueueStream(job, [][]string{{"a", "b", "a"}, {"b"}, {}})
	ones := microbatch.Map(words, func(w string) microbatch.Pair[string, int] { return microbatch.KV(w, 1) })
	totals := microbatch.UpdateStateByKey(ones, func(values []int, total int, _ bool) (int, bool) {
		for _, v := range values {
			total += v
		}
		return total, true
	})
	totals.ForeachBatch(func(_ context.Context, b microbatch.BatchInfo, batch []microbatch.Pair[string, int]) error {
		fmt.Println(b.ID, batch)
		return nil
	})
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// 1 [{a 2} {b 1}]
	// 2 [{a 2} {b 2}]
	// 3 [{a 2} {b 2}]
}

// A running total leaves a key without new values as it is: SkipIdleKeys
// says so, and the function is called only for the keys in each batch
// (here, once for 404 and twice for 200), not for every key on every batch;
// the totals are the same. As in the reference job, each batch is counted
// first, so a key gets one count a batch.
func ExampleSkipIdleKeys() {
	job := exampleJob(3)
	job.Checkpoint(microbatch.NewMemoryStore())
	statuses := microbatch.QueueStream(job, [][]int{{200, 404, 200}, {200}, {}})
	counts := microbatch.CountByValue(statuses)
	add := func(counts []int64, total int64, _ bool) (int64, bool) {
		for _, c := range counts { // one count, or none for an idle key
			total += c
		}
		return total, true
	}
	totals := microbatch.UpdateStateByKey(counts, add, microbatch.SkipIdleKeys[int, int64]())
	totals.ForeachBatch(func(_ context.Context, b microbatch.BatchInfo, batch []microbatch.Pair[int, int64]) error {
		for _, kv := range batch {
			fmt.Printf("batch %d: status %d seen %d times\n", b.ID, kv.Key, kv.Value)
		}
		return nil
	})
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// batch 1: status 200 seen 2 times
	// batch 1: status 404 seen 1 times
	// batch 2: status 200 seen 3 times
	// batch 2: status 404 seen 1 times
	// batch 3: status 200 seen 3 times
	// batch 3: status 404 seen 1 times
}

// Parsing with a dead-letter branch: TryMap keeps what parses and hands the
// rest, with the reason, to a second stream, in one pass.
func ExampleTryMap() {
	job := exampleJob(2)
	lines := microbatch.QueueStream(job, [][]string{{"1", "x", "3"}, {"40", ""}})
	numbers, bad := microbatch.TryMap(lines, strconv.Atoi)
	numbers.ForeachBatch(func(_ context.Context, b microbatch.BatchInfo, batch []int) error {
		fmt.Println(b.ID, "parsed", batch)
		return nil
	})
	bad.ForeachBatch(func(_ context.Context, b microbatch.BatchInfo, batch []microbatch.Failure[string]) error {
		for _, f := range batch {
			fmt.Printf("%d dead letter %q: %v\n", b.ID, f.Elem, f.Err)
		}
		return nil
	})
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// 1 parsed [1 3]
	// 1 dead letter "x": strconv.Atoi: parsing "x": invalid syntax
	// 2 parsed [40]
	// 2 dead letter "": strconv.Atoi: parsing "": invalid syntax
}
