package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dstream-io/dstream/internal/topips"
)

// TestStateQuery looks IPs up in the demo's running job. internal/chaos's
// TestStateQueryAnswersTheInput checks the answers against the input on a
// real broker; this checks the endpoint's answers and codes.
func TestStateQuery(t *testing.T) {
	p := startProcessor(t, configFrom(t, demoEnv(200*time.Millisecond)))
	s := p.waitBatches(t, 3, 2*time.Minute)
	top := s.Results.Top[0]
	code, body := p.get(t, "/api/state/top-ips/"+top.IP)
	if code != http.StatusOK {
		t.Fatalf("GET /api/state/top-ips/%s: %d %s", top.IP, code, body)
	}
	var e apiStateEntry
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	// The state moved on since the ranking, never back.
	if e.Job != "top-ips" || e.IP != top.IP || e.Total < top.Total || e.Country != topips.Unknown || e.Batch < s.Job.CommittedBatch {
		t.Errorf("lookup of %s = %+v; the ranking of batch %d said %+v", top.IP, e, s.Job.CommittedBatch, top)
	}
	for _, key := range []string{"window_count", "total", "country", "batch", "ip", "job"} {
		if !strings.Contains(body, `"`+key+`":`) {
			t.Errorf("the answer lacks %s: %s", key, body)
		}
	}
	for _, test := range []struct {
		ip   string
		code int
		want string
	}{
		{"240.0.0.1", http.StatusNotFound, "no state for 240.0.0.1"}, // the demo's IPs start below 224
		{"not-an-ip", http.StatusBadRequest, `\"not-an-ip\" is not an IP address`},
	} {
		code, body := p.get(t, "/api/state/top-ips/"+test.ip)
		if code != test.code || !strings.Contains(body, test.want) {
			t.Errorf("GET /api/state/top-ips/%s: %d %s, want %d and %q", test.ip, code, body, test.code, test.want)
		}
	}
}

// TestStateQueryWithoutState: an instance that holds no state (a standby,
// one starting or refusing) says so with 503 and its role.
func TestStateQueryWithoutState(t *testing.T) {
	s := newStatus(Config{JobID: "top-ips"}, false, 60)
	s.setRole(roleStandby)
	srv := httptest.NewServer(newHandler(newMetrics(), s))
	defer srv.Close()
	code, body := httpGet(t, srv.URL+"/api/state/top-ips/10.0.0.1")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"role":"standby"`) || !strings.Contains(body, "only the active instance") {
		t.Errorf("a standby's lookup: %d %s", code, body)
	}
}
