package main

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/weblog"
)

// demo is the zero-setup environment: an in-process Kafka (kfake), an
// in-process Redis (miniredis) and a log generator. Nothing is durable.
type demo struct {
	cluster *kfake.Cluster
	redis   *miniredis.Miniredis
	cfg     Config
	log     zerolog.Logger
	rate    int
}

// demoRate is how many lines per second the demo generates.
const demoRate = 2000

func startDemo(_ context.Context, cfg Config, log zerolog.Logger) (*demo, error) {
	log.Warn().Msg("DEMO MODE: DSTREAM_KAFKA_BROKERS is not set, so dstream runs an in-process Kafka and Redis " +
		"fed by a built-in log generator. Nothing is durable: set DSTREAM_KAFKA_BROKERS and DSTREAM_REDIS_ADDR for real use.")
	topics := []string{cfg.InputTopic, cfg.OutputTopic}
	if cfg.DeadLetterTopic != "" {
		topics = append(topics, cfg.DeadLetterTopic)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topics...))
	if err != nil {
		return nil, fmt.Errorf("demo kafka: %w", err)
	}
	mr, err := miniredis.Run()
	if err != nil {
		cluster.Close()
		return nil, fmt.Errorf("demo redis: %w", err)
	}
	return &demo{cluster: cluster, redis: mr, cfg: cfg, log: log, rate: demoRate}, nil
}

func (d *demo) Brokers() []string { return d.cluster.ListenAddrs() }
func (d *demo) RedisAddr() string { return d.redis.Addr() }

func (d *demo) Close() {
	d.redis.Close()
	d.cluster.Close()
}

// Generate produces log lines at the demo rate until ctx is done.
func (d *demo) Generate(ctx context.Context) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.Brokers()...), kgo.DefaultProduceTopic(d.cfg.InputTopic))
	if err != nil {
		d.log.Error().Err(err).Msg("demo generator")
		return
	}
	defer cl.Close()
	gen := weblog.NewGenerator(uint64(time.Now().UnixNano()), 500)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for range d.rate / 10 {
			cl.Produce(ctx, &kgo.Record{Value: gen.Append(nil)}, nil)
		}
	}
}
