// Package wiring assembles a dstream job from its parts — the Kafka source
// (ingest), the Redis store (state), the Kafka sink (sinks) and the built-in
// job's graph (internal/topips) — so that the command, the benchmark harness
// and the tests name and connect them the same way.
package wiring

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/sinks"
)

// ControlTopic is the default control topic of job: every batch's marker,
// which recovery reads (docs/checkpoint.md).
func ControlTopic(job string) string { return "dstream-" + job + "-control" }

// TransactionalID is the Kafka transactional id of job's producer.
func TransactionalID(job string) string { return "dstream-" + job }

// ExchangeTopic is the topic of exchange name of job.
func ExchangeTopic(job, name string) string { return "dstream-" + job + "-" + name }

// SinkConfig names what a job's sink writes.
type SinkConfig struct {
	Job    string
	Output string
	// DeadLetters is the dead-letter topic ("" for none).
	DeadLetters string
	// Control is the control topic (default ControlTopic(Job)).
	Control string
	// Task, ControlPartition and Tasks describe the task of a sharded job
	// the sink writes for: its name, its partition of the control topic,
	// and how many tasks the job has (the control topic's partitions).
	// Exchanges are the exchange topics the task writes.
	Task             string
	ControlPartition int32
	Tasks            int32
	Exchanges        []string
}

// NewSink returns job's transactional sink, connecting with base, after
// making sure its control topic exists.
func NewSink(ctx context.Context, cfg SinkConfig, base []kgo.Opt, log zerolog.Logger) (*sinks.Kafka, error) {
	if cfg.Control == "" {
		cfg.Control = ControlTopic(cfg.Job)
	}
	kc := sinks.KafkaConfig{Topic: cfg.Output, ControlTopic: cfg.Control, Job: cfg.Job, TransactionalID: TransactionalID(cfg.Job),
		Task: cfg.Task, ControlPartition: cfg.ControlPartition, ExchangeTopics: cfg.Exchanges}
	if cfg.Task != "" {
		kc.TransactionalID = TransactionalID(cfg.Job) + "-" + cfg.Task
	}
	if cfg.DeadLetters != "" {
		kc.Topics = []string{cfg.DeadLetters}
	}
	sink, err := sinks.NewKafka(kc, base, sinks.WithKafkaLogger(log))
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return nil, fmt.Errorf("wiring: kafka client: %w", err)
	}
	defer cl.Close()
	if err := sinks.EnsureControlTopic(ctx, cl, cfg.Control, max(1, cfg.Tasks)); err != nil {
		return nil, err
	}
	return sink, nil
}
