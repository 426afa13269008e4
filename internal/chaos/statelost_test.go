package chaos_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/state"
)

// TestStateLost takes the job's checkpoint away under a running processor,
// by FLUSHALL or by a Redis restart that lost its data: the processor must
// stop running the job and refuse, and a new one must refuse to start over
// from batch 0 (which would count everything again) with the StateLostError
// message. Refusing, both stay up (a restart cannot fix it), not ready, with
// dstream_refused 1 and the reason in /api/status, and stop at once on
// SIGTERM; the output keeps every batch once.
func TestStateLost(t *testing.T) {
	schema := statusSchema(t)
	for _, test := range []struct {
		name string
		lose func(t *testing.T, rds *redistest.Server)
	}{
		{"flushall", func(t *testing.T, rds *redistest.Server) {
			cl := rds.Client()
			defer cl.Close()
			if err := cl.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		}},
		{"restart-without-data", func(t *testing.T, rds *redistest.Server) {
			if err := rds.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(rds.Dir(), "appendonlydir")); err != nil {
				t.Fatal(err)
			}
			if err := rds.Restart(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(test.name, func(t *testing.T) {
			rds := redistest.Require(t, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"})
			e := newEnv(t, kafkatest.Shared(t), rds, envOptions{leaseTTL: time.Second, ratePerSec: 1000, seed: 5})
			_, fed, stopFeed := e.startFeed(40_000, 0)
			<-fed // all written before the job starts
			if err := stopFeed(); err != nil {
				t.Fatal(err)
			}
			first := e.start("first")
			e.waitCommitted(5, time.Minute, first)
			test.lose(t, rds)

			refused := func(p *chaos.Processor, want string) {
				t.Helper()
				e.waitRole(p, "refused", time.Minute)
				s := e.status(p, schema)
				reason := ""
				if s.Instance.RefusedReason != nil {
					reason = *s.Instance.RefusedReason
				}
				t.Logf("%s refuses: %s", p.Name, reason)
				if !strings.Contains(reason, want) || s.Instance.Ready {
					t.Errorf("%s: refused_reason %q, ready %v; want %q, not ready", p.Name, reason, s.Instance.Ready, want)
				}
				if ok, err := p.Ready(context.Background()); ok || err != nil {
					t.Errorf("%s: /readyz ready %v (%v) while refusing", p.Name, ok, err)
				}
				if e.metric(p, "dstream_refused") != 1 || e.metric(p, "dstream_active") != 0 {
					t.Errorf("%s: dstream_refused %v, dstream_active %v; want 1, 0", p.Name, e.metric(p, "dstream_refused"), e.metric(p, "dstream_active"))
				}
				if p.Exited() {
					t.Fatalf("%s exited instead of refusing%s", p.Name, p.LogTail(10))
				}
			}
			refused(first, state.ErrCheckpointLost.Error())
			second := e.start("second")
			refused(second, "state lost: the checkpoint is at batch 0 but the output already holds batch")
			for _, p := range []*chaos.Processor{first, second} {
				termAt := time.Now()
				e.stop(p)
				t.Logf("%s, refusing, stopped %v after SIGTERM", p.Name, time.Since(termAt).Round(time.Millisecond))
				if n := strings.Count(readFile(t, p.LogPath), `"refusing to run the job`); n != 1 {
					t.Errorf("%s logged its refusal %d times, want once", p.Name, n)
				}
			}
			rep, _ := e.verify()
			if !rep.OK() || rep.Batches < 5 {
				t.Fatalf("output after the loss: %s", rep)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
