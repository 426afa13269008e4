package microbatch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// State types that JSON cannot give back whole.
type (
	hiddenCount struct {
		Total int
		count int
	}
	withFunc struct{ F func() }
	skipped  struct {
		A int
		B int `json:"-"`
	}
)

// TestBuildErrors checks that graphs that cannot run are refused at Start,
// before any batch, with a BuildError naming the operator.
func TestBuildErrors(t *testing.T) {
	const s = time.Second
	discard := func(context.Context, BatchInfo, []int) error { return nil }
	discardPairs := func(context.Context, BatchInfo, []Pair[string, int]) error { return nil }
	for _, test := range []struct {
		name  string
		build func(j *Job)
		op    string
		msg   string
	}{
		{"no output operation", func(j *Job) { ints(j, []int{1}).Window(2*s, s) },
			"Start", "no output operations"},
		{"window length not a multiple of the interval", func(j *Job) {
			ints(j).Window(2500*time.Millisecond, s).ForeachBatch(discard)
		}, "window", "window length 2.5s must be a positive multiple of 1s"},
		{"slide not a multiple of the interval", func(j *Job) {
			ints(j).Window(3*s, 1500*time.Millisecond).ForeachBatch(discard)
		}, "window", "slide 1.5s must be a positive multiple of 1s"},
		{"zero window length", func(j *Job) {
			ints(j).Window(0, s).ForeachBatch(discard)
		}, "window", "window length 0s must be a positive multiple"},
		{"negative slide", func(j *Job) {
			ints(j).Window(2*s, -s).ForeachBatch(discard)
		}, "window", "slide -1s must be a positive multiple"},
		{"window length not a multiple of the parent's slide", func(j *Job) {
			ints(j).Window(2*s, 2*s).Window(3*s, 2*s).ForeachBatch(discard)
		}, "window", "window length 3s must be a positive multiple of 2s"},
		{"reduceByKeyAndWindow slide not a multiple", func(j *Job) {
			ReduceByKeyAndWindow(pairs(j), add, sub, 3*s, 1500*time.Millisecond, nil).ForeachBatch(discardPairs)
		}, "reduceByKeyAndWindow", "slide 1.5s"},
		{"countByWindow length not a multiple", func(j *Job) {
			ints(j).CountByWindow(1500*time.Millisecond, s).ForeachBatch(func(context.Context, BatchInfo, []int64) error { return nil })
		}, "reduceByKeyAndWindow", "window length 1.5s"},
		{"join of streams with different slides", func(j *Job) {
			a, b := pairs(j), pairs(j)
			Join(a.Window(2*s, 2*s), b).ForeachBatch(func(context.Context, BatchInfo, []Pair[string, Pair[int, int]]) error { return nil })
		}, "join", "streams slide every 2s and 1s: join needs equal slides"},
		{"leftOuterJoin of streams with different slides", func(j *Job) {
			a, b := pairs(j), pairs(j)
			LeftOuterJoin(a, b.Window(3*s, 3*s)).ForeachBatch(func(context.Context, BatchInfo, []Pair[string, Pair[int, Optional[int]]]) error { return nil })
		}, "leftOuterJoin", "equal slides"},
		{"cogroup of streams with different slides", func(j *Job) {
			a, b := pairs(j), pairs(j)
			Cogroup(a, b.Window(2*s, 2*s)).ForeachBatch(func(context.Context, BatchInfo, []Pair[string, Pair[[]int, []int]]) error { return nil })
		}, "cogroup", "equal slides"},
		{"union of streams with different slides", func(j *Job) {
			a := ints(j)
			a.Union(a.Window(2*s, 2*s)).ForeachBatch(discard)
		}, "union", "union needs equal slides"},
		{"transformWith of streams with different slides", func(j *Job) {
			a := ints(j)
			TransformWith(a, a.Window(2*s, 2*s), func(x, y []int) []int { return x }).ForeachBatch(discard)
		}, "transformWith", "needs equal slides"},
		{"state type with an unexported field", func(j *Job) {
			UpdateStateByKey(pairs(j), func(vs []int, s hiddenCount, _ bool) (hiddenCount, bool) { s.count += len(vs); return s, true }).
				ForeachBatch(func(context.Context, BatchInfo, []Pair[string, hiddenCount]) error { return nil })
		}, "updateStateByKey-0", "microbatch.hiddenCount has the unexported field count"},
		{"state type with a func", func(j *Job) {
			UpdateStateByKey(pairs(j), func(vs []int, s withFunc, _ bool) (withFunc, bool) { return s, true }).
				ForeachBatch(func(context.Context, BatchInfo, []Pair[string, withFunc]) error { return nil })
		}, "updateStateByKey-0", "func() (at F) is a func"},
		{"state type with a field JSON skips", func(j *Job) {
			UpdateStateByKey(pairs(j), func(vs []int, s skipped, _ bool) (skipped, bool) { return s, true }).Named("skips").
				ForeachBatch(func(context.Context, BatchInfo, []Pair[string, skipped]) error { return nil })
		}, "skips", `field B is tagged json:"-"`},
		{"state type of an interface", func(j *Job) {
			UpdateStateByKey(pairs(j), func(vs []int, s any, _ bool) (any, bool) { return s, true }).
				ForeachBatch(func(context.Context, BatchInfo, []Pair[string, any]) error { return nil })
		}, "updateStateByKey-0", "is an interface"},
		{"two stateful operators of one name", func(j *Job) {
			p := pairs(j)
			UpdateStateByKey(p, sumUpdate).Named("x").ForeachBatch(discardPairs)
			ReduceByKeyAndWindow(p, add, sub, 2*s, s, nil).Named("x").ForeachBatch(discardPairs)
		}, "reduceByKeyAndWindow", `two stateful operators are named "x"`},
		{"a name a Redis key cannot hold", func(j *Job) {
			UpdateStateByKey(pairs(j), sumUpdate).Named("{totals}").ForeachBatch(discardPairs)
		}, "updateStateByKey", `name "{totals}"`},
		{"stateful operator without a store", func(j *Job) {
			j.Checkpoint(nil)
			UpdateStateByKey(pairs(j), sumUpdate).ForeachBatch(discardPairs)
		}, "updateStateByKey-0", "stateful operators need a checkpoint store"},
		{"two transactional sinks", func(j *Job) {
			a := ints(j)
			encode := func(BatchInfo, int) Message { return Message{} }
			Write(a, newTxnSink(), encode)
			Write(a, newTxnSink(), encode)
		}, "Write", "at most one transactional sink"},
	} {
		t.Run(test.name, func(t *testing.T) {
			j := newTestJob(1)
			test.build(j)
			err := j.Start(context.Background())
			if err == nil {
				j.Stop(false)
				_ = j.AwaitTermination()
				t.Fatal("Start accepted the graph")
			}
			var be *BuildError
			if !errors.As(err, &be) {
				t.Fatalf("Start: %v, want a *BuildError", err)
			}
			if be.Op != test.op || !strings.Contains(err.Error(), test.msg) {
				t.Errorf("Start: op %q, %v; want op %q, an error containing %q", be.Op, err, test.op, test.msg)
			}
		})
	}
}

func TestNewJobRejectsNonPositiveInterval(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		j := NewJob(d)
		ints(j).ForeachBatch(func(context.Context, BatchInfo, []int) error { return nil })
		var be *BuildError
		if err := j.Start(context.Background()); !errors.As(err, &be) || be.Op != "NewJob" {
			t.Errorf("interval %v: Start: %v, want a NewJob BuildError", d, err)
		}
	}
}

func TestJobStartsOnce(t *testing.T) {
	j := newTestJob(1)
	ints(j, []int{1}).ForeachBatch(func(context.Context, BatchInfo, []int) error { return nil })
	runJob(t, j)
	if err := j.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
}
