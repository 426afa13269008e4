//go:build invariants

package microbatch

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestInvariantsCatchAWrongReuseDeclaration builds a Transform that passes
// its input on but is declared to make fresh memory (a wrong declaration):
// the window over it keeps the map's output, whose memory the map then
// reuses. Under the invariants build that memory is poisoned, so the window
// reads garbage and the mistake shows; the same graph declared right reads
// the batches it kept.
func TestInvariantsCatchAWrongReuseDeclaration(t *testing.T) {
	run := func(wrong bool) [][]int {
		j := NewJob(time.Second, WithClock(NewVirtualClock(epoch)), WithBatchLimit(3))
		doubled := Map(QueueStream(j, [][]int{{1, 2}, {3, 4}, {5, 6}}), func(v int) int { return 2 * v })
		passed := Transform(doubled, func(b []int) []int { return b })
		if wrong {
			passed.output = outFresh
		}
		var got [][]int
		passed.Window(3*time.Second, time.Second).ForeachBatch(func(_ context.Context, _ BatchInfo, b []int) error {
			got = append(got, slices.Clone(b))
			return nil
		})
		if err := j.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want := [][]int{{2, 4}, {2, 4, 6, 8}, {2, 4, 6, 8, 10, 12}}
	if got := run(false); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("declared right: windows %v, want %v", got, want)
	}
	if got := run(true); slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("a wrong reuse declaration went unnoticed: windows %v", got)
	}
}

// TestInvariantsCatchAWrongSkipIdleKeys declares SkipIdleKeys for a function
// that ages every key, with values or not: under the invariants build the
// operator still calls it for idle keys and panics at the broken promise
// (in a child process, since the panic ends it).
func TestInvariantsCatchAWrongSkipIdleKeys(t *testing.T) {
	if os.Getenv("DSTREAM_WRONG_SKIP_IDLE") == "1" {
		j := newTestJob(2)
		aging := func(_ []int, age int, _ bool) (int, bool) { return age + 1, true }
		var out []string
		collect(UpdateStateByKey(pairs(j, "a=1", ""), aging, SkipIdleKeys[string, int]()), &out)
		runJob(t, j)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInvariantsCatchAWrongSkipIdleKeys$")
	cmd.Env = append(os.Environ(), "DSTREAM_WRONG_SKIP_IDLE=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SkipIdleKeys declared, but the update function changed the state of key a") {
		t.Fatalf("a wrong SkipIdleKeys went unnoticed (err %v):\n%s", err, out)
	}
}
