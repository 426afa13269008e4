package chaos_test

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
)

// TestStopTime measures how long the dstream binary takes from SIGTERM to
// its exit when no batch is in flight: active and waiting for its next
// batch time (5 s batches), standing by, and active with Redis down. It
// reports the figures (a shared machine makes timing assertions flaky);
// each stop is bounded by the test's patience only. With Redis down it also
// checks that every line the process wrote is JSON: go-redis's own logger
// prints plain text lines while it cannot connect.
func TestStopTime(t *testing.T) {
	const interval = 5 * time.Second
	rds := redistest.Require(t, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"})
	e := newEnv(t, kafkatest.Shared(t), rds, envOptions{interval: interval, leaseTTL: 2 * time.Second, ratePerSec: 5000, seed: 9})
	_, fed, stopFeed := e.startFeed(5_000, 0)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stopped := func(p *chaos.Processor) (time.Duration, int) {
		t.Helper()
		termAt := time.Now()
		p.Signal(syscall.SIGTERM)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		code, err := p.Wait(wctx)
		if err != nil {
			t.Fatalf("%v%s", err, p.LogTail(20))
		}
		return time.Since(termAt), code
	}

	active := e.start("active")
	e.waitRole(active, "active", time.Minute)
	e.waitDrained(time.Minute, active)
	standby := e.start("standby")
	e.waitRole(standby, "standby", time.Minute)
	e.waitReady(standby, time.Minute)
	standbyStop, standbyCode := stopped(standby)

	// Idle: just after a commit, the next batch time is an interval away.
	c, _, _ := e.meta(ctx)
	e.waitCommitted(c+1, time.Minute, active)
	idleStop, idleCode := stopped(active)

	again := e.start("redis-down")
	e.waitRole(again, "active", time.Minute)
	c, _, _ = e.meta(ctx)
	e.waitCommitted(c+1, time.Minute, again)
	if err := rds.Kill(); err != nil {
		t.Fatal(err)
	}
	downAt := time.Now()
	e.waitFor("the processor to notice Redis is down", time.Minute, func(ctx context.Context) bool {
		code, body, err := again.Get(ctx, "/readyz")
		return err == nil && code == 503 && strings.Contains(string(body), "Redis does not answer")
	})
	time.Sleep(max(0, 3*time.Second-time.Since(downAt))) // let its clients retry and log for a while
	downStop, downCode := stopped(again)

	t.Logf("SIGTERM to exit with %v batches: standby %v (exit %d), active and idle %v (exit %d), active with Redis down for %v: %v (exit %d)",
		interval, standbyStop.Round(time.Millisecond), standbyCode, idleStop.Round(time.Millisecond), idleCode,
		time.Since(downAt).Round(time.Second), downStop.Round(time.Millisecond), downCode)
	if standbyCode != 0 || idleCode != 0 {
		t.Errorf("exit codes %d (standby) and %d (idle), want 0", standbyCode, idleCode)
	}
	for _, p := range []*chaos.Processor{active, standby, again} {
		fromRedis := 0
		for i, line := range strings.Split(strings.TrimRight(readFile(t, p.LogPath), "\n"), "\n") {
			var v map[string]any
			if json.Unmarshal([]byte(line), &v) != nil {
				t.Errorf("%s: log line %d is not JSON: %q", p.Name, i+1, line)
			}
			if v["component"] == "redis" {
				fromRedis++
			}
		}
		if p == again {
			t.Logf("%s: %d lines from go-redis while Redis was down", p.Name, fromRedis)
		}
	}
}
