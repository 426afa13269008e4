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
// rate. The estimate never drops below MinRate.
type RateEstimator struct {
	interval     time.Duration
	proportional float64
	integral     float64
	derivative   float64
	minRate      float64

	mu struct {
		sync.Mutex
		init       bool
		latestTime time.Time
		latestRate float64
		latestErr  float64
	}
}

// NewRateEstimator returns an estimator with Spark's default gains
// (proportional 1, integral 0.2, derivative 0) and minRate records/s.
func NewRateEstimator(interval time.Duration, minRate float64) *RateEstimator {
	return &RateEstimator{interval: interval, proportional: 1, integral: 0.2, minRate: math.Max(1, minRate)}
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
	if !e.mu.init {
		e.mu.init, e.mu.latestTime, e.mu.latestRate = true, now, processingRate
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
	e.mu.latestTime, e.mu.latestRate, e.mu.latestErr = now, rate, err
}

// Limit returns the current rate bound in records per second, if any.
func (e *RateEstimator) Limit() (float64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.latestRate, e.mu.init
}
