package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/kafkatest"
	"github.com/dstream-io/dstream/microbatch"
)

// TestLagAtPlan checks the lag recorded with a plan: the records past its
// end as the source's last cut saw the partitions' ends, also for a plan
// recorded after the next cut (a batch of a group commit), and unknown for a
// plan the last cut does not follow.
func TestLagAtPlan(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := b.NewTopic(t, 2, nil)
	cl, err := b.Client(kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	var recs []*kgo.Record
	for p := range int32(2) {
		for i := range 100 {
			recs = append(recs, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, "line %d", i)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	rd, err := b.Client(kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	src, err := ingest.New(rd, ingest.Config{Topic: topic, BatchInterval: time.Second, MaxRatePerPartition: 10})
	if err != nil {
		t.Fatal(err)
	}
	first, err := src.Cut(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := src.Cut(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	ahead := []microbatch.Range{{Topic: topic, Partition: 0, From: 20, Until: 30}, {Topic: topic, Partition: 1, From: 20, Until: 30}}
	for _, test := range []struct {
		name   string
		ranges []microbatch.Range
		want   int64
	}{
		{"the plan of the last cut", second, 2 * (100 - 20)},
		{"a plan cut before it, recorded after", first, 2 * (100 - 10)},
		{"a plan past the last cut", ahead, -1},
	} {
		if got := lagAtPlan(src, microbatch.Plan{Ranges: test.ranges}); got != test.want {
			t.Errorf("%s: lag %d, want %d", test.name, got, test.want)
		}
	}
}
