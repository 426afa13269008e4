package ingest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// TestTopicRecreated deletes the topic under a running source and creates
// it again with records of its own: the same offsets now name other records,
// so Cut and Read of an old plan fail permanently rather than read them.
func TestTopicRecreated(t *testing.T) {
	e := newEnv(t, 1, nil)
	e.produce(0, values("old", 5)...)
	src := e.source(ingest.Config{})
	plan := cut(t, src, nil)

	resp, err := e.adm.DeleteTopics(context.Background(), e.topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	poll(t, e.topic+" is created again", func(ctx context.Context) (bool, error) {
		err := e.broker.CreateTopic(ctx, e.topic, 1, nil)
		return err == nil, err
	})
	prod := e.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(e.topic))
	produceWith(t, prod, e.topic, 0, values("new", 8)...)

	for _, test := range []struct {
		name string
		do   func() error
	}{
		{"cut", func() error { _, err := src.Cut(context.Background(), plan); return err }},
		{"read", func() error { _, err := read(src, plan); return err }},
	} {
		t.Run(test.name, func(t *testing.T) {
			err := test.do()
			if !errors.Is(err, microbatch.ErrPermanent) || !strings.Contains(err.Error(), "created again") {
				t.Fatalf("%s after the topic was recreated: %v, want a permanent error saying it was created again", test.name, err)
			}
		})
	}
}

// TestTopicRecreatedAfterRestart deletes and recreates the topic while no
// source runs, as when the job is down: a new source, given the last plan's
// ranges (with the topic id they were cut with), refuses to go on by
// default, and with Follow starts the new topic at its start offset. The
// ranges it cuts carry the new topic's id.
func TestTopicRecreatedAfterRestart(t *testing.T) {
	e := newEnv(t, 2, nil)
	e.produce(0, values("old", 5)...)
	e.produce(1, values("old", 3)...)
	plan := cut(t, e.source(ingest.Config{}), nil)
	if plan[0].TopicID == "" || plan[0].TopicID != plan[1].TopicID {
		t.Fatalf("ranges %+v: want the topic id on each", plan)
	}
	resp, err := e.adm.DeleteTopics(context.Background(), e.topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	poll(t, e.topic+" is created again", func(ctx context.Context) (bool, error) {
		err := e.broker.CreateTopic(ctx, e.topic, 2, nil)
		return err == nil, err
	})
	prod := e.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic(e.topic))
	produceWith(t, prod, e.topic, 0, values("new", 9)...)

	// A new process: nothing in memory but the plan.
	_, err = e.source(ingest.Config{}).Cut(context.Background(), plan)
	var recreated *ingest.TopicRecreatedError
	if !errors.As(err, &recreated) || !errors.Is(err, microbatch.ErrPermanent) || recreated.Was != plan[0].TopicID ||
		!strings.Contains(err.Error(), "DSTREAM_ON_TOPIC_RECREATED=follow") {
		t.Fatalf("cut after the old topic's plan: %v, want a permanent TopicRecreatedError that says how to follow", err)
	}
	next := cut(t, e.source(ingest.Config{OnRecreated: ingest.Follow}), plan)
	want := []microbatch.Range{
		{Topic: e.topic, Partition: 0, From: 0, Until: 9, TopicID: recreated.Now},
		{Topic: e.topic, Partition: 1, From: 0, Until: 0, TopicID: recreated.Now},
	}
	if !slices.Equal(next, want) {
		t.Fatalf("following the recreated topic cut %+v, want %+v", next, want)
	}
}

// TestReadRejectsForeignRanges: ranges this source cannot have cut fail
// permanently, before any fetch.
func TestReadRejectsForeignRanges(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1")) // never dialled
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	src, err := ingest.New(cl, ingest.Config{Topic: "logs"})
	if err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		name   string
		ranges []microbatch.Range
		want   string
	}{
		{"another topic", []microbatch.Range{{Topic: "other", Partition: 0, From: 0, Until: 1}}, "this source reads logs"},
		{"backwards", []microbatch.Range{{Topic: "logs", Partition: 0, From: 5, Until: 1}}, "invalid range [5, 1)"},
		{"negative", []microbatch.Range{{Topic: "logs", Partition: 0, From: -1, Until: 1}}, "invalid range [-1, 1)"},
		{"one partition twice", []microbatch.Range{{Topic: "logs", Partition: 1, From: 0, Until: 1}, {Topic: "logs", Partition: 1, From: 1, Until: 2}}, "two ranges of one partition"},
	} {
		t.Run(test.name, func(t *testing.T) {
			err := src.Read(context.Background(), test.ranges, func(microbatch.Record) { t.Fatal("emitted a record") })
			if !errors.Is(err, microbatch.ErrPermanent) || !strings.Contains(err.Error(), test.want) {
				t.Fatalf("read %v: %v, want a permanent error saying %q", test.ranges, err, test.want)
			}
		})
	}
	if err := src.Read(context.Background(), []microbatch.Range{{Topic: "logs", Partition: 0, From: 3, Until: 3}}, nil); err != nil {
		t.Fatalf("read of an empty range: %v", err)
	}
}
