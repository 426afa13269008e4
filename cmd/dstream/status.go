package main

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

// role is what this instance does for the job.
type role string

const (
	roleStarting role = "starting" // connecting, before it first asks for the job
	roleStandby  role = "standby"  // waits to take the job over from the active instance
	roleActive   role = "active"   // runs the job's batches
	roleRefused  role = "refused"  // refuses to run the job; the reason is in the status
)

// batch is one committed batch as the status shows it.
type batch struct {
	microbatch.BatchStats
	Ranges      []microbatch.Range // the plan's, if known
	Lag         int64              // records past the batch's end when its plan was recorded, as the last cut saw the ends (-1: not known)
	CommittedAt time.Time
}

// live reads what the status shows but does not keep; any may be nil.
type live struct {
	lag  func(ctx context.Context, latest []microbatch.Range) []partitionLag
	rate func() float64
	// state returns the size of the running job's state, nil if this
	// instance holds no state (a standby).
	state func() []microbatch.StateStats
	// lookup returns the running job's lookup, nil if this instance
	// holds no state.
	lookup func() func(ip string) (topips.Entry, bool)
	// tasks lists the job's tasks and where they run.
	tasks func(ctx context.Context) []apiTask
}

// status keeps what the HTTP endpoints report: this instance's role and
// health, the job's progress, its recent batches (rebuilt from Redis after
// a takeover) and its latest results.
type status struct {
	cfg     Config
	demo    bool
	build   build
	keep    int
	started time.Time
	live    live
	mu      struct {
		sync.Mutex
		role        role
		refused     string // why, while refused
		checked     bool   // the connections were checked once
		redisErr    error
		kafkaErr    error
		batches     []batch                 // oldest first
		plans       map[uint64]plannedBatch // recorded plans whose batch did not commit yet
		results     []topips.Result
		resultsTime time.Time // batch time of results
		committed   batch     // the job's last committed batch (ID 0: none known)
		ran         uint64    // batches committed by this process
		fenced      int
	}
}

// plannedBatch is a recorded plan and the lag when it was cut.
type plannedBatch struct {
	plan microbatch.Plan
	lag  int64
}

// newStatus returns the status of a processor with cfg; demo tells that
// cfg's brokers are the demo's own. It keeps the last keep batches.
func newStatus(cfg Config, demo bool, keep int) *status {
	s := &status{cfg: cfg, demo: demo, build: buildInfo(), keep: keep, started: time.Now()}
	s.mu.role = roleStarting
	s.mu.plans = map[uint64]plannedBatch{}
	return s
}

func (s *status) setRole(r role) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.role != roleRefused {
		s.mu.role = r
	}
}

func (s *status) role() role {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.role
}

// refuse records that the instance refuses to run the job, and why.
func (s *status) refuse(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.role, s.mu.refused = roleRefused, why
}

func (s *status) fenced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.fenced++
}

// checked records the outcome of a connection check.
func (s *status) checked(redisErr, kafkaErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.checked, s.mu.redisErr, s.mu.kafkaErr = true, redisErr, kafkaErr
}

// planned keeps a recorded plan until its batch commits.
func (s *status) planned(p microbatch.Plan, lag int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.mu.plans {
		if id <= s.mu.committed.ID {
			delete(s.mu.plans, id)
		}
	}
	s.mu.plans[p.ID] = plannedBatch{plan: p, lag: lag}
}

// observe records a batch this instance committed and returns it.
func (s *status) observe(b microbatch.BatchStats, at time.Time) batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	pb, ok := s.mu.plans[b.ID]
	delete(s.mu.plans, b.ID)
	rec := batch{BatchStats: b, Lag: -1, CommittedAt: at}
	if ok {
		rec.Ranges, rec.Lag = pb.plan.Ranges, pb.lag
	}
	s.mu.batches = append(s.mu.batches, rec)
	if len(s.mu.batches) > s.keep {
		s.mu.batches = slices.Delete(s.mu.batches, 0, len(s.mu.batches)-s.keep)
	}
	s.mu.committed = rec
	s.mu.ran++
	return rec
}

// loadHistory replaces the recent batches with those another instance
// recorded in Redis: recs from History, plans their recorded plans (for the
// offsets), committed the job's committed batch. Batches that this
// instance committed since stay.
func (s *status) loadHistory(recs []state.BatchRecord, plans []microbatch.Plan, committed uint64) {
	byID := make(map[uint64]microbatch.Plan, len(plans))
	for _, p := range plans {
		byID[p.ID] = p
	}
	bs := make([]batch, 0, len(recs))
	for _, r := range recs {
		b := batch{BatchStats: microbatch.BatchStats{
			ID: r.ID, Time: r.Time, Records: r.Records, SchedulingDelay: r.SchedulingDelay,
			ProcessingTime: r.ProcessingTime, CheckpointTime: r.CheckpointTime,
			Messages: r.OutputRecords, StateChanges: r.StateChanges,
		}, Lag: r.Lag, CommittedAt: r.CommittedAt}
		if p, ok := byID[r.ID]; ok {
			b.Ranges, b.Offsets = p.Ranges, p.Records()
		}
		bs = append(bs, b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var last uint64
	if len(bs) > 0 {
		last = bs[len(bs)-1].ID
	}
	for _, b := range s.mu.batches {
		if b.ID > last {
			bs = append(bs, b)
		}
	}
	if len(bs) > s.keep {
		bs = bs[len(bs)-s.keep:]
	}
	s.mu.batches = bs
	switch {
	case len(bs) > 0 && bs[len(bs)-1].ID == committed:
		s.mu.committed = bs[len(bs)-1]
	case committed != s.mu.committed.ID:
		// The history lags the checkpoint (an instance died between its
		// commit and its record): the id is all that is known.
		s.mu.committed = batch{BatchStats: microbatch.BatchStats{ID: committed}, Lag: -1}
		if p, ok := byID[committed]; ok {
			s.mu.committed.Time, s.mu.committed.Ranges = p.Time, p.Ranges
		}
	}
}

// committed returns the job's last committed batch as known here.
func (s *status) committed() batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.committed
}

func (s *status) results(b microbatch.BatchInfo, rs []topips.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.results = append(s.mu.results[:0], rs...)
	s.mu.resultsTime = b.Time
}

// snapshot is a consistent copy of the status, for rendering.
type snapshot struct {
	Role        role
	Refused     string
	Ready       bool
	ReadyWhy    string
	Batches     []batch // oldest first
	Results     []topips.Result
	ResultsTime time.Time
	Committed   batch
	Ran         uint64
	Fenced      int
}

func (s *status) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	ready, why := s.readyLocked()
	return snapshot{
		Role:        s.mu.role,
		Refused:     s.mu.refused,
		Ready:       ready,
		ReadyWhy:    why,
		Batches:     slices.Clone(s.mu.batches),
		Results:     slices.Clone(s.mu.results),
		ResultsTime: s.mu.resultsTime,
		Committed:   s.mu.committed,
		Ran:         s.mu.ran,
		Fenced:      s.mu.fenced,
	}
}

// ready: this process is healthy, active or standby alike: Redis and
// Kafka answered the last check and it does not refuse the job. Which
// instance runs the job is not readiness (a standby that is never Ready
// keeps Kubernetes' alerts firing): it is in dstream_active, the status
// page and /api/status.
func (s *status) ready() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readyLocked()
}

func (s *status) readyLocked() (bool, string) {
	switch {
	case s.mu.role == roleRefused:
		return false, "refusing to run the job: " + s.mu.refused
	case !s.mu.checked:
		return false, "starting: Redis and Kafka not checked yet"
	case s.mu.redisErr != nil:
		return false, "Redis does not answer: " + s.mu.redisErr.Error()
	case s.mu.kafkaErr != nil:
		return false, "Kafka does not answer: " + s.mu.kafkaErr.Error()
	}
	switch s.mu.role {
	case roleActive:
		return true, "ok: active, running the job's batches"
	case roleStandby:
		return true, "ok: standby, ready to take the job over"
	}
	return true, "ok: starting"
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
	mux.Handle("GET /api/status", apiHandler(s))
	mux.Handle("GET /api/state/top-ips/{ip}", stateHandler(s))
	return mux
}
