package chaos_test

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/jsonschema"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
)

// statusSchema is the documented schema of /api/status.
func statusSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	data, err := os.ReadFile("../../docs/status.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := jsonschema.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// status fetches p's /api/status and checks it against the schema.
func (e *env) status(p *chaos.Processor, schema *jsonschema.Schema) *chaos.Status {
	e.t.Helper()
	s, err := p.Status(context.Background())
	if err != nil {
		e.t.Fatalf("%v%s", err, p.LogTail(10))
	}
	if err := schema.Validate(s.Raw); err != nil {
		e.t.Errorf("%s's /api/status (%s) does not match docs/status.schema.json:\n%v", p.Name, s.Instance.Role, err)
	}
	return s
}

// metric reads one sample of p's /metrics, failing the test without it.
func (e *env) metric(p *chaos.Processor, sample string) float64 {
	e.t.Helper()
	v, ok, err := p.Metric(context.Background(), sample)
	if err != nil || !ok {
		e.t.Fatalf("%s: %s: %v (found %v)", p.Name, sample, err, ok)
	}
	return v
}

// waitRole waits until p's /api/status shows role.
func (e *env) waitRole(p *chaos.Processor, role string, limit time.Duration) {
	e.t.Helper()
	e.waitFor(p.Name+" to be "+role, limit, func(ctx context.Context) bool {
		if p.Exited() {
			e.t.Fatalf("%s exited: %s%s", p.Name, p.ExitError(), p.LogTail(20))
		}
		s, err := p.Status(ctx)
		return err == nil && s.Instance.Role == role
	})
}

// TestTwoInstances runs an active instance and a hot standby of one job on a
// real broker and Redis. Both are ready: readiness is the process's health,
// and which one runs the job is in dstream_active and /api/status. The
// standby reports the job's progress from Redis (committed batch, its time,
// the recent batches). When the active one is paused past its lease the
// standby takes over with the history of the batches it did not run; the
// paused one, continued, is fenced and goes back to standing by, ready,
// counting dstream_fenced_total, instead of exiting.
func TestTwoInstances(t *testing.T) {
	schema := statusSchema(t)
	e := newEnv(t, kafkatest.Shared(t), redistest.Shared(t), envOptions{leaseTTL: 2 * time.Second, ratePerSec: 500, seed: 3})
	_, _, stopFeed := e.startFeed(1_000_000, 3000)
	ctx := context.Background()

	a := e.start("a")
	e.waitRole(a, "active", time.Minute)
	e.waitCommitted(3, time.Minute, a)
	b := e.start("b")
	e.waitStandingBy(b)
	e.waitReady(a, time.Minute)
	e.waitReady(b, time.Minute)

	// The standby follows the job from Redis.
	c0, _, _ := e.meta(ctx)
	e.waitFor("the standby to report the job's progress", time.Minute, func(ctx context.Context) bool {
		v, ok, err := b.Metric(ctx, "dstream_last_committed_batch")
		return err == nil && ok && uint64(v) > c0
	})
	sa, sb := e.status(a, schema), e.status(b, schema)
	if sa.Instance.Role != "active" || sb.Instance.Role != "standby" || !sa.Instance.Ready || !sb.Instance.Ready {
		t.Errorf("a: %s ready %v, b: %s ready %v; want an active and a standby, both ready",
			sa.Instance.Role, sa.Instance.Ready, sb.Instance.Role, sb.Instance.Ready)
	}
	if sb.Instance.BatchesRun != 0 || sb.Job.CommittedBatch == 0 || sb.Job.LastCommitAt == nil || len(sb.Batches) == 0 ||
		len(sb.Batches[len(sb.Batches)-1].Offsets) != 4 {
		t.Errorf("the standby's status: ran %d, committed %d at %v, %d batches: want the job's progress from Redis",
			sb.Instance.BatchesRun, sb.Job.CommittedBatch, sb.Job.LastCommitAt, len(sb.Batches))
	}
	for _, m := range []struct {
		p    *chaos.Processor
		name string
		want float64
	}{
		{a, "dstream_active", 1}, {b, "dstream_active", 0},
		{a, "dstream_refused", 0}, {b, "dstream_refused", 0},
		{a, "dstream_fenced_total", 0}, {b, "dstream_fenced_total", 0},
		{b, "dstream_batch_interval_seconds", 0.5},
	} {
		if got := e.metric(m.p, m.name); got != m.want {
			t.Errorf("%s: %s = %v, want %v", m.p.Name, m.name, got, m.want)
		}
	}
	if e.metric(b, "dstream_last_commit_timestamp_seconds") == 0 || e.metric(b, "dstream_last_committed_batch_time_seconds") == 0 {
		t.Errorf("the standby does not report when the job last committed")
	}
	if _, ok, _ := b.Metric(ctx, `dstream_consumer_lag_records{partition="0",topic="`+e.spec.Input+`"}`); ok {
		t.Errorf("the standby exports consumer lag, which is the active instance's")
	}
	if code, body, err := b.Get(ctx, "/api/state/top-ips/10.0.0.1"); err != nil || code != 503 {
		t.Errorf("the standby's state lookup: %d %s %v, want 503", code, body, err)
	}

	// Pause the active instance past its lease: the standby takes over.
	a.Signal(syscall.SIGSTOP)
	e.waitRole(b, "active", time.Minute)
	taken, _, _ := e.meta(ctx)
	e.waitCommitted(taken+2, time.Minute, b)
	sb = e.status(b, schema)
	ranHere, before := 0, 0
	for _, batch := range sb.Batches {
		if batch.ID <= c0 {
			before++
		}
		if batch.ID > taken {
			ranHere++
		}
	}
	if before == 0 || ranHere == 0 {
		t.Errorf("after the takeover the status shows %d batches from before it and %d after: want both (history rebuilt from Redis)", before, ranHere)
	}
	if e.metric(b, "dstream_active") != 1 {
		t.Errorf("b took over but is not dstream_active")
	}

	// The paused one, continued, is fenced: it stands by again, ready.
	a.Signal(syscall.SIGCONT)
	e.waitFor("a to be fenced", time.Minute, func(ctx context.Context) bool {
		if a.Exited() {
			t.Fatalf("a exited after it was fenced: %s%s", a.ExitError(), a.LogTail(20))
		}
		v, ok, err := a.Metric(ctx, "dstream_fenced_total")
		return err == nil && ok && v == 1
	})
	e.waitRole(a, "standby", time.Minute)
	e.waitReady(a, time.Minute)
	sa = e.status(a, schema)
	if sa.Instance.Fenced != 1 || e.metric(a, "dstream_active") != 0 {
		t.Errorf("a after the fence: fenced %d, active %v", sa.Instance.Fenced, e.metric(a, "dstream_active"))
	}
	if !a.Logged("another instance took the job over: standing by again") {
		t.Errorf("a did not log that it stands by again%s", a.LogTail(10))
	}

	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	e.waitDrained(5*time.Minute, b)
	for _, p := range []*chaos.Processor{a, b} {
		termAt := time.Now()
		e.stop(p)
		t.Logf("%s stopped %v after SIGTERM", p.Name, time.Since(termAt).Round(time.Millisecond))
	}
	rep, in := e.verify()
	e.verifyTotals(in)
	if !rep.OK() {
		t.Fatalf("output: %s", rep)
	}
}
