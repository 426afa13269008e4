package kafkatest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/dstream-io/dstream/internal/kafkatest"
)

func TestMain(m *testing.M) {
	os.Exit(kafkatest.Main(m, kafkatest.Options{}))
}

func TestProduceConsume(t *testing.T) {
	b := kafkatest.Shared(t)
	ctx := testContext(t)
	topic := b.NewTopic(t, 3, nil)
	want := values("v", 9)
	cl := client(t, b)
	produce(ctx, t, cl, topic, want)
	got := consume(ctx, t, b, topic, len(want))
	slices.Sort(got) // three partitions: order holds per partition only
	if !slices.Equal(got, want) {
		t.Fatalf("consumed %q, want %q", got, want)
	}
}

func TestCreateTopicTwice(t *testing.T) {
	b := kafkatest.Shared(t)
	ctx := testContext(t)
	retention := "60000"
	topic := b.NewTopic(t, 1, map[string]*string{"retention.ms": &retention})
	err := b.CreateTopic(ctx, topic, 1, nil)
	if !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("second CreateTopic: %v, want %v", err, kerr.TopicAlreadyExists)
	}
}

func TestAutoCreateIsOff(t *testing.T) {
	b := kafkatest.Shared(t)
	ctx := testContext(t)
	cl := client(t, b, kgo.RecordRetries(2), kgo.RecordDeliveryTimeout(3*time.Second))
	err := cl.ProduceSync(ctx, &kgo.Record{Topic: "never-created", Value: []byte("x")}).FirstErr()
	if err == nil {
		t.Fatal("produced to a topic nobody created")
	}
}

func TestTransactionReadCommitted(t *testing.T) {
	b := kafkatest.Shared(t)
	ctx := testContext(t)
	topic := b.NewTopic(t, 1, nil)
	produceTx(ctx, t, b, topic, values("a", 3), kgo.TryCommit)
	produceTx(ctx, t, b, topic, values("b", 2), kgo.TryAbort)
	produceTx(ctx, t, b, topic, values("c", 2), kgo.TryCommit)

	want := append(values("a", 3), values("c", 2)...)
	got := consume(ctx, t, b, topic, len(want), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if !slices.Equal(got, want) {
		t.Fatalf("read_committed consumed %q, want %q", got, want)
	}
	all := consume(ctx, t, b, topic, 7, kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	if !slices.Contains(all, "b0") {
		t.Fatalf("read_uncommitted consumed %q, want the aborted b0 too", all)
	}
}

// TestRestart runs a broker of its own with a SCRAM listener, writes plain
// and transactional records, and reads them back after a clean restart and
// after a crash. The SCRAM user, kept in the metadata log, must survive too.
func TestRestart(t *testing.T) {
	b := kafkatest.Require(t, kafkatest.Options{
		SCRAM: &kafkatest.SCRAM{User: "alice", Password: "alice-secret"},
	})
	ctx := testContext(t)
	addr := b.Addr()
	if err := b.CreateTopic(ctx, "durable", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl := client(t, b, b.SASL()...)
	produce(ctx, t, cl, "durable", values("p", 3))
	cl.Close()
	produceTx(ctx, t, b, "durable", values("t", 2), kgo.TryCommit)
	want := append(values("p", 3), values("t", 2)...)

	for _, test := range []struct {
		name string
		stop func() error
	}{
		{"stop", b.Stop},
		{"kill", b.Kill},
		{"running", func() error { return nil }},
	} {
		t.Run(test.name, func(t *testing.T) {
			if err := test.stop(); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := b.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("restarted in %v", time.Since(start).Round(time.Millisecond))
			if b.Addr() != addr {
				t.Fatalf("address changed from %s to %s", addr, b.Addr())
			}
			got := consume(ctx, t, b, "durable", len(want), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
			if !slices.Equal(got, want) {
				t.Fatalf("after restart consumed %q, want %q", got, want)
			}
			got = consume(ctx, t, b, "durable", len(want), b.SASL()...)
			if !slices.Equal(got, want) {
				t.Fatalf("SCRAM consumer got %q, want %q", got, want)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		wrong := scram.Auth{User: "alice", Pass: "wrong"}
		cl := client(t, b, kgo.SeedBrokers(b.SASLAddr()), kgo.SASL(wrong.AsSha512Mechanism()))
		err := cl.Ping(ctx)
		if !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("ping with a wrong password: %v, want an authentication failure", err)
		}
	})
}

func TestStartValidates(t *testing.T) {
	for _, test := range []struct {
		name  string
		scram kafkatest.SCRAM
	}{
		{"no password", kafkatest.SCRAM{User: "alice"}},
		{"no user", kafkatest.SCRAM{Password: "secret"}},
		{"comma", kafkatest.SCRAM{User: "alice", Password: "a,b"}},
		{"bracket", kafkatest.SCRAM{User: "al]ce", Password: "secret"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			err := kafkatest.Options{SCRAM: &test.scram}.Validate()
			if err == nil {
				t.Fatalf("Validate accepted %+v", test.scram)
			}
		})
	}
}

func TestStartWithoutJars(t *testing.T) {
	_, err := kafkatest.Start(t.Context(), kafkatest.Options{Home: t.TempDir()})
	if !errors.Is(err, kafkatest.ErrNotInstalled) {
		t.Fatalf("Start from an empty home: %v, want %v", err, kafkatest.ErrNotInstalled)
	}
}

func testContext(t *testing.T) context.Context {
	// A bound for a hung broker, not a timed assertion: everything here takes
	// seconds.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func values(prefix string, n int) []string {
	vs := make([]string, n)
	for i := range vs {
		vs[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return vs
}

func client(t *testing.T, b *kafkatest.Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := b.Client(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(ctx context.Context, t *testing.T, cl *kgo.Client, topic string, vs []string) {
	t.Helper()
	for _, v := range vs {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s to %s: %v", v, topic, err)
		}
	}
}

// produceTx writes vs in one transaction and then commits or aborts it.
func produceTx(ctx context.Context, t *testing.T, b *kafkatest.Broker, topic string, vs []string, end kgo.TransactionEndTry) {
	t.Helper()
	cl := client(t, b, kgo.TransactionalID("kafkatest-"+topic))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(ctx, t, cl, topic, vs)
	if err := cl.EndTransaction(ctx, end); err != nil {
		t.Fatalf("end transaction (commit %v): %v", end, err)
	}
	cl.Close()
}

// consume reads topic from the start until it has n records.
func consume(ctx context.Context, t *testing.T, b *kafkatest.Broker, topic string, n int, opts ...kgo.Opt) []string {
	t.Helper()
	opts = append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	cl := client(t, b, opts...)
	defer cl.Close()
	var got []string
	for len(got) < n {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %q from %s, want %d records: %v", got, topic, n, err)
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			t.Fatalf("consume %s: %v", topic, errs[0].Err)
		}
		fetches.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}
