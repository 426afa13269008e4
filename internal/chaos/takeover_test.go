package chaos_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
)

// waitReady waits until p answers /readyz with 200: it is healthy, active
// or standby alike.
func (e *env) waitReady(p *chaos.Processor, limit time.Duration) {
	e.t.Helper()
	e.waitFor(p.Name+" to be ready", limit, func(ctx context.Context) bool {
		if p.Exited() {
			e.t.Fatalf("%s exited: %s%s", p.Name, p.ExitError(), p.LogTail(20))
		}
		ok, _ := p.Ready(ctx)
		return ok
	})
}

// waitStandingBy waits until p found the job held by another instance.
func (e *env) waitStandingBy(p *chaos.Processor) {
	e.t.Helper()
	e.waitFor(p.Name+" to stand by", time.Minute, func(context.Context) bool {
		if p.Exited() {
			e.t.Fatalf("%s exited: %s%s", p.Name, p.ExitError(), p.LogTail(20))
		}
		return p.Logged("standing by")
	})
}

// TestTakeover runs a hot standby beside the active instance of a job: the
// standby writes nothing and is ready (healthy) but not active; when the
// active one is SIGKILLed it takes over; when the active one is paused
// (SIGSTOP) past its lease the standby takes over too, and the old one,
// continued, is fenced: whatever it had in flight never shows in the output,
// and it goes back to standing by (dstream_fenced_total counts it), to take
// the job over again in the next round. The output is then verified exactly
// once.
func TestTakeover(t *testing.T) {
	const ttl = 2 * time.Second
	e := newEnv(t, kafkatest.Shared(t), redistest.Shared(t), envOptions{leaseTTL: ttl, ratePerSec: 1000, seed: 11})
	_, _, stopFeed := e.startFeed(10_000_000, 6000)
	ctx := context.Background()

	active := e.start("first")
	e.waitRole(active, "active", time.Minute)
	standby := e.start("standby-0")
	e.waitStandingBy(standby)
	e.waitReady(standby, time.Minute)
	c0, _, _ := e.meta(ctx)
	e.waitFor("3 batches of the active instance", time.Minute, func(ctx context.Context) bool {
		if s, err := standby.Status(ctx); err == nil && (s.Instance.Role != "standby" || !s.Instance.Ready) {
			t.Fatalf("the standby is %s (ready %v) while %s holds the job", s.Instance.Role, s.Instance.Ready, active.Name)
		}
		c, _, err := e.meta(ctx)
		return err == nil && c >= c0+3
	})
	if standby.Logged("job acquired") {
		t.Fatalf("the standby acquired the job while %s held it%s", active.Name, standby.LogTail(10))
	}

	killed := time.Now()
	active.Kill()
	e.waitRole(standby, "active", time.Minute)
	afterKill := time.Since(killed)
	active, standby = standby, e.start("standby-1")

	var afterPause []time.Duration
	for round := 1; round <= 3; round++ {
		e.waitRole(standby, "standby", time.Minute)
		c, _, _ := e.meta(ctx)
		e.waitCommitted(c+1, time.Minute, active)
		fenced := e.metric(active, "dstream_fenced_total")
		// The first pause comes between batches; the others while the
		// output transaction is open, when the broker shows it.
		inTxn := round > 1 && e.pauseInTransaction(active, 10*time.Second)
		if !inTxn {
			active.Signal(syscall.SIGSTOP)
		}
		paused := time.Now()
		e.waitRole(standby, "active", time.Minute)
		afterPause = append(afterPause, time.Since(paused))
		c, _, _ = e.meta(ctx)
		e.waitCommitted(c+2, time.Minute, standby)
		active.Signal(syscall.SIGCONT)
		e.waitFor(active.Name+" to be fenced", time.Minute, func(ctx context.Context) bool {
			if active.Exited() {
				t.Fatalf("%s exited after it was fenced: %s%s", active.Name, active.ExitError(), active.LogTail(20))
			}
			v, ok, err := active.Metric(ctx, "dstream_fenced_total")
			return err == nil && ok && v == fenced+1
		})
		e.waitRole(active, "standby", time.Minute)
		t.Logf("%s, paused (in a transaction: %v) and continued: fenced, standing by again", active.Name, inTxn)
		if standby.Exited() {
			t.Fatalf("%s, which took over, exited: %s%s", standby.Name, standby.ExitError(), standby.LogTail(20))
		}
		active, standby = standby, active
	}

	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	e.waitDrained(5*time.Minute, active)
	e.stop(standby)
	e.stop(active)
	rep, in := e.verify()
	e.verifyTotals(in)
	t.Logf("lease TTL %v, batch interval %v: the standby took over %v after SIGKILL, %v after SIGSTOP; %s",
		ttl, e.spec.Interval, afterKill.Round(10*time.Millisecond), roundAll(afterPause), rep)
	if !rep.OK() {
		t.Fatalf("takeover: %s", rep)
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Millisecond)
	}
	return out
}

// pauseInTransaction stops p (SIGSTOP) as soon as the output or dead-letter
// topic has records beyond its last stable offset, that is while p's output
// transaction is open or being committed. It gives up after limit and
// reports whether it paused p.
func (e *env) pauseInTransaction(p *chaos.Processor, limit time.Duration) bool {
	e.t.Helper()
	cl, err := e.broker.Client()
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	topics := []string{e.spec.Output, e.spec.DeadLetter}
	for ctx.Err() == nil {
		ends, err1 := adm.ListEndOffsets(ctx, topics...)
		stable, err2 := adm.ListCommittedOffsets(ctx, topics...)
		if err1 != nil || err2 != nil {
			continue
		}
		open := false
		ends.Each(func(o kadm.ListedOffset) {
			if s, ok := stable.Lookup(o.Topic, o.Partition); ok && o.Offset > s.Offset {
				open = true
			}
		})
		if open {
			p.Signal(syscall.SIGSTOP)
			return true
		}
	}
	return false
}
