package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dstream-io/dstream/microbatch"
)

// metrics are the Prometheus metrics of the processor, in base units.
type metrics struct {
	reg             *prometheus.Registry
	batches         prometheus.Counter
	recordsIn       prometheus.Counter
	recordsOut      prometheus.Counter
	malformed       prometheus.Counter
	stateChanges    prometheus.Counter
	processing      prometheus.Histogram
	schedulingDelay prometheus.Histogram
	totalDelay      prometheus.Histogram
	checkpoint      prometheus.Histogram
	lastBatch       prometheus.Gauge
}

func newMetrics() *metrics {
	buckets := prometheus.ExponentialBuckets(0.001, 2, 16)
	m := &metrics{
		reg:             prometheus.NewRegistry(),
		batches:         prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_batches_total", Help: "Batches committed."}),
		recordsIn:       prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_records_in_total", Help: "Input records processed."}),
		recordsOut:      prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_records_out_total", Help: "Output records committed (results and dead letters)."}),
		malformed:       prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_malformed_records_total", Help: "Input lines that did not parse and went to dead letters."}),
		stateChanges:    prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_state_changes_total", Help: "Keyed state changes checkpointed."}),
		processing:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_batch_processing_seconds", Help: "Time to read, compute and commit a batch.", Buckets: buckets}),
		schedulingDelay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_batch_scheduling_delay_seconds", Help: "How late a batch started after its batch time.", Buckets: buckets}),
		totalDelay:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_batch_total_delay_seconds", Help: "Scheduling delay plus processing time.", Buckets: buckets}),
		checkpoint:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_checkpoint_seconds", Help: "Time spent preparing and committing checkpoints per batch.", Buckets: buckets}),
		lastBatch:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "dstream_last_committed_batch", Help: "Id of the last committed batch."}),
	}
	m.reg.MustRegister(m.batches, m.recordsIn, m.recordsOut, m.malformed, m.stateChanges, m.processing,
		m.schedulingDelay, m.totalDelay, m.checkpoint, m.lastBatch,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(b microbatch.BatchStats) {
	m.batches.Inc()
	m.recordsIn.Add(float64(b.Records))
	m.recordsOut.Add(float64(b.Messages))
	m.stateChanges.Add(float64(b.StateChanges))
	m.processing.Observe(b.ProcessingTime.Seconds())
	m.schedulingDelay.Observe(b.SchedulingDelay.Seconds())
	m.totalDelay.Observe((b.SchedulingDelay + b.ProcessingTime).Seconds())
	m.checkpoint.Observe(b.CheckpointTime.Seconds())
	m.lastBatch.Set(float64(b.ID))
}
