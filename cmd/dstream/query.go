package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/dstream-io/dstream/internal/topips"
)

// The state of the running job, by key: Kafka Streams' interactive
// queries. GET /api/state/top-ips/{ip} answers what the job knows of one IP
// (its running total, its count in the current window, its country)
// without reading the output topic. Only the active instance holds the
// state; a standby answers 503.

// apiStateEntry is the body of a found key.
type apiStateEntry struct {
	Job string `json:"job"`
	topips.Entry
}

// apiError is the body of a lookup that found nothing.
type apiError struct {
	Error string `json:"error"`
	Role  role   `json:"role,omitempty"`
}

func stateHandler(s *status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := r.PathValue("ip")
		// netip, not weblog.ParseIP: that interns IPv6 texts, and a lookup
		// must not grow the job's memory.
		if _, err := netip.ParseAddr(ip); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{Error: fmt.Sprintf("%q is not an IP address", ip)})
			return
		}
		var lookup func(string) (topips.Entry, bool)
		if s.live.lookup != nil {
			lookup = s.live.lookup()
		}
		if lookup == nil {
			r := s.role()
			writeJSON(w, http.StatusServiceUnavailable, apiError{Role: r,
				Error: fmt.Sprintf("this instance is %s: only the active instance holds the job's state", r)})
			return
		}
		e, ok := lookup(ip)
		if !ok {
			writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("no state for %s: the job has not seen it", ip)})
			return
		}
		writeJSON(w, http.StatusOK, apiStateEntry{Job: s.cfg.JobID, Entry: e})
	})
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}
