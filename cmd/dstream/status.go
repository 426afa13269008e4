package main

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/microbatch"
)

// status keeps what the HTTP endpoints report: the recent batches, the
// latest results and whether this instance is active.
type status struct {
	cfg     Config
	keep    int
	started time.Time
	mu      struct {
		sync.Mutex
		batches     []microbatch.BatchStats
		results     []topips.Result
		resultsTime time.Time // batch time of results
		lastAt      time.Time
		lastBatch   uint64
		committed   uint64 // batches committed by this process
	}
}

func newStatus(cfg Config, keep int) *status {
	return &status{cfg: cfg, keep: keep, started: time.Now()}
}

func (s *status) observe(b microbatch.BatchStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.batches = append(s.mu.batches, b)
	if len(s.mu.batches) > s.keep {
		s.mu.batches = s.mu.batches[len(s.mu.batches)-s.keep:]
	}
	s.mu.lastAt, s.mu.lastBatch = time.Now(), b.ID
	s.mu.committed++
}

func (s *status) results(b microbatch.BatchInfo, rs []topips.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.results = append(s.mu.results[:0], rs...)
	s.mu.resultsTime = b.Time
}

// snapshot is a consistent copy of the status, for rendering.
type snapshot struct {
	Batches     []microbatch.BatchStats // oldest first
	Results     []topips.Result
	ResultsTime time.Time
	LastBatch   uint64
	Committed   uint64
	Ready       bool
	ReadyWhy    string
}

func (s *status) snapshot() snapshot {
	ready, why := s.ready()
	s.mu.Lock()
	defer s.mu.Unlock()
	return snapshot{
		Batches:     append([]microbatch.BatchStats(nil), s.mu.batches...),
		Results:     append([]topips.Result(nil), s.mu.results...),
		ResultsTime: s.mu.resultsTime,
		LastBatch:   s.mu.lastBatch,
		Committed:   s.mu.committed,
		Ready:       ready,
		ReadyWhy:    why,
	}
}

// ready: this instance holds the job and committed a batch recently.
func (s *status) ready() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.lastAt.IsZero() {
		return false, "no batch committed yet (starting, or standing by for the active instance)"
	}
	if age := time.Since(s.mu.lastAt); age > 3*s.cfg.BatchInterval+s.cfg.LeaseTTL {
		return false, "no batch committed for " + age.Round(time.Second).String()
	}
	return true, "ok"
}

func newHandler(m *metrics, s *status) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", pageHandler(s))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := s.ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(why + "\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, _ *http.Request) {
		snap := s.snapshot()
		body := struct {
			LastBatch uint64                  `json:"last_batch"`
			Batches   []microbatch.BatchStats `json:"batches"`
			Results   []topips.Result         `json:"results"`
		}{snap.LastBatch, snap.Batches, snap.Results}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(body)
	})
	return mux
}
