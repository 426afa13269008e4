package chaos_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
)

// commandTimeout bounds a one-shot command: a reset of a sharded job under
// load takes seconds, not minutes.
const commandTimeout = 3 * time.Minute

// command runs a one-shot dstream command with the job's settings. One that
// hangs is stopped after commandTimeout with SIGQUIT, so that its goroutines'
// stacks show where, and the test fails.
func (e *env) command(args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DSTREAM_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range e.settings {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		e.t.Fatalf("dstream %v: still running after %v:\n%s", args, commandTimeout, out)
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("dstream %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// TestWindowChangedWhileDown restarts a running job with another window and
// slide, as a helm upgrade of config.window does. The restart rebuilds the
// window counts from the recorded plans: every batch before the change has
// the old window's results, every one after the new window's, and the
// running totals go on, all exactly once. A restart with another batch
// interval is refused instead, naming the change and the command that
// resolves it.
func TestWindowChangedWhileDown(t *testing.T) {
	schema := statusSchema(t)
	e := newEnv(t, kafkatest.Shared(t), redistest.Shared(t), envOptions{leaseTTL: time.Second, ratePerSec: 400, seed: 11})
	_, fed, stopFeed := e.startFeed(30_000, 0)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	first := e.start("first")
	e.waitCommitted(7, time.Minute, first)
	e.stop(first)
	committed, _, err := e.meta(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.spec.Change = &chaos.WindowChange{After: committed, Window: 3 * time.Second, Slide: time.Second}
	e.settings["DSTREAM_WINDOW"], e.settings["DSTREAM_SLIDE"] = "3s", "1s"
	second := e.start("second")
	e.waitDrained(3*time.Minute, second)
	if !second.Logged(`the window of \"window-counts\" changed`) {
		t.Errorf("the restart did not log the window change%s", second.LogTail(20))
	}
	e.stop(second)
	rep, in := e.verify()
	if !rep.OK() || rep.Last <= committed+2 {
		t.Fatalf("output across the window change (after batch %d): %s", committed, rep)
	}
	e.verifyTotals(in)

	e.settings["DSTREAM_BATCH_INTERVAL"] = "1s"
	third := e.start("third")
	e.waitRole(third, "refused", time.Minute)
	s := e.status(third, schema)
	reason := s.Refused()
	if !strings.Contains(reason, "batch interval changed from 500ms to 1000ms") || !strings.Contains(reason, "dstream reset --yes") {
		t.Errorf("refused_reason %q: want the interval change and the command that resolves it", reason)
	}
	e.stop(third)
}

// TestResetStartsOver resets a job that ran: without --yes nothing changes;
// with it, the job starts over at the end of the input, its state empty and
// its batch ids going on after the last batch it wrote. After more input,
// the running totals count only the lines since the reset, and the output
// holds every batch once.
func TestResetStartsOver(t *testing.T) {
	e := newEnv(t, kafkatest.Shared(t), redistest.Shared(t), envOptions{leaseTTL: time.Second, seed: 13})
	_, fed, stopFeed := e.startFeed(5_000, 0)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	p := e.start("first")
	e.waitDrained(2*time.Minute, p)
	e.stop(p)
	before, _, err := e.meta(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resetAt := e.ends()

	out, code := e.command("reset", "--to", "latest")
	if code != 1 || !strings.Contains(out, "run again with --yes") {
		t.Fatalf("reset without --yes: exit %d:\n%s", code, out)
	}
	if c, _, _ := e.meta(context.Background()); c != before {
		t.Fatalf("reset without --yes changed the checkpoint: batch %d, was %d", c, before)
	}
	out, code = e.command("reset", "--to", "latest", "--yes")
	if code != 0 {
		t.Fatalf("reset: exit %d:\n%s", code, out)
	}
	t.Logf("reset:\n%s", out)
	after, offsets, err := e.meta(context.Background())
	if err != nil || after != before+1 || !maps.Equal(offsets, resetAt) {
		t.Fatalf("after the reset: batch %d at %v (%v), want batch %d at the input's end %v", after, offsets, err, before+1, resetAt)
	}

	_, fed, stopFeed = e.startFeed(4_000, 0)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	p = e.start("second")
	e.waitDrained(2*time.Minute, p)
	e.stop(p)

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
	if got := e.totalsOf(ctx, e.job); !maps.Equal(got, want) {
		t.Errorf("totals after the reset: %d IPs, want %d counted since the reset (e.g. %v)", len(got), len(want), firstDiff(got, want))
	}
	outp, err := chaos.ReadOutput(ctx, e.clientOpts(), e.spec)
	if err != nil {
		t.Fatal(err)
	}
	ids := outp.BatchIDs()
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			t.Fatalf("batch %d twice in the output", ids[i])
		}
	}
	if len(ids) == 0 || ids[len(ids)-1] <= before+1 {
		t.Errorf("output batches %v: want batches after the reset point %d", ids, before+1)
	}
}

func firstDiff(got, want map[string]int64) string {
	for k, w := range want {
		if got[k] != w {
			return k + ": got " + itoa(got[k]) + ", want " + itoa(w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			return k + ": got " + itoa(g) + ", want none"
		}
	}
	return "none"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestTwoJobsShareTopics runs two jobs that share the output and the
// dead-letter topic, each on its own input, and SIGKILLs them at random
// moments (a kill just before a Kafka commit among them). Recovery reads
// only each job's own markers: each job's output (its dstream-job records)
// holds every batch of its own once and right.
func TestTwoJobsShareTopics(t *testing.T) {
	broker, rds := kafkatest.Shared(t), redistest.Shared(t)
	a := newEnv(t, broker, rds, envOptions{leaseTTL: time.Second, ratePerSec: 600, seed: 17})
	b := newEnv(t, broker, rds, envOptions{leaseTTL: time.Second, ratePerSec: 600, seed: 19})
	b.spec.Output, b.spec.DeadLetter = a.spec.Output, a.spec.DeadLetter
	b.settings["DSTREAM_OUTPUT_TOPIC"], b.settings["DSTREAM_DEADLETTER_TOPIC"] = a.spec.Output, a.spec.DeadLetter
	a.spec.Job, b.spec.Job = a.job, b.job
	rng := rand.New(rand.NewPCG(23, 29))
	for _, e := range []*env{a, b} {
		_, fed, stopFeed := e.startFeed(25_000, 0)
		<-fed
		if err := stopFeed(); err != nil {
			t.Fatal(err)
		}
	}
	names := map[*env]string{a: "a", b: "b"}
	procs := map[*env]*chaos.Processor{a: a.start("a-0"), b: b.start("b-0")}
	for round := range 6 {
		time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
		e := []*env{a, b}[rng.IntN(2)]
		procs[e].Signal(syscall.SIGKILL)
		<-procs[e].Done()
		procs[e] = e.start(fmt.Sprintf("%s-%d", names[e], round+1))
	}
	for _, e := range []*env{a, b} {
		e.waitDrained(3*time.Minute, procs[e])
		e.stop(procs[e])
	}
	for _, e := range []*env{a, b} {
		rep, in := e.verify()
		t.Logf("%s: %s", e.job, rep)
		if !rep.OK() || rep.Batches < 5 {
			t.Errorf("%s: %s", e.job, rep)
		}
		e.verifyTotals(in)
	}
}

// TestRedisRewoundToAnOlderAOF copies Redis's append-only file while the job
// runs, lets it go on for a second, then restarts Redis from the copy: the
// checkpoint goes back about a second, as after a host crash with appendfsync
// everysec. The processor takes the job again and heals the batches the
// checkpoint lost from the output's markers: nothing lost, doubled or wrong.
func TestRedisRewoundToAnOlderAOF(t *testing.T) {
	rds := redistest.Require(t, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"})
	e := newEnv(t, kafkatest.Shared(t), rds, envOptions{leaseTTL: time.Second, ratePerSec: 500, seed: 31})
	_, fed, stopFeed := e.startFeed(40_000, 0)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	p := e.start("first")
	e.waitCommitted(4, time.Minute, p)
	dir := filepath.Join(rds.Dir(), "appendonlydir")
	copyDir := filepath.Join(t.TempDir(), "aof")
	if err := os.CopyFS(copyDir, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	at, _, _ := e.meta(context.Background())
	time.Sleep(time.Second)
	e.waitCommitted(at+2, time.Minute, p)
	if err := rds.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(copyDir, dir); err != nil {
		t.Fatal(err)
	}
	if err := rds.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	rewound, _, err := e.meta(context.Background())
	t.Logf("the checkpoint went back from batch %d or later to %d (%v)", at+2, rewound, err)
	e.waitDrained(3*time.Minute, p)
	if !p.Logged("healing them from their plans") {
		t.Errorf("no heal logged%s", p.LogTail(20))
	}
	e.stop(p)
	rep, in := e.verify()
	if !rep.OK() {
		t.Fatalf("output after the rewind: %s", rep)
	}
	e.verifyTotals(in)
}

// TestStateFormatUpgrade runs the job writing its state parts in format 1
// (DSTREAM_STATE_FORMAT=1, what releases before format 2 read), stops it,
// and starts it again with the default, format 2, as an upgrade finalized
// after the rollback window does: the second process loads the format-1
// parts and goes on, the output holds every batch once, and the totals are
// right. The stored parts are in format 1 after the first run, and the
// second writes format 2.
func TestStateFormatUpgrade(t *testing.T) {
	e := newEnv(t, kafkatest.Shared(t), redistest.Shared(t), envOptions{leaseTTL: time.Second, ratePerSec: 400, seed: 23})
	_, fed, stopFeed := e.startFeed(30_000, 0)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	formats := func() map[byte]int {
		t.Helper()
		n := map[byte]int{}
		var cursor uint64
		for {
			kvs, next, err := e.rdb.HScan(context.Background(), "{dstream:"+e.job+"}:st:totals", cursor, "", 16).Result()
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(kvs); i += 2 {
				if kvs[i] != "" {
					n[kvs[i][0]]++
				}
			}
			if next == 0 {
				return n
			}
			cursor = next
		}
	}
	e.settings["DSTREAM_STATE_FORMAT"] = "1"
	first := e.start("format-1")
	e.waitCommitted(7, time.Minute, first)
	e.stop(first)
	if n := formats(); n[1] == 0 || n[2] != 0 {
		t.Fatalf("after the run in format 1, the totals' parts by format: %v", n)
	}
	committed, _, err := e.meta(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	delete(e.settings, "DSTREAM_STATE_FORMAT")
	second := e.start("format-2")
	e.waitDrained(3*time.Minute, second)
	e.stop(second)
	if n := formats(); n[2] == 0 {
		t.Errorf("after the run in format 2, the totals' parts by format: %v", n)
	}
	rep, in := e.verify()
	if !rep.OK() || rep.Last <= committed+2 {
		t.Fatalf("output across the upgrade (after batch %d): %s", committed, rep)
	}
	e.verifyTotals(in)
}
