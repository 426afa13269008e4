package ingest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/microbatch"
)

// A Source cuts a topic into batches of offset ranges and reads exactly the
// records of a batch's ranges, here under a rate cap of 2 records per
// partition and second of a 1 s interval. (franz-go's kfake stands in for
// Kafka.)
func ExampleSource() {
	ctx := context.Background()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "logs"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cluster.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	for i, line := range []string{"a0", "a1", "a2", "b0"} {
		r := &kgo.Record{Topic: "logs", Partition: int32(min(i/3, 1)), Value: []byte(line)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			fmt.Println(err)
			return
		}
	}

	src, err := ingest.New(cl, ingest.Config{Topic: "logs", BatchInterval: time.Second, MaxRatePerPartition: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	var after []microbatch.Range
	for batch := 1; batch <= 3; batch++ {
		plan, err := src.Cut(ctx, after)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("batch %d: %s\n", batch, microbatch.Plan{Ranges: plan}.OffsetsHeader())
		err = src.Read(ctx, plan, func(r microbatch.Record) {
			fmt.Printf("  %d:%d %s\n", r.Partition, r.Offset, r.Value)
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		after = plan
	}
	// Output:
	// batch 1: 0:0-2,1:0-1
	//   0:0 a0
	//   0:1 a1
	//   1:0 b0
	// batch 2: 0:2-3,1:1-1
	//   0:2 a2
	// batch 3: 0:3-3,1:1-1
}
