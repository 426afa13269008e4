package chaos_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/state"
)

// setShards configures the env's job for shards shards (1: unsharded).
func (e *env) setShards(shards int) {
	e.shards, e.tasks = 0, nil
	e.settings["DSTREAM_SHARDS"] = strconv.Itoa(shards)
	if shards == 1 {
		return
	}
	e.shards = shards
	for stage, n := range []int{shards, shards, 1} {
		var names []string
		for i := range n {
			names = append(names, fmt.Sprintf("s%d-%d", stage, i))
		}
		e.tasks = append(e.tasks, names)
	}
}

// totals reads the job's running totals, sharded or not.
func (e *env) totals(ctx context.Context) map[string]int64 {
	e.t.Helper()
	if e.shards > 0 {
		return e.shardedTotals(ctx)
	}
	return e.totalsOf(ctx, e.job)
}

// TestChangingShardsNeedsAReset runs a job unsharded, then in 3 shards,
// then 4, then unsharded again. A start in another number of shards than
// the job's checkpoints are divided in is refused, naming the reset that
// changes it; after each reset the job starts over at the end of the
// input in the new layout (the control topic and exchanges grown as
// needed): its totals count exactly the lines since the reset, and its
// batch ids go on, each once in the output.
func TestChangingShardsNeedsAReset(t *testing.T) {
	schema := statusSchema(t)
	e := newEnv(t, kafkatest.Shared(t), redistest.Shared(t), envOptions{leaseTTL: time.Second, seed: 17, partitions: 6})
	feed := func(lines int64) {
		_, fed, stopFeed := e.startFeed(lines, 0)
		<-fed
		if err := stopFeed(); err != nil {
			t.Fatal(err)
		}
	}
	// run drains the input with replicas processes and returns the last
	// batch any of the job's checkpoints committed.
	run := func(name string, replicas int) uint64 {
		began := time.Now()
		defer func() {
			t.Logf("%s: %d replica(s) drained the input in %v", name, replicas, time.Since(began).Round(time.Millisecond))
		}()
		var procs []*chaos.Processor
		for i := range replicas {
			procs = append(procs, e.start(fmt.Sprintf("%s-%d", name, i)))
		}
		t.Cleanup(func() {
			if t.Failed() {
				for _, p := range procs {
					t.Logf("%s:%s", p.Name, p.LogTail(40))
				}
			}
		})
		e.waitDrained(3*time.Minute, procs[0])
		for _, p := range procs {
			e.stop(p)
		}
		if e.shards == 0 {
			committed, _, err := e.meta(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return committed
		}
		var highest uint64
		for _, task := range slices.Concat(e.tasks...) {
			c, _, err := e.metaOf(context.Background(), state.TaskJob(e.job, task))
			if err != nil {
				t.Fatal(err)
			}
			highest = max(highest, c)
		}
		return highest
	}
	checkSince := func(resetAt map[int32]int64, after uint64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		in, err := chaos.ReadInput(ctx, e.clientOpts(), e.spec.Input)
		if err != nil {
			t.Fatal(err)
		}
		want, err := in.TotalsBetween(resetAt, in.Ends())
		if err != nil {
			t.Fatal(err)
		}
		if got := e.totals(ctx); !maps.Equal(got, want) {
			t.Errorf("%d shard(s): totals of %d IPs, want %d counted since the reset (e.g. %v)", max(1, e.shards), len(got), len(want), firstDiff(got, want))
		}
		out, err := chaos.ReadOutput(ctx, e.clientOpts(), e.spec)
		if err != nil {
			t.Fatal(err)
		}
		ids := out.BatchIDs()
		for i := 1; i < len(ids); i++ {
			if ids[i] == ids[i-1] {
				t.Fatalf("batch %d twice in the output", ids[i])
			}
		}
		if len(ids) == 0 || ids[len(ids)-1] <= after {
			t.Errorf("%d shard(s): output batches end at %v: want batches after the reset point %d", max(1, e.shards), ids[max(0, len(ids)-1):], after)
		}
	}

	feed(3_000)
	last := run("unsharded", 1)

	e.setShards(3)
	refused := e.start("refused")
	e.waitRole(refused, "refused", time.Minute)
	s := e.status(refused, schema)
	reason := s.Refused()
	if !strings.Contains(reason, "DSTREAM_SHARDS=1 again") || !strings.Contains(reason, "DSTREAM_SHARDS=3 dstream reset") {
		t.Errorf("refused_reason %q: want the recorded shards and the reset that changes them", reason)
	}
	e.stop(refused)
	if c, _, _ := e.metaOf(context.Background(), e.job); c != last {
		t.Fatalf("the refused start moved the unsharded checkpoint: batch %d, was %d", c, last)
	}

	for _, step := range []struct {
		shards, replicas int
		lines            int64
	}{{3, 2, 3_000}, {4, 2, 3_000}, {1, 1, 2_000}} {
		e.setShards(step.shards)
		out, code := e.command("reset", "--to", "latest", "--yes")
		if code != 0 {
			t.Fatalf("reset to %d shard(s): exit %d:\n%s", step.shards, code, out)
		}
		t.Logf("reset to %d shard(s):\n%s", step.shards, out)
		resetAt := e.ends()
		if c, _, err := e.meta(context.Background()); err != nil || c != last+1 {
			t.Fatalf("after the reset to %d shard(s): batch %d (%v), want the reset point %d", step.shards, c, err, last+1)
		}
		feed(step.lines)
		reset := last + 1
		last = run(fmt.Sprintf("shards%d", step.shards), step.replicas)
		checkSince(resetAt, reset)
	}
}
