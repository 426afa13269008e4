package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
)

// chaosConfig is the size of TestChaos: short by default, the full run with
// DSTREAM_CHAOS=1 (make chaos); DSTREAM_CHAOS_LINES, _KILLS, _RATE, _CAP and
// _SEED override single settings.
type chaosConfig struct {
	lines int64
	kills int
	rate  int // lines/s written
	cap   int // DSTREAM_MAX_RATE_PER_PARTITION: batches of 4*cap/2 lines
	seed  uint64
}

func loadChaosConfig(t *testing.T) chaosConfig {
	// The feed outruns the processor's rate cap, so that most batches are
	// full and the processor always has a backlog to work through.
	c := chaosConfig{lines: 100_000, kills: 6, rate: 10_000, cap: 1000, seed: uint64(time.Now().UnixNano())}
	if os.Getenv("DSTREAM_CHAOS") == "1" {
		c.lines, c.kills, c.rate, c.cap = 2_000_000, 25, 25_000, 5000
	}
	for _, v := range []struct {
		env string
		set func(n int64)
	}{
		{"DSTREAM_CHAOS_LINES", func(n int64) { c.lines = n }},
		{"DSTREAM_CHAOS_KILLS", func(n int64) { c.kills = int(n) }},
		{"DSTREAM_CHAOS_RATE", func(n int64) { c.rate = int(n) }},
		{"DSTREAM_CHAOS_CAP", func(n int64) { c.cap = int(n) }},
		{"DSTREAM_CHAOS_SEED", func(n int64) { c.seed = uint64(n) }},
	} {
		if s := os.Getenv(v.env); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				t.Fatalf("%s=%q: want a number", v.env, s)
			}
			v.set(n)
		}
	}
	return c
}

// TestChaos runs the dstream binary against a real broker and a real Redis
// (AOF on) while a feed writes web-log lines, SIGKILLs it at random moments
// (starting, standing by for the dead one's lease, recovering, in the middle
// of batches) and restarts it each time, restarts Redis once and the broker
// once under it, then lets a last run drain the input and checks the output
// against a recomputation from the input: every batch exactly once, every
// result right, every line counted once in the running totals.
func TestChaos(t *testing.T) {
	cfg := loadChaosConfig(t)
	broker := kafkatest.Require(t, kafkatest.Options{})
	rds := redistest.Require(t, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"})
	e := newEnv(t, broker, rds, envOptions{leaseTTL: time.Second, ratePerSec: cfg.cap, seed: cfg.seed})
	t.Logf("chaos: seed %d (DSTREAM_CHAOS_SEED), %d lines at %d/s, rate cap %d/s per partition, at least %d kills",
		cfg.seed, cfg.lines, cfg.rate, cfg.cap, cfg.kills)
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5eed))
	moment := func() time.Duration { return 100*time.Millisecond + time.Duration(rng.Int64N(int64(4*time.Second))) }

	sent, fed, stopFeed := e.startFeed(cfg.lines, cfg.rate)
	ctx := context.Background()
	redisAt, brokerAt := cfg.kills/3, 2*cfg.kills/3
	redisDone, brokerDone := false, false
	kills, exits := 0, 0
	started := time.Now()
	for run := 1; ; run++ {
		feeding := true
		select {
		case <-fed:
			feeding = false
		default:
		}
		if !feeding && kills >= cfg.kills {
			break
		}
		p := e.start(fmt.Sprintf("run-%02d", run))
		waitOrExit(p, moment())
		if !p.Exited() && kills == redisAt && !redisDone {
			redisDone = true
			// A crash (AOF fsynced on every write keeps the data) and an
			// outage longer than the lease.
			t0 := time.Now()
			if err := rds.Kill(); err != nil {
				t.Fatal(err)
			}
			waitOrExit(p, 3*time.Second/2)
			if err := rds.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("redis killed and restarted under %s: down for %v", p.Name, time.Since(t0).Round(time.Millisecond))
			waitOrExit(p, moment())
		}
		if !p.Exited() && kills == brokerAt && !brokerDone {
			brokerDone = true
			// A crash: the broker recovers its logs and transaction state.
			t0 := time.Now()
			if err := broker.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := broker.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("broker killed and restarted under %s: down for %v", p.Name, time.Since(t0).Round(time.Millisecond))
			waitOrExit(p, moment())
		}
		if p.Exited() {
			// Only a kill may stop it: it must ride out server restarts.
			exits++
			t.Errorf("%s exited by itself: %s%s", p.Name, p.ExitError(), p.LogTail(10))
			continue
		}
		p.Kill()
		kills++
		c, _, _ := e.meta(ctx)
		t.Logf("killed %s after %v: committed %d, fed %d lines", p.Name, time.Since(started).Round(time.Millisecond), c, sent.Load())
	}
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	final := e.start("final")
	e.waitDrained(10*time.Minute, final)
	e.stop(final)

	rep, in := e.verify()
	e.verifyTotals(in)
	t.Logf("%d lines, %d malformed ones as dead letters; %d exits without a kill; %v", in.Lines, rep.DeadLetters, exits, time.Since(started).Round(time.Second))
	fmt.Printf("chaos: kills=%d %s\n", kills, rep)
	if !rep.OK() {
		t.Fatalf("chaos: kills=%d %s", kills, rep)
	}
	if !redisDone || !brokerDone {
		t.Errorf("restarted redis: %v, broker: %v: want both", redisDone, brokerDone)
	}
}

// waitOrExit waits d, or less if p exits.
func waitOrExit(p *chaos.Processor, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-p.Done():
	}
}
