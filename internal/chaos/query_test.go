package chaos_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/chaos"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/internal/redistest"
)

// TestStateQueryAnswersTheInput feeds a job a known input, lets it read all
// of it, and asks GET /api/state/top-ips/{ip} for every IP of the input:
// each running total must be the IP's count in the input, its country the
// countries file's, and its window count 0 once the window has moved past
// the input.
func TestStateQueryAnswersTheInput(t *testing.T) {
	e := newEnv(t, kafkatest.Shared(t), redistest.Shared(t), envOptions{leaseTTL: 2 * time.Second, ratePerSec: 5000, seed: 21})
	_, fed, stopFeed := e.startFeed(30_000, 0)
	<-fed
	if err := stopFeed(); err != nil {
		t.Fatal(err)
	}
	p := e.start("query")
	e.waitRole(p, "active", time.Minute)
	e.waitDrained(5*time.Minute, p)
	// Batches after the input: the window (1.5 s) moves past it.
	c, _, _ := e.meta(context.Background())
	e.waitCommitted(c+uint64(e.spec.Window/e.spec.Interval)+1, time.Minute, p)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	in, err := chaos.ReadInput(ctx, e.clientOpts(), e.spec.Input)
	if err != nil {
		t.Fatal(err)
	}
	totals := in.Totals()
	if len(totals) < 100 {
		t.Fatalf("the input has %d IPs", len(totals))
	}
	wrong := 0
	for ip, want := range totals {
		code, body, err := p.Get(ctx, "/api/state/top-ips/"+ip)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			IP          string `json:"ip"`
			Total       int64  `json:"total"`
			WindowCount int64  `json:"window_count"`
			Country     string `json:"country"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &got) != nil {
			t.Errorf("%s: %d %s", ip, code, body)
			wrong++
		} else if country := e.spec.Countries[ip]; got.IP != ip || got.Total != want || got.WindowCount != 0 || got.Country != country && !(country == "" && got.Country == "unknown") {
			t.Errorf("%s: %+v; the input has %d lines of it, country %q", ip, got, want, country)
			wrong++
		}
		if wrong > 20 {
			t.Fatal("too many wrong answers")
		}
	}
	if code, _, err := p.Get(ctx, "/api/state/top-ips/240.0.0.1"); err != nil || code != http.StatusNotFound {
		t.Errorf("an IP the input lacks: %d %v, want 404", code, err)
	}
	t.Logf("%d IPs looked up, %d wrong", len(totals), wrong)
	e.stop(p)
}
