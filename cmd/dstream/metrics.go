package main

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// metrics are the Prometheus metrics of the processor, in base units, on a
// registry of its own: the batch statistics, the consumer lag, the output
// transactions that did not commit, and franz-go's client metrics
// (dstream_kafka_*, summed over the processor's Kafka clients).
type metrics struct {
	reg             *prometheus.Registry
	batches         prometheus.Counter
	recordsIn       prometheus.Counter
	recordsOut      prometheus.Counter
	malformed       prometheus.Counter
	stateChanges    prometheus.Counter
	aborts          prometheus.Counter
	processing      prometheus.Histogram
	schedulingDelay prometheus.Histogram
	totalDelay      prometheus.Histogram
	checkpoint      prometheus.Histogram
	lastBatch       prometheus.Gauge
	kafka           *kafkaHooks
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
		aborts:          prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_transaction_aborts_total", Help: "Output transactions that did not commit (aborted or failed); their batch is retried or rerun from its plan."}),
		processing:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_batch_processing_seconds", Help: "Time to read, compute and commit a batch.", Buckets: buckets}),
		schedulingDelay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_batch_scheduling_delay_seconds", Help: "How late a batch started after its batch time.", Buckets: buckets}),
		totalDelay:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_batch_total_delay_seconds", Help: "Scheduling delay plus processing time.", Buckets: buckets}),
		checkpoint:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_checkpoint_seconds", Help: "Time spent preparing and committing checkpoints per batch.", Buckets: buckets}),
		lastBatch:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "dstream_last_committed_batch", Help: "Id of the last committed batch."}),
	}
	m.reg.MustRegister(m.batches, m.recordsIn, m.recordsOut, m.malformed, m.stateChanges, m.aborts, m.processing,
		m.schedulingDelay, m.totalDelay, m.checkpoint, m.lastBatch,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.kafka = &kafkaHooks{Metrics: kprom.NewMetrics("dstream_kafka",
		kprom.Registerer(m.reg), kprom.Gatherer(m.reg), kprom.Histograms(kprom.RequestDurationE2E),
		kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Records, kprom.UncompressedBytes))}
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

// kafkaHooks feeds every Kafka client of the processor into one set of kprom
// metrics. kprom registers its collectors when a client is created and drops
// them when it closes; the sink opens short-lived clients beside its
// producer, so here they register with the first client and stay. (The
// buffered-records gauges report that first client, the input's.)
type kafkaHooks struct {
	*kprom.Metrics
	once sync.Once
}

// OnNewClient implements kgo.HookNewClient.
func (h *kafkaHooks) OnNewClient(cl *kgo.Client) { h.once.Do(func() { h.Metrics.OnNewClient(cl) }) }

// OnClientClosed implements kgo.HookClientClosed: the metrics stay.
func (h *kafkaHooks) OnClientClosed(*kgo.Client) {}

// lagTimeout bounds the end-offset lookup of one scrape.
const lagTimeout = 2 * time.Second

// watchLag exports dstream_consumer_lag_records per input partition: the
// partition's last stable offset at scrape time (at the last cut, if the
// broker does not answer in time) minus the end of the last planned batch.
func (m *metrics) watchLag(src *ingest.Source, cl *kgo.Client) {
	m.reg.MustRegister(&lagCollector{
		src: src, adm: kadm.NewClient(cl),
		desc: prometheus.NewDesc("dstream_consumer_lag_records",
			"Records in an input partition past the end of the last planned batch.", []string{"topic", "partition"}, nil),
	})
}

type lagCollector struct {
	src  *ingest.Source
	adm  *kadm.Client
	desc *prometheus.Desc
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	cut := c.src.LastCut()
	if len(cut) == 0 {
		return
	}
	topic := c.src.Topic()
	ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
	defer cancel()
	ends, err := c.adm.ListCommittedOffsets(ctx, topic)
	for _, p := range cut {
		end := p.End
		if err == nil {
			if o, ok := ends.Lookup(topic, p.Partition); ok && o.Err == nil {
				end = max(end, o.Offset)
			}
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(max(0, end-p.Until)),
			topic, strconv.Itoa(int(p.Partition)))
	}
}

// countAborts counts the batches whose output transaction did not commit.
func (m *metrics) countAborts(s microbatch.TransactionalSink) microbatch.TransactionalSink {
	return abortCounter{TransactionalSink: s, aborts: m.aborts}
}

type abortCounter struct {
	microbatch.TransactionalSink
	aborts prometheus.Counter
}

// WriteBatch implements microbatch.Sink: a sink writes a batch in one
// transaction, so an error means that transaction did not commit.
func (a abortCounter) WriteBatch(ctx context.Context, b microbatch.BatchInfo, msgs []microbatch.Message) error {
	err := a.TransactionalSink.WriteBatch(ctx, b, msgs)
	if err != nil {
		a.aborts.Inc()
	}
	return err
}
