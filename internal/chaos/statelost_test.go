package chaos_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
)

// loseRedis are the ways Redis loses a job's checkpoint whole.
var loseRedis = []struct {
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
}

// TestStateLostIsHealed takes the job's whole checkpoint away under a
// running processor, by FLUSHALL or by a Redis restart that lost its data.
// The input and the job's control topic still hold everything, so the
// processor takes the job again and recomputes every batch the output holds
// from its marker, without writing it again, then goes on: the output keeps
// every batch once and the running totals in Redis match the input.
func TestStateLostIsHealed(t *testing.T) {
	for _, test := range loseRedis {
		t.Run(test.name, func(t *testing.T) {
			rds := redistest.Require(t, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"})
			e := newEnv(t, kafkatest.Shared(t), rds, envOptions{leaseTTL: time.Second, ratePerSec: 1000, seed: 5})
			_, fed, stopFeed := e.startFeed(40_000, 0)
			<-fed // all written before the job starts
			if err := stopFeed(); err != nil {
				t.Fatal(err)
			}
			p := e.start("first")
			e.waitCommitted(5, time.Minute, p)
			test.lose(t, rds)
			e.waitDrained(3*time.Minute, p)
			if !p.Logged("healing them from their plans") {
				t.Errorf("%s did not log that it healed the lost batches%s", p.Name, p.LogTail(20))
			}
			if e.metric(p, "dstream_refused") != 0 {
				t.Errorf("%s refuses after the loss", p.Name)
			}
			e.stop(p)
			rep, in := e.verify()
			if !rep.OK() || rep.Batches < 5 {
				t.Fatalf("output after the loss: %s", rep)
			}
			e.verifyTotals(in)
		})
	}
}

// TestStateLostBeyondTheInputIsRefused loses the whole checkpoint after
// retention deleted the input's first records: the batches the output holds
// can no longer be recomputed, so a processor must refuse (not count from
// zero), stay up, not ready, with the StateLostError in /api/status, and
// stop at once on SIGTERM.
func TestStateLostBeyondTheInputIsRefused(t *testing.T) {
	schema := statusSchema(t)
	rds := redistest.Require(t, redistest.Options{AOF: true, MaxMemoryPolicy: "noeviction"})
	e := newEnv(t, kafkatest.Shared(t), rds, envOptions{leaseTTL: time.Second, ratePerSec: 1000, seed: 7})
	_, fed, stopFeed := e.startFeed(20_000, 0)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	first := e.start("first")
	e.waitCommitted(5, time.Minute, first)
	e.stop(first)
	// Retention takes the first 10 records of every partition.
	cl, err := e.broker.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var offsets kadm.Offsets
	for p := range e.ends() {
		offsets.Add(kadm.Offset{Topic: e.spec.Input, Partition: p, At: 10})
	}
	resp, err := kadm.NewClient(cl).DeleteRecords(context.Background(), offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	loseRedis[0].lose(t, rds)

	second := e.start("second")
	e.waitRole(second, "refused", 2*time.Minute)
	s := e.status(second, schema)
	reason := s.Refused()
	t.Logf("%s refuses: %s", second.Name, reason)
	if !strings.Contains(reason, "state lost") || !strings.Contains(reason, "cannot be recomputed") || s.Instance.Ready {
		t.Errorf("refused_reason %q, ready %v; want a StateLostError saying the batches cannot be recomputed, not ready", reason, s.Instance.Ready)
	}
	if ok, err := second.Ready(context.Background()); ok || err != nil {
		t.Errorf("/readyz ready %v (%v) while refusing", ok, err)
	}
	if e.metric(second, "dstream_refused") != 1 || e.metric(second, "dstream_active") != 0 {
		t.Errorf("dstream_refused %v, dstream_active %v; want 1, 0", e.metric(second, "dstream_refused"), e.metric(second, "dstream_active"))
	}
	termAt := time.Now()
	e.stop(second)
	t.Logf("refusing, stopped %v after SIGTERM", time.Since(termAt).Round(time.Millisecond))
	if n := strings.Count(readFile(t, second.LogPath), `"refusing to run the job`); n != 1 {
		t.Errorf("logged its refusal %d times, want once", n)
	}
	// What the job wrote before stays written once.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := chaos.ReadInput(ctx, e.clientOpts(), e.spec.Input)
	if err != nil {
		t.Fatal(err)
	}
	out, err := chaos.ReadOutput(ctx, e.clientOpts(), e.spec)
	if err != nil {
		t.Fatal(err)
	}
	if rep := chaos.Check(in, out, e.spec); rep.Duplicated != 0 || rep.Batches < 5 {
		t.Errorf("the output after the refusal: %s", rep)
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
