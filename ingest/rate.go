package ingest

import (
	"math"
	"sync"
	"time"

	"github.com/dstream-io/dstream/microbatch"
)

// RateEstimator is Spark's PID rate estimator for backpressure: from every
// batch's size, processing time and scheduling delay it estimates how many
// records per second the job can process, and Cut sizes batches to that
// rate. With err = rate − processing rate and hist = scheduling delay ×
// processing rate / interval, each batch after the first sets
//
//	rate = max(minRate, rate − 1·err − 0.2·hist − 0·d(err)/dt)
//
// The first batch only primes the estimator with its processing rate, as in
// Spark: there is no limit until the second. Batches without records or
// processing time, or not later than the last one, are ignored. The
// estimate never drops below the min rate.
type RateEstimator struct {
	interval     time.Duration
	proportional float64
	integral     float64
	derivative   float64
	minRate      float64

	mu struct {
		sync.Mutex
		primed     bool // a batch was observed
		estimated  bool // latestRate is an estimate, not the first batch's rate
		latestTime time.Time
		latestRate float64
		latestErr  float64
	}
}

// NewRateEstimator returns an estimator with Spark's default gains
// (proportional 1, integral 0.2, derivative 0) and minRate records/s (at
// least 1).
func NewRateEstimator(interval time.Duration, minRate float64) *RateEstimator {
	if !(minRate >= 1) { // also NaN
		minRate = 1
	}
	return &RateEstimator{interval: interval, proportional: 1, integral: 0.2, minRate: minRate}
}

// Observe feeds one completed batch.
func (e *RateEstimator) Observe(b microbatch.BatchStats) {
	if b.Records == 0 || b.ProcessingTime <= 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := b.Time
	processingRate := float64(b.Records) / b.ProcessingTime.Seconds()
	if !e.mu.primed {
		e.mu.primed, e.mu.latestTime, e.mu.latestRate = true, now, processingRate
		return
	}
	dt := now.Sub(e.mu.latestTime).Seconds()
	if dt <= 0 {
		return
	}
	err := e.mu.latestRate - processingRate
	// The backlog the scheduling delay represents, spread over the interval.
	historicalErr := b.SchedulingDelay.Seconds() * processingRate / e.interval.Seconds()
	dErr := (err - e.mu.latestErr) / dt
	rate := math.Max(e.mu.latestRate-e.proportional*err-e.integral*historicalErr-e.derivative*dErr, e.minRate)
	e.mu.estimated = true
	e.mu.latestTime, e.mu.latestRate, e.mu.latestErr = now, rate, err
}

// Limit returns the current rate bound in records per second, if there is
// one yet.
func (e *RateEstimator) Limit() (float64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.mu.estimated {
		return 0, false
	}
	return e.mu.latestRate, true
}
