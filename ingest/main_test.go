package ingest_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/microbatch"
)

func TestMain(m *testing.M) {
	code := kafkatest.Main(m, kafkatest.Options{Properties: map[string]string{
		// The log cleaner looks for dirty logs every 50 ms instead of every
		// 15 s, so that compaction tests wait for it briefly; a small
		// dedupe buffer suits the test broker's heap.
		"log.cleaner.backoff.ms":            "50",
		"log.cleaner.dedupe.buffer.size":    "4194304",
		"log.cleaner.io.buffer.size":        "65536",
		"log.cleaner.threads":               "1",
		"log.cleaner.min.compaction.lag.ms": "0",
	}})
	closeBenchBroker()
	os.Exit(code)
}

// env is a topic of its own on the shared broker, with the clients a test
// needs.
type env struct {
	t      *testing.T
	broker *kafkatest.Broker
	topic  string
	prod   *kgo.Client // non-transactional producer, manual partitioning
	adm    *kadm.Client
	id     string // the topic's id, once looked up
}

func newEnv(t *testing.T, partitions int32, configs map[string]*string) *env {
	t.Helper()
	b := kafkatest.Shared(t)
	e := &env{t: t, broker: b, topic: b.NewTopic(t, partitions, configs)}
	e.prod = e.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(e.topic))
	e.adm = kadm.NewClient(e.prod)
	return e
}

// client returns a client of the shared broker, closed when the test ends.
func (e *env) client(opts ...kgo.Opt) *kgo.Client {
	e.t.Helper()
	cl, err := e.broker.Client(opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cl.Close)
	return cl
}

// source returns a Source of the topic on a client of its own.
func (e *env) source(cfg ingest.Config, opts ...ingest.Option) *ingest.Source {
	e.t.Helper()
	cfg.Topic = e.topic
	src, err := ingest.New(e.client(kgo.FetchIsolationLevel(kgo.ReadCommitted())), cfg, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	return src
}

// produce writes values to partition p, one produce request per call, and
// returns their offsets.
func (e *env) produce(p int32, values ...string) []int64 {
	e.t.Helper()
	return produceWith(e.t, e.prod, e.topic, p, values...)
}

func produceWith(t testing.TB, cl *kgo.Client, topic string, p int32, values ...string) []int64 {
	t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Partition: p, Value: []byte(v)}
	}
	return produceRecords(t, cl, recs...)
}

func produceRecords(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	offs := make([]int64, len(recs))
	for i, r := range recs {
		offs[i] = r.Offset
	}
	return offs
}

// txn is a transactional producer of the test's topic.
func (e *env) txn(id string) *kgo.Client {
	e.t.Helper()
	return e.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(e.topic),
		kgo.TransactionalID(fmt.Sprintf("%s-%s", e.topic, id)), kgo.TransactionTimeout(time.Minute))
}

func begin(t testing.TB, cl *kgo.Client) {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
}

func end(t testing.TB, cl *kgo.Client, commit kgo.TransactionEndTry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, commit); err != nil {
		t.Fatal(err)
	}
}

// deleteBefore moves the log start of partition p to offset with
// DeleteRecords.
func (e *env) deleteBefore(p int32, offset int64) {
	e.t.Helper()
	os := kadm.Offsets{}
	os.AddOffset(e.topic, p, offset, -1)
	resp, err := e.adm.DeleteRecords(context.Background(), os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		e.t.Fatalf("delete records of %s[%d] before %d: %v", e.topic, p, offset, err)
	}
}

// addPartitions grows the topic to n partitions.
func (e *env) addPartitions(n int) {
	e.t.Helper()
	resp, err := e.adm.UpdatePartitions(context.Background(), n, e.topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		e.t.Fatalf("grow %s to %d partitions: %v", e.topic, n, err)
	}
	// The broker learns of the partitions from the controller a moment
	// later: wait until its metadata lists them, then produce with a client
	// that starts with that metadata.
	poll(e.t, fmt.Sprintf("%s has %d partitions", e.topic, n), func(ctx context.Context) (bool, error) {
		req := kmsg.NewPtrMetadataRequest() // not kadm's, which may answer from a cache
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(e.topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, e.prod)
		return err == nil && len(resp.Topics) == 1 && len(resp.Topics[0].Partitions) == n, err
	})
	e.prod = e.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(e.topic))
}

// waitEnd waits until partition p's high watermark reaches offset, as it
// does shortly after a transaction's marker is written.
func (e *env) waitEnd(p int32, offset int64) {
	e.t.Helper()
	poll(e.t, fmt.Sprintf("%s[%d] reaches offset %d", e.topic, p, offset), func(ctx context.Context) (bool, error) {
		ends, err := e.adm.ListEndOffsets(ctx, e.topic)
		if err == nil {
			err = ends.Error()
		}
		o, _ := ends.Lookup(e.topic, p)
		return err == nil && o.Offset >= offset, err
	})
}

// settle waits until no partition has a transaction in flight: every last
// stable offset is the high watermark.
func (e *env) settle() {
	e.t.Helper()
	poll(e.t, e.topic+" has no transaction in flight", func(ctx context.Context) (bool, error) {
		stable, err := e.adm.ListCommittedOffsets(ctx, e.topic)
		if err != nil {
			return false, err
		}
		ends, err := e.adm.ListEndOffsets(ctx, e.topic)
		if err != nil {
			return false, err
		}
		settled := true
		ends.Each(func(o kadm.ListedOffset) {
			s, ok := stable.Lookup(o.Topic, o.Partition)
			settled = settled && ok && o.Err == nil && s.Err == nil && s.Offset == o.Offset
		})
		return settled, nil
	})
}

// poll calls done every few milliseconds until it reports true, and fails
// the test if that takes longer than 30 s: waiting for the broker, never a
// timing assertion.
func poll(t testing.TB, what string, done func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := done(ctx)
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting until %s: %v (last error: %v)", what, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// cut is Cut with a deadline that turns a hang into a failure.
func cut(t testing.TB, src *ingest.Source, after []microbatch.Range) []microbatch.Range {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs, err := src.Cut(ctx, after)
	if err != nil {
		t.Fatalf("cut after %v: %v", after, err)
	}
	return rs
}

// read collects the records Read emits, with a deadline that turns a hang
// into a failure.
func read(src *ingest.Source, ranges []microbatch.Range) ([]microbatch.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []microbatch.Record
	err := src.Read(ctx, ranges, func(r microbatch.Record) { out = append(out, r) })
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("read %v hangs: %w", ranges, err)
	}
	return out, err
}

func mustRead(t testing.TB, src *ingest.Source, ranges []microbatch.Range) []microbatch.Record {
	t.Helper()
	recs, err := read(src, ranges)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// rec is a record as tests compare them.
type rec struct {
	Partition int32
	Offset    int64
	Value     string
}

func recs(in []microbatch.Record) []rec {
	out := make([]rec, len(in))
	for i, r := range in {
		out[i] = rec{r.Partition, r.Offset, string(r.Value)}
	}
	return out
}

// span is a range of the test's topic.
// span is the range [from, until) of partition p, as a cut of the topic
// names it: with its topic id.
func (e *env) span(p int32, from, until int64) microbatch.Range {
	return microbatch.Range{Topic: e.topic, Partition: p, From: from, Until: until, TopicID: e.topicID()}
}

// topicID returns the topic's id in hex.
func (e *env) topicID() string {
	e.t.Helper()
	if e.id == "" {
		topics, err := e.adm.ListTopics(context.Background(), e.topic)
		if err != nil {
			e.t.Fatal(err)
		}
		id := topics[e.topic].ID
		e.id = hex.EncodeToString(id[:])
	}
	return e.id
}

// only returns the records of want with offsets in [from, until).
func only(want []rec, p int32, from, until int64) []rec {
	var out []rec
	for _, r := range want {
		if r.Partition == p && r.Offset >= from && r.Offset < until {
			out = append(out, r)
		}
	}
	return out
}

func equalRecs(a, b []rec) bool { return slices.Equal(a, b) }
