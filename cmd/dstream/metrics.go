package main

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// metrics are the Prometheus metrics of the processor, in base units, on a
// registry of its own: the batch statistics, the job's progress as this
// instance knows it (a standby reads it from Redis), its role, the consumer
// lag, the output transactions that did not commit, and franz-go's client
// metrics (dstream_kafka_*, summed over the processor's Kafka clients).
// docs/metrics.md lists them all.
type metrics struct {
	reg             *prometheus.Registry
	commits         prometheus.Counter
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
	lastBatchTime   prometheus.Gauge
	lastCommitAt    prometheus.Gauge
	active          prometheus.Gauge
	interval        prometheus.Gauge
	fenced          prometheus.Counter
	refused         prometheus.Gauge
	kafka           *kafkaHooks
	lag             *lagCollector
	state           *stateCollector
	rate            atomic.Pointer[ingest.RateEstimator] // the running job's, if backpressure is on
	skew            atomic.Pointer[microbatch.Job]       // the running job, for its clock skew
	tasks           prometheus.Gauge                     // a sharded job's tasks run here
	taskLast        *prometheus.GaugeVec
}

func newMetrics() *metrics {
	buckets := prometheus.ExponentialBuckets(0.001, 2, 16)
	m := &metrics{
		reg:             prometheus.NewRegistry(),
		batches:         prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_batches_total", Help: "Batches committed."}),
		commits:         prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_commits_total", Help: "Checkpoint commits: fewer than batches while batches that waited for a commit commit together."}),
		recordsIn:       prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_records_in_total", Help: "Input records processed."}),
		recordsOut:      prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_records_out_total", Help: "Output records committed (results and dead letters)."}),
		malformed:       prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_malformed_records_total", Help: "Input lines that did not parse and went to dead letters."}),
		stateChanges:    prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_state_changes_total", Help: "Keyed state changes checkpointed."}),
		aborts:          prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_transaction_aborts_total", Help: "Output transactions that did not commit (aborted or failed); their batch is retried or rerun from its plan."}),
		processing:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_batch_processing_seconds", Help: "Time to read, compute and commit a batch.", Buckets: buckets}),
		schedulingDelay: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_batch_scheduling_delay_seconds", Help: "How late a batch started after its batch time.", Buckets: buckets}),
		totalDelay:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_batch_total_delay_seconds", Help: "Scheduling delay plus processing time.", Buckets: buckets}),
		checkpoint:      prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dstream_checkpoint_seconds", Help: "Time spent preparing and committing checkpoints per batch.", Buckets: buckets}),
		lastBatch:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "dstream_last_committed_batch", Help: "Id of the job's last committed batch (0: none yet), on a standby too."}),
		lastBatchTime:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "dstream_last_committed_batch_time_seconds", Help: "Batch time of the job's last committed batch, in Unix seconds (0: none yet)."}),
		lastCommitAt:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "dstream_last_commit_timestamp_seconds", Help: "Wall-clock time of the job's last commit, in Unix seconds (0: none yet)."}),
		active:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "dstream_active", Help: "1 on the instance that runs the job's batches, 0 on a standby."}),
		interval:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "dstream_batch_interval_seconds", Help: "The job's batch interval."}),
		fenced:          prometheus.NewCounter(prometheus.CounterOpts{Name: "dstream_fenced_total", Help: "Times this instance lost the job to another instance and went back to standing by."}),
		refused:         prometheus.NewGauge(prometheus.GaugeOpts{Name: "dstream_refused", Help: "1 while this instance refuses to run the job (state lost, a refused change, a topic gone): see /api/status."}),
		tasks:           prometheus.NewGauge(prometheus.GaugeOpts{Name: "dstream_tasks", Help: "Tasks of a sharded job this instance runs (0 for an unsharded job)."}),
		taskLast: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "dstream_task_last_committed_batch",
			Help: "Id of the last batch a task of a sharded job committed on this instance."}, []string{"task"}),
	}
	b := buildInfo()
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "dstream_build_info", Help: "Always 1; the labels say which dstream runs."},
		[]string{"version", "revision", "go_version"})
	buildInfo.WithLabelValues(b.Version, b.Revision, b.GoVersion).Set(1)
	backpressure := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dstream_backpressure_rate_records_per_second",
		Help: "The rate backpressure currently bounds batches to, in records/s (0: no bound)."}, m.backpressureRate)
	skew := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dstream_clock_skew_seconds",
		Help: "How far the job's recorded timeline ran ahead of this host's clock when it took the job (0 on a standby)."}, m.clockSkew)
	m.state = &stateCollector{
		keys: prometheus.NewDesc("dstream_state_keys", "Keys held in a stateful operator's state (on the active instance).", []string{"operator"}, nil),
		bytes: prometheus.NewDesc("dstream_state_bytes",
			"Estimated memory of a stateful operator's state: its entries, its index and its keys' bytes (on the active instance).", []string{"operator"}, nil),
	}
	m.lag = &lagCollector{desc: prometheus.NewDesc("dstream_consumer_lag_records",
		"Records in an input partition past the end of the last planned batch.", []string{"topic", "partition"}, nil)}
	m.reg.MustRegister(m.batches, m.commits, m.recordsIn, m.recordsOut, m.malformed, m.stateChanges, m.aborts, m.processing,
		m.schedulingDelay, m.totalDelay, m.checkpoint, m.lastBatch, m.lastBatchTime, m.lastCommitAt, m.active,
		m.interval, m.fenced, m.refused, m.tasks, m.taskLast, buildInfo, backpressure, skew, m.lag, m.state,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m.kafka = &kafkaHooks{Metrics: kprom.NewMetrics("dstream_kafka",
		kprom.Registerer(kpromRegisterer{m.reg}), kprom.Gatherer(m.reg), kprom.Histograms(kprom.RequestDurationE2E),
		kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Records, kprom.UncompressedBytes))}
	return m
}

// kpromRegisterer registers kprom's collectors but for its two
// buffered-records gauges: their names end in _total, which Prometheus
// keeps for counters, and they report the first client only, the input's,
// which never produces and fetches with raw requests, past kgo's buffers:
// both would always read 0.
type kpromRegisterer struct{ prometheus.Registerer }

func (r kpromRegisterer) Register(c prometheus.Collector) error {
	if bufferedGauge(c) {
		return nil
	}
	return r.Registerer.Register(c)
}

func (r kpromRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if !bufferedGauge(c) {
			r.Registerer.MustRegister(c)
		}
	}
}

func bufferedGauge(c prometheus.Collector) bool {
	ch := make(chan *prometheus.Desc, 1)
	go func() { c.Describe(ch); close(ch) }()
	found := false
	for d := range ch {
		s := d.String()
		found = found || strings.Contains(s, `buffered_produce_records_total"`) || strings.Contains(s, `buffered_fetch_records_total"`)
	}
	return found
}

// committed sets the job's progress: the last committed batch, its batch
// time and when it was committed.
func (m *metrics) committed(id uint64, batchTime, at time.Time) {
	m.lastBatch.Set(float64(id))
	if id > 0 && !batchTime.IsZero() {
		m.lastBatchTime.Set(unixSeconds(batchTime))
	}
	if id > 0 && !at.IsZero() {
		m.lastCommitAt.Set(unixSeconds(at))
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }

func (m *metrics) backpressureRate() float64 {
	if e := m.rate.Load(); e != nil {
		if r, ok := e.Limit(); ok {
			return r
		}
	}
	return 0
}

// taskCommitted records a batch a task of a sharded job committed here.
func (m *metrics) taskCommitted(task string, b microbatch.BatchStats) {
	m.taskLast.WithLabelValues(task).Set(float64(b.ID))
	m.committed(b.ID, b.Time, time.Now())
}

// clockSkew reads the running job's clock skew.
func (m *metrics) clockSkew() float64 {
	if j := m.skew.Load(); j != nil {
		return j.ClockSkew().Seconds()
	}
	return 0
}

// setRole sets dstream_active.
func (m *metrics) setRole(r role) {
	if r == roleActive {
		m.active.Set(1)
	} else {
		m.active.Set(0)
	}
}

func (m *metrics) observe(b microbatch.BatchStats) {
	m.batches.Inc()
	if b.LastInGroup {
		m.commits.Inc()
	}
	m.recordsIn.Add(float64(b.Records))
	m.recordsOut.Add(float64(b.Messages))
	m.stateChanges.Add(float64(b.StateChanges))
	m.processing.Observe(b.ProcessingTime.Seconds())
	m.schedulingDelay.Observe(b.SchedulingDelay.Seconds())
	m.totalDelay.Observe((b.SchedulingDelay + b.ProcessingTime).Seconds())
	m.checkpoint.Observe(b.CheckpointTime.Seconds())
	m.committed(b.ID, b.Time, time.Now())
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

// watchState exports dstream_state_keys and dstream_state_bytes per
// stateful operator from stats, which returns nil while no job runs here.
func (m *metrics) watchState(stats func() []microbatch.StateStats) { m.state.stats.Store(&stats) }

type stateCollector struct {
	keys, bytes *prometheus.Desc
	stats       atomic.Pointer[func() []microbatch.StateStats]
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.keys; ch <- c.bytes }

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.stats.Load()
	if f == nil {
		return
	}
	for _, st := range (*f)() {
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(st.Keys), st.Operator)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes), st.Operator)
	}
}

// lagTimeout bounds the end-offset lookup of one scrape.
const lagTimeout = 2 * time.Second

// watchLag exports dstream_consumer_lag_records per input partition of
// src, read with cl: the partition's last stable offset at scrape time (at
// the last cut, if the broker does not answer in time) minus the end of the
// last planned batch. A nil src (a standby's) exports none.
func (m *metrics) watchLag(src *ingest.Source, cl *kgo.Client) {
	if src == nil {
		m.watchLagOf(nil, cl)
		return
	}
	m.watchLagOf(func() []*ingest.Source { return []*ingest.Source{src} }, cl)
}

// watchLagOf is watchLag of the sources sources returns: a sharded job's
// first-stage tasks on this instance, each with its share of the input.
func (m *metrics) watchLagOf(sources func() []*ingest.Source, cl *kgo.Client) {
	m.lag.mu.Lock()
	defer m.lag.mu.Unlock()
	m.lag.mu.sources = sources
	if m.lag.mu.adm == nil && cl != nil {
		m.lag.mu.adm = kadm.NewClient(cl)
	}
}

type lagCollector struct {
	desc *prometheus.Desc
	mu   struct {
		sync.Mutex
		sources func() []*ingest.Source
		adm     *kadm.Client
	}
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	sources, adm := c.mu.sources, c.mu.adm
	c.mu.Unlock()
	if sources == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
	defer cancel()
	for _, src := range sources() {
		for _, l := range lagOf(ctx, adm, src.Topic(), cutPositions(src.LastCut())) {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Lag), l.Topic, strconv.Itoa(int(l.Partition)))
		}
	}
}

// position is where the job is in one input partition: the end of the last
// planned batch, and the partition's end when that was known.
type position struct {
	Partition  int32
	Until, End int64
}

func cutPositions(cut []ingest.CutPosition) []position {
	out := make([]position, len(cut))
	for i, p := range cut {
		out[i] = position{Partition: p.Partition, Until: p.Until, End: p.End}
	}
	return out
}

// partitionLag is the lag of one input partition.
type partitionLag struct {
	Topic     string
	Partition int32
	Position  int64 // the end of the last planned batch
	End       int64 // the partition's last stable offset
	Lag       int64
}

// lagOf asks the broker for the last stable offsets of topic and
// returns the lag of every position; a partition the broker does not
// answer for keeps the end it had at the cut.
func lagOf(ctx context.Context, adm *kadm.Client, topic string, at []position) []partitionLag {
	if len(at) == 0 {
		return nil
	}
	var ends kadm.ListedOffsets
	var err error
	if adm != nil {
		ends, err = adm.ListCommittedOffsets(ctx, topic)
	}
	out := make([]partitionLag, len(at))
	for i, p := range at {
		end := p.End
		if adm != nil && err == nil {
			if o, ok := ends.Lookup(topic, p.Partition); ok && o.Err == nil {
				end = max(end, o.Offset)
			}
		}
		out[i] = partitionLag{Topic: topic, Partition: p.Partition, Position: p.Until, End: end, Lag: max(0, end-p.Until)}
	}
	return out
}

// countAborts counts the batches whose output transaction did not commit.
func (m *metrics) countAborts(s microbatch.TransactionalSink) microbatch.TransactionalSink {
	return abortCounter{TransactionalSink: s, aborts: m.aborts}
}

type abortCounter struct {
	microbatch.TransactionalSink
	aborts prometheus.Counter
}

// WriteBatch implements microbatch.Sink.
func (a abortCounter) WriteBatch(ctx context.Context, b microbatch.BatchInfo, msgs []microbatch.Message) error {
	return a.WriteBatches(ctx, []microbatch.BatchInfo{b}, [][]microbatch.Message{msgs})
}

// WriteBatches implements microbatch.TransactionalSink: a sink writes a
// group of batches in one transaction, so an error means that transaction
// did not commit.
func (a abortCounter) WriteBatches(ctx context.Context, batches []microbatch.BatchInfo, msgs [][]microbatch.Message) error {
	err := a.TransactionalSink.WriteBatches(ctx, batches, msgs)
	if err != nil {
		a.aborts.Inc()
	}
	return err
}
