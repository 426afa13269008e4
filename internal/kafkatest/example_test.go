package kafkatest_test

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/kafkatest"
)

// Start runs a broker outside of a test, here to produce one record and read
// it back. (Tests use Require or Shared instead.)
func ExampleStart() {
	ctx := context.Background()
	b, err := kafkatest.Start(ctx, kafkatest.Options{})
	if err != nil {
		fmt.Println(err) // kafkatest.ErrNotInstalled: run .ci/install
		return
	}
	defer b.Close()

	if err := b.CreateTopic(ctx, "events", 1, nil); err != nil {
		fmt.Println(err)
		return
	}
	cl, err := b.Client(
		kgo.DefaultProduceTopic("events"),
		kgo.ConsumeTopics("events"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, kgo.StringRecord("hello")).FirstErr(); err != nil {
		fmt.Println(err)
		return
	}
	cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
		fmt.Println(string(r.Value))
	})
}
