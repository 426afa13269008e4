package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

var sampleRe = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)`)

// scrape parses Prometheus text exposition into "name{labels}" → value.
func scrape(t testing.TB, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleRe.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		out[m[1]+m[2]] = v
	}
	return out
}

// family sums the samples of a metric name over its labels.
func family(samples map[string]float64, name string) (sum float64, n int) {
	for k, v := range samples {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
			n++
		}
	}
	return sum, n
}

func TestMetricsFromDemo(t *testing.T) {
	p := startProcessor(t, configFrom(t, demoEnv(200*time.Millisecond)))
	p.waitBatches(t, 3, 2*time.Minute)
	code, text := p.get(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	samples := scrape(t, text)
	for _, test := range []struct {
		name     string
		positive bool // the demo must have moved it
	}{
		{"dstream_batches_total", true},
		{"dstream_commits_total", true},
		{"dstream_records_in_total", true},
		{"dstream_records_out_total", true},
		{"dstream_state_changes_total", true},
		{"dstream_malformed_records_total", false},
		{"dstream_transaction_aborts_total", false},
		{"dstream_batch_processing_seconds_count", true},
		{"dstream_batch_processing_seconds_bucket", true},
		{"dstream_batch_scheduling_delay_seconds_count", true},
		{"dstream_batch_total_delay_seconds_count", true},
		{"dstream_checkpoint_seconds_count", true},
		{"dstream_last_committed_batch", true},
		{"dstream_last_committed_batch_time_seconds", true},
		{"dstream_last_commit_timestamp_seconds", true},
		{"dstream_active", true},
		{"dstream_batch_interval_seconds", true},
		{"dstream_build_info", true},
		{"dstream_backpressure_rate_records_per_second", false},
		{"dstream_fenced_total", false},
		{"dstream_refused", false},
		{"dstream_consumer_lag_records", false},
		{"dstream_state_keys", true},
		{"dstream_state_bytes", true},
		{"dstream_kafka_connects_total", true},
		{"dstream_kafka_read_bytes_total", true},
		{"dstream_kafka_write_bytes_total", true},
		{"dstream_kafka_produce_records_total", true},
		{"dstream_kafka_request_duration_e2e_seconds_count", true},
		{"go_goroutines", true},
		{"process_resident_memory_bytes", true},
	} {
		sum, n := family(samples, test.name)
		if n == 0 {
			t.Errorf("/metrics has no %s", test.name)
		} else if test.positive && sum <= 0 {
			t.Errorf("%s = %v, want > 0", test.name, sum)
		}
	}
	// The demo keeps up: every batch commits alone.
	if batches, _ := family(samples, "dstream_batches_total"); batches > 0 {
		if commits, _ := family(samples, "dstream_commits_total"); commits != batches && commits != batches-1 {
			t.Errorf("%v commits for %v batches, want one a batch while the job keeps up", commits, batches)
		}
	}
	if _, n := family(samples, "dstream_consumer_lag_records"); n != 4 {
		t.Errorf("consumer lag has %d series, want one per input partition (4)", n)
	}
	for k := range samples {
		if strings.HasPrefix(k, "dstream_consumer_lag_records") && !strings.Contains(k, `topic="logs"`) {
			t.Errorf("lag series without the topic label: %s", k)
		}
	}
	for name, want := range map[string]float64{
		"dstream_active": 1, "dstream_refused": 0, "dstream_fenced_total": 0, "dstream_batch_interval_seconds": 0.2,
		"dstream_backpressure_rate_records_per_second": 0,
	} {
		if got := samples[name]; got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// The reference job keeps two keyed states: the window counts and the
	// running totals.
	if _, n := family(samples, "dstream_state_keys"); n != 2 {
		t.Errorf("dstream_state_keys has %d series, want one per stateful operator", n)
	}
	b := buildInfo()
	info := fmt.Sprintf(`dstream_build_info{go_version=%q,revision=%q,version=%q}`, b.GoVersion, b.Revision, b.Version)
	if samples[info] != 1 {
		t.Errorf("no %s 1 in /metrics", info)
	}
	// The last committed batch's time is a batch boundary; its commit came
	// after it, and before this scrape.
	batchTime, commitAt := samples["dstream_last_committed_batch_time_seconds"], samples["dstream_last_commit_timestamp_seconds"]
	if now := float64(time.Now().Unix()) + 1; commitAt < batchTime || commitAt > now || int64(math.Round(batchTime*1000))%200 != 0 {
		t.Errorf("last batch at %v, committed at %v: want a multiple of 0.2 s, committed after it and before now", batchTime, commitAt)
	}
	checkMetricsDocumented(t, text)
}

// checkMetricsDocumented checks /metrics against docs/metrics.md: every
// dstream_* family exposed is documented with its type, and every documented
// family but the Kafka client's (which appear with their first sample) is
// exposed.
func checkMetricsDocumented(t *testing.T, text string) {
	t.Helper()
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{} // name → type
	row := regexp.MustCompile("(?m)^\\| `(dstream_[a-z_]+)` \\| ([a-z]+) \\|")
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = m[2]
	}
	exposed := map[string]string{}
	typeLine := regexp.MustCompile(`(?m)^# TYPE (dstream_[a-z_]+) ([a-z]+)$`)
	for _, m := range typeLine.FindAllStringSubmatch(text, -1) {
		exposed[m[1]] = m[2]
	}
	for name, typ := range exposed {
		if documented[name] != typ {
			t.Errorf("%s (%s) is exposed; docs/metrics.md has it as %q", name, typ, documented[name])
		}
		if typ == "gauge" && strings.HasSuffix(name, "_total") {
			t.Errorf("%s is a gauge named like a counter", name)
		}
	}
	for name := range documented {
		if _, ok := exposed[name]; !ok && !strings.HasPrefix(name, "dstream_kafka_") {
			t.Errorf("docs/metrics.md documents %s, which /metrics lacks", name)
		}
	}
}

func TestConsumerLag(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("logs"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	produce := func(partition int32, n int) {
		t.Helper()
		recs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = &kgo.Record{Partition: partition, Value: []byte("x")}
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 100)
	produce(1, 50)

	src, err := ingest.New(cl, ingest.Config{Topic: "logs", BatchInterval: time.Second, MaxRatePerPartition: 10})
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics()
	m.watchLag(src, cl)
	lag := func() map[string]float64 {
		t.Helper()
		got := map[string]float64{}
		for k, v := range gather(t, m) {
			if strings.HasPrefix(k, "dstream_consumer_lag_records") {
				got[k] = v
			}
		}
		return got
	}
	if got := lag(); len(got) != 0 {
		t.Errorf("lag before the first cut: %v, want none", got)
	}
	ranges, err := src.Cut(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`dstream_consumer_lag_records{partition="0",topic="logs"}`: 90,
		`dstream_consumer_lag_records{partition="1",topic="logs"}`: 40,
	}
	if got := lag(); !equalSamples(got, want) {
		t.Errorf("lag after a capped cut: %v, want %v", got, want)
	}
	produce(0, 5) // arrives after the cut: still lag
	want[`dstream_consumer_lag_records{partition="0",topic="logs"}`] = 95
	if got := lag(); !equalSamples(got, want) {
		t.Errorf("lag after more records: %v, want %v", got, want)
	}
	if _, err := src.Cut(ctx, ranges); err != nil {
		t.Fatal(err)
	}
	want = map[string]float64{
		`dstream_consumer_lag_records{partition="0",topic="logs"}`: 85,
		`dstream_consumer_lag_records{partition="1",topic="logs"}`: 30,
	}
	if got := lag(); !equalSamples(got, want) {
		t.Errorf("lag after the next cut: %v, want %v", got, want)
	}
}

func equalSamples(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// fakeSink is a transactional sink whose writes fail while fail is set.
type fakeSink struct {
	fail   error
	writes int
}

func (f *fakeSink) WriteBatch(context.Context, microbatch.BatchInfo, []microbatch.Message) error {
	f.writes++
	return f.fail
}

func (f *fakeSink) WriteBatches(context.Context, []microbatch.BatchInfo, [][]microbatch.Message) error {
	f.writes++
	return f.fail
}

func (f *fakeSink) Committed(context.Context, uint64) ([]microbatch.BatchInfo, error) {
	return []microbatch.BatchInfo{{Plan: microbatch.Plan{ID: 7}}}, nil
}

func TestTransactionAborts(t *testing.T) {
	m := newMetrics()
	fake := &fakeSink{}
	var sink microbatch.Sink = m.countAborts(fake)
	if _, ok := sink.(microbatch.TransactionalSink); !ok {
		t.Fatal("the counting sink hides TransactionalSink")
	}
	if held, _ := sink.(microbatch.TransactionalSink).Committed(context.Background(), 0); len(held) != 1 || held[0].ID != 7 {
		t.Errorf("Committed = %v, want the wrapped sink's batch 7", held)
	}
	ctx := context.Background()
	_ = sink.WriteBatch(ctx, microbatch.BatchInfo{}, nil)
	fake.fail = errors.New("sinks: end transaction of batch 1: broker gone")
	err := sink.WriteBatch(ctx, microbatch.BatchInfo{}, nil)
	if err != fake.fail {
		t.Errorf("WriteBatch error %v, want the sink's", err)
	}
	_ = sink.(microbatch.TransactionalSink).WriteBatches(ctx, []microbatch.BatchInfo{{}, {}}, [][]microbatch.Message{nil, nil})
	if got := gather(t, m)["dstream_transaction_aborts_total"]; got != 2 || fake.writes != 3 {
		t.Errorf("aborts = %v after 2 failed of %d transactions (one of a group of two batches), want 2", got, fake.writes)
	}
}

// gather scrapes the processor's registry as /metrics serves it.
func gather(t testing.TB, m *metrics) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}).
		ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return scrape(t, rec.Body.String())
}
