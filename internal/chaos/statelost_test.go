package chaos_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/state"
)

// TestStateLost takes the job's checkpoint away under a running processor,
// by FLUSHALL or by a Redis restart that lost its data: the processor must
// stop, and a new one must refuse to start over from batch 0 (which would
// count everything again) with the StateLostError message; the output keeps
// every batch once.
func TestStateLost(t *testing.T) {
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

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			code, err := first.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("the running processor: exit %d: %s", code, first.ExitError())
			if msg := first.ExitError(); code == 0 || !strings.Contains(msg, state.ErrCheckpointLost.Error()) {
				t.Errorf("the running processor: exit %d, error %q; want non-zero and ErrCheckpointLost%s", code, msg, first.LogTail(10))
			}
			second := e.start("second")
			code, err = second.Wait(ctx)
			if err != nil {
				t.Fatalf("%v%s", err, second.LogTail(20))
			}
			msg := second.ExitError()
			t.Logf("a new processor: exit %d: %s", code, msg)
			if code == 0 || !strings.Contains(msg, "state lost: the checkpoint is at batch 0 but the output already holds batch") {
				t.Errorf("a new processor: exit %d, error %q; want non-zero and the StateLostError%s", code, msg, second.LogTail(10))
			}
			rep, _ := e.verify()
			if !rep.OK() || rep.Batches < 5 {
				t.Fatalf("output after the loss: %s", rep)
			}
		})
	}
}
