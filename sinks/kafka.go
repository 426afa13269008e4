package sinks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/microbatch"
)

// Provenance headers on every output record.
const (
	HeaderBatchID   = "dstream-batch-id"
	HeaderBatchTime = "dstream-batch-time"
	HeaderOffsets   = "dstream-offsets"
)

// KafkaConfig configures a Kafka sink.
type KafkaConfig struct {
	// Topic receives the messages. Required.
	Topic string
	// Topics lists the other topics that messages may name (Message.Topic),
	// such as a dead-letter topic. LastBatch reads their tails too, so a
	// batch whose transaction wrote to them alone is found as well. A
	// message for a topic not listed fails the batch.
	Topics []string
	// TransactionalID names the producer; it must be stable for a job and
	// unique across jobs. Required.
	TransactionalID string
	// TransactionTimeout bounds how long a transaction may stay open
	// before the broker aborts it (default 60s).
	TransactionTimeout time.Duration
}

// Validate reports settings that cannot work, saying what to change.
func (c KafkaConfig) Validate() error {
	var errs []error
	if c.Topic == "" {
		errs = append(errs, errors.New("sinks: the output topic is empty: set it"))
	}
	if slices.Contains(c.Topics, "") {
		errs = append(errs, errors.New("sinks: an empty name in the other topics: remove it"))
	}
	if c.TransactionalID == "" {
		errs = append(errs, errors.New("sinks: the transactional id is empty: derive it from the job id"))
	}
	if c.TransactionTimeout < 0 {
		errs = append(errs, fmt.Errorf("sinks: transaction timeout %v: use a positive duration", c.TransactionTimeout))
	}
	return errors.Join(errs...)
}

// Kafka is a transactional microbatch.Sink writing to a Kafka topic.
type Kafka struct {
	cfg  KafkaConfig
	opts []kgo.Opt
	log  zerolog.Logger

	mu struct {
		sync.Mutex
		cl *kgo.Client
	}
}

// KafkaOption configures a Kafka sink.
type KafkaOption func(*Kafka)

// WithKafkaLogger sets the sink's logger.
func WithKafkaLogger(l zerolog.Logger) KafkaOption {
	return func(k *Kafka) { k.log = l.With().Str("component", "sinks").Logger() }
}

// NewKafka returns a sink that connects with the client options base
// (brokers, TLS, SASL). The producer is created on first use, after the job
// was acquired: a hot standby must not fence the active instance's producer.
func NewKafka(cfg KafkaConfig, base []kgo.Opt, opts ...KafkaOption) (*Kafka, error) {
	if cfg.TransactionTimeout == 0 {
		cfg.TransactionTimeout = 60 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	k := &Kafka{cfg: cfg, opts: base, log: zerolog.Nop()}
	for _, o := range opts {
		o(k)
	}
	return k, nil
}

// client returns the transactional producer, creating it and fencing every
// older producer of the same transactional id on first use.
func (k *Kafka) client(ctx context.Context) (*kgo.Client, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mu.cl != nil {
		return k.mu.cl, nil
	}
	opts := append([]kgo.Opt{
		kgo.TransactionalID(k.cfg.TransactionalID),
		kgo.TransactionTimeout(k.cfg.TransactionTimeout),
		kgo.DefaultProduceTopic(k.cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	}, k.opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("sinks: kafka client: %w", err)
	}
	// Loading the producer id fences older producers of this id and aborts
	// a transaction they left open, before we look at the topic.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("sinks: init producer %s: %w", k.cfg.TransactionalID, err)
	}
	k.mu.cl = cl
	return cl, nil
}

// reset drops a producer that failed in a way a new transaction cannot fix.
func (k *Kafka) reset() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mu.cl != nil {
		k.mu.cl.Close()
		k.mu.cl = nil
	}
}

// Close closes the producer.
func (k *Kafka) Close() { k.reset() }

// WriteBatch implements microbatch.Sink: all messages in one transaction.
func (k *Kafka) WriteBatch(ctx context.Context, b microbatch.BatchInfo, msgs []microbatch.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	for _, m := range msgs {
		if m.Topic != "" && m.Topic != k.cfg.Topic && !slices.Contains(k.cfg.Topics, m.Topic) {
			return fmt.Errorf("sinks: batch %d: a message for topic %s, which KafkaConfig.Topics does not list "+
				"(recovery would not see the batch there): %w", b.ID, m.Topic, microbatch.ErrPermanent)
		}
	}
	cl, err := k.client(ctx)
	if err != nil {
		return err
	}
	headers := []kgo.RecordHeader{
		{Key: HeaderBatchID, Value: []byte(strconv.FormatUint(b.ID, 10))},
		{Key: HeaderBatchTime, Value: []byte(b.Time.UTC().Format(time.RFC3339Nano))},
		{Key: HeaderOffsets, Value: []byte(b.OffsetsHeader())},
	}
	if err := cl.BeginTransaction(); err != nil {
		k.reset()
		return fmt.Errorf("sinks: begin transaction of batch %d: %w", b.ID, err)
	}
	var (
		firstErr error
		errMu    sync.Mutex
	)
	for _, m := range msgs {
		rec := &kgo.Record{Key: m.Key, Value: m.Value, Topic: m.Topic, Headers: headers}
		if len(m.Headers) > 0 {
			rec.Headers = slices.Clip(headers)
			for _, h := range m.Headers {
				rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
		}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				errMu.Lock()
				firstErr = cmpErr(firstErr, err)
				errMu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		firstErr = cmpErr(firstErr, err)
	}
	commit := kgo.TryCommit
	if firstErr != nil {
		commit = kgo.TryAbort
	}
	if err := cl.EndTransaction(ctx, commit); err != nil {
		k.reset()
		if isFenced(err) {
			return fmt.Errorf("sinks: batch %d: %w: %v", b.ID, microbatch.ErrFenced, err)
		}
		return fmt.Errorf("sinks: end transaction of batch %d: %w", b.ID, err)
	}
	if firstErr != nil {
		if isFenced(firstErr) {
			k.reset()
			return fmt.Errorf("sinks: batch %d: %w: %v", b.ID, microbatch.ErrFenced, firstErr)
		}
		return fmt.Errorf("sinks: produce batch %d: %w", b.ID, firstErr)
	}
	return nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func isFenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

// LastBatch implements microbatch.TransactionalSink: the highest
// dstream-batch-id committed to the topic and the other topics, read from
// each partition's tail with read_committed isolation. It fences older
// producers first, so no transaction can commit behind its back.
func (k *Kafka) LastBatch(ctx context.Context) (uint64, error) {
	// A committed transaction's markers reach the partitions after
	// EndTransaction returns, and only then does the last stable offset
	// show its records. Initializing a new producer of the same id waits
	// for every transaction of that id to complete, our own last one
	// included, so the tail read below sees everything committed.
	k.reset()
	if _, err := k.client(ctx); err != nil {
		return 0, err
	}
	var last uint64
	for _, topic := range append([]string{k.cfg.Topic}, k.cfg.Topics...) {
		id, err := LastBatchIn(ctx, k.opts, topic)
		if err != nil {
			return 0, err
		}
		last = max(last, id)
	}
	return last, nil
}

// LastBatchIn returns the highest dstream-batch-id committed to topic,
// connecting with the client options base.
func LastBatchIn(ctx context.Context, base []kgo.Opt, topic string) (uint64, error) {
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return 0, fmt.Errorf("sinks: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("sinks: end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("sinks: start offsets of %s: %w", topic, err)
	}
	var last uint64
	var errs []error
	ends.Each(func(end kadm.ListedOffset) {
		start, _ := starts.Lookup(topic, end.Partition)
		id, err := lastInPartition(ctx, base, topic, end.Partition, start.Offset, end.Offset)
		errs = append(errs, err)
		last = max(last, id)
	})
	return last, errors.Join(errs...)
}

// lastInPartition reads the tail of one partition, widening the window until
// it holds a data record, and returns the highest batch id found.
func lastInPartition(ctx context.Context, base []kgo.Opt, topic string, partition int32, start, end int64) (uint64, error) {
	for window := int64(16); end > start; window *= 4 {
		from := max(start, end-window)
		id, found, err := scanPartition(ctx, base, topic, partition, from, end)
		if err != nil || found || from == start {
			return id, err
		}
	}
	return 0, nil
}

func scanPartition(ctx context.Context, base []kgo.Opt, topic string, partition int32, from, end int64) (uint64, bool, error) {
	cl, err := kgo.NewClient(append(slices.Clip(base),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
	)...)
	if err != nil {
		return 0, false, fmt.Errorf("sinks: reader: %w", err)
	}
	defer cl.Close()
	var last uint64
	found := false
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return 0, false, fmt.Errorf("sinks: read %s[%d]: %w", topic, partition, ferr)
		}
		done := false
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset >= end-1 {
				done = true
			}
			if r.Offset >= end || r.Attrs.IsControl() {
				return
			}
			for _, h := range r.Headers {
				if h.Key == HeaderBatchID {
					if id, err := strconv.ParseUint(string(h.Value), 10, 64); err == nil {
						last, found = max(last, id), true
					}
				}
			}
		})
		if done {
			return last, found, nil
		}
	}
}
