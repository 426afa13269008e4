package sinks

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
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

// Headers on every record the sink writes.
const (
	// HeaderJob names the job that wrote the record.
	HeaderJob       = "dstream-job"
	HeaderBatchID   = "dstream-batch-id"
	HeaderBatchTime = "dstream-batch-time"
	HeaderOffsets   = "dstream-offsets"
	// HeaderTruncatedFrom is on a record whose value was cut to fit its
	// topic: the value's size before.
	HeaderTruncatedFrom = "dstream-truncated-from"
	// HeaderTask names the task of a sharded job that wrote the record.
	HeaderTask = "dstream-task"
)

// KafkaConfig configures a Kafka sink.
type KafkaConfig struct {
	// Topic receives the messages. Required.
	Topic string
	// Topics lists the other topics that messages may name (Message.Topic),
	// such as a dead-letter topic. A message for a topic not listed fails
	// the batch.
	Topics []string
	// ControlTopic receives every batch's marker, in the batch's
	// transaction: the job's own record of what it committed, which
	// recovery reads. Required; EnsureControlTopic creates it.
	ControlTopic string
	// Job names the job in every record (HeaderJob) and keys its markers.
	// Required.
	Job string
	// Task names the task of a sharded job the sink writes for (HeaderTask
	// on every record; its markers are keyed job/task), and
	// ControlPartition is its partition of the control topic ("" and 0 for
	// an unsharded job).
	Task             string
	ControlPartition int32
	// ExchangeTopics are the topics of exchanges between the stages of a
	// sharded job that the sink writes: their messages go to the partition
	// they name (Message.Partition).
	ExchangeTopics []string
	// TransactionalID names the producer; it must be stable for a job and
	// unique across jobs. Required.
	TransactionalID string
	// TransactionTimeout bounds how long a transaction may stay open
	// before the broker aborts it (default 60s).
	TransactionTimeout time.Duration
	// ReadTimeout bounds Committed, which fences the producer and reads the
	// control topic's tail (default 30s).
	ReadTimeout time.Duration
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
	if c.ControlTopic == "" {
		errs = append(errs, errors.New("sinks: the control topic is empty: derive it from the job id"))
	}
	if c.ControlPartition < 0 {
		errs = append(errs, fmt.Errorf("sinks: control partition %d: use 0 or more", c.ControlPartition))
	}
	if c.ControlTopic != "" && (c.ControlTopic == c.Topic || slices.Contains(c.Topics, c.ControlTopic)) {
		errs = append(errs, fmt.Errorf("sinks: the control topic %s is also an output topic: give it a topic of its own", c.ControlTopic))
	}
	if c.Job == "" {
		errs = append(errs, errors.New("sinks: the job is empty: set it"))
	}
	if c.TransactionalID == "" {
		errs = append(errs, errors.New("sinks: the transactional id is empty: derive it from the job id"))
	}
	if c.TransactionTimeout < 0 || c.ReadTimeout < 0 {
		errs = append(errs, fmt.Errorf("sinks: timeouts %v, %v: use positive durations", c.TransactionTimeout, c.ReadTimeout))
	}
	return errors.Join(errs...)
}

// Kafka is a transactional microbatch.Sink writing to Kafka topics.
type Kafka struct {
	cfg  KafkaConfig
	opts []kgo.Opt
	log  zerolog.Logger

	mu struct {
		sync.Mutex
		cl *kgo.Client
		// limits are the largest record each topic takes, learnt from
		// the broker with the producer.
		limits map[string]int
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
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 30 * time.Second
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

// topics lists every topic the sink writes.
func (k *Kafka) topics() []string {
	return slices.Concat([]string{k.cfg.Topic, k.cfg.ControlTopic}, k.cfg.Topics, k.cfg.ExchangeTopics)
}

// markerKey keys the sink's markers: its job's, or its task's.
func (k *Kafka) markerKey() string {
	if k.cfg.Task == "" {
		return k.cfg.Job
	}
	return k.cfg.Job + "/" + k.cfg.Task
}

// client returns the transactional producer, creating it and fencing every
// older producer of the same transactional id on first use.
func (k *Kafka) client(ctx context.Context) (*kgo.Client, map[string]int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mu.cl != nil {
		return k.mu.cl, k.mu.limits, nil
	}
	limits, err := k.learnLimits(ctx)
	if err != nil {
		return nil, nil, err
	}
	batchMax := defaultMaxMessageBytes
	for _, l := range limits {
		batchMax = min(batchMax, l)
	}
	opts := append([]kgo.Opt{
		kgo.TransactionalID(k.cfg.TransactionalID),
		kgo.TransactionTimeout(k.cfg.TransactionTimeout),
		kgo.DefaultProduceTopic(k.cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
		// A record batch must fit every topic the sink writes.
		kgo.ProducerBatchMaxBytes(int32(batchMax)),
		kgo.RecordPartitioner(manualPartitioner{manual: append([]string{k.cfg.ControlTopic}, k.cfg.ExchangeTopics...),
			base: kgo.UniformBytesPartitioner(64<<10, true, true, nil)}),
	}, k.opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("sinks: kafka client: %w", err)
	}
	// Loading the producer id fences older producers of this id and aborts
	// a transaction they left open, before we look at the topic.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return nil, nil, fmt.Errorf("sinks: init producer %s: %w", k.cfg.TransactionalID, err)
	}
	k.mu.cl, k.mu.limits = cl, limits
	return cl, limits, nil
}

// defaultMaxMessageBytes is Kafka's default max.message.bytes, the limit
// assumed for a topic whose settings cannot be read.
const defaultMaxMessageBytes = 1048588

// learnLimits asks the broker for every written topic's max.message.bytes.
func (k *Kafka) learnLimits(ctx context.Context) (map[string]int, error) {
	cl, err := kgo.NewClient(k.opts...)
	if err != nil {
		return nil, fmt.Errorf("sinks: kafka client: %w", err)
	}
	defer cl.Close()
	limits := map[string]int{}
	configs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, k.topics()...)
	for _, topic := range k.topics() {
		limits[topic] = defaultMaxMessageBytes
		if err != nil {
			continue
		}
		rc, cerr := configs.On(topic, nil)
		if cerr != nil || rc.Err != nil {
			continue
		}
		for _, c := range rc.Configs {
			if c.Key == "max.message.bytes" && c.Value != nil {
				if n, perr := strconv.Atoi(*c.Value); perr == nil && n > 0 {
					limits[topic] = n
				}
			}
		}
	}
	if err != nil {
		k.log.Warn().Err(err).Int("assumed_bytes", defaultMaxMessageBytes).
			Msg("cannot read the topics' max.message.bytes; assuming Kafka's default")
	}
	return limits, nil
}

// manualPartitioner sends a record of a manual topic (the control topic, an
// exchange) to the partition the sink set on it, every other record as
// base does.
type manualPartitioner struct {
	manual []string
	base   kgo.Partitioner
}

func (p manualPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if slices.Contains(p.manual, topic) {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return p.base.ForTopic(topic)
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

// Fence starts a new producer of the job's transactional id, which fences
// every older one and completes or aborts the transaction it left open.
func (k *Kafka) Fence(ctx context.Context) error {
	k.reset()
	_, _, err := k.client(ctx)
	return err
}

// marker is the value of a batch's record in the control topic.
type marker struct {
	Job    string            `json:"job"`
	Batch  uint64            `json:"batch"`
	Time   time.Time         `json:"time"`
	Ranges []markerRange     `json:"ranges"`
	IDs    map[string]string `json:"ids,omitempty"`
	Graph  string            `json:"graph,omitempty"`
	Base   uint64            `json:"base,omitempty"`
}

type markerRange struct {
	Topic     string `json:"t"`
	Partition int32  `json:"p"`
	From      int64  `json:"f"`
	Until     int64  `json:"u"`
}

func encodeMarker(job string, b microbatch.BatchInfo) []byte {
	m := marker{Job: job, Batch: b.ID, Time: b.Time.UTC(), Graph: b.Graph, Base: b.Base, Ranges: make([]markerRange, len(b.Ranges))}
	for i, r := range b.Ranges {
		m.Ranges[i] = markerRange{Topic: r.Topic, Partition: r.Partition, From: r.From, Until: r.Until}
		if r.TopicID != "" {
			if m.IDs == nil {
				m.IDs = map[string]string{}
			}
			m.IDs[r.Topic] = r.TopicID
		}
	}
	v, _ := json.Marshal(m) // plain data: always encodes
	return v
}

func decodeMarker(v []byte) (marker, microbatch.BatchInfo, error) {
	var m marker
	if err := json.Unmarshal(v, &m); err != nil {
		return m, microbatch.BatchInfo{}, err
	}
	b := microbatch.BatchInfo{Plan: microbatch.Plan{ID: m.Batch, Time: m.Time.UTC(), Ranges: make([]microbatch.Range, len(m.Ranges))},
		Graph: m.Graph, Base: m.Base}
	for i, r := range m.Ranges {
		b.Ranges[i] = microbatch.Range{Topic: r.Topic, Partition: r.Partition, From: r.From, Until: r.Until, TopicID: m.IDs[r.Topic]}
	}
	return m, b, nil
}

// WriteBatch implements microbatch.Sink: the messages and the batch's
// marker in one transaction, even when there are no messages.
func (k *Kafka) WriteBatch(ctx context.Context, b microbatch.BatchInfo, msgs []microbatch.Message) error {
	return k.WriteBatches(ctx, []microbatch.BatchInfo{b}, [][]microbatch.Message{msgs})
}

// WriteBatches implements microbatch.TransactionalSink: every batch's
// messages and marker in one transaction.
func (k *Kafka) WriteBatches(ctx context.Context, batches []microbatch.BatchInfo, msgs [][]microbatch.Message) error {
	if len(batches) == 0 {
		return nil
	}
	b := batches[len(batches)-1] // names the transaction in errors
	cl, limits, err := k.client(ctx)
	if err != nil {
		return err
	}
	n := len(batches)
	for _, m := range msgs {
		n += len(m)
	}
	records := make([]*kgo.Record, 0, n)
	for i, bi := range batches {
		if records, err = k.appendRecords(records, bi, msgs[i], limits); err != nil {
			return err
		}
	}
	if err := cl.BeginTransaction(); err != nil {
		k.reset()
		return fmt.Errorf("sinks: begin transaction of batch %d: %w", b.ID, err)
	}
	var (
		firstErr error
		errMu    sync.Mutex
	)
	for _, rec := range records {
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
			return fmt.Errorf("sinks: batch %d: %w: %w", b.ID, microbatch.ErrFenced, err)
		}
		return fmt.Errorf("sinks: end transaction of batch %d: %w", b.ID, err)
	}
	if firstErr != nil {
		if isFenced(firstErr) {
			k.reset()
			return fmt.Errorf("sinks: batch %d: %w: %w", b.ID, microbatch.ErrFenced, firstErr)
		}
		return fmt.Errorf("sinks: produce batch %d: %w", b.ID, firstErr)
	}
	return nil
}

// appendRecords appends to records batch b's messages and its marker,
// each with the batch's headers.
func (k *Kafka) appendRecords(records []*kgo.Record, b microbatch.BatchInfo, msgs []microbatch.Message, limits map[string]int) ([]*kgo.Record, error) {
	for _, m := range msgs {
		if m.Topic != "" && m.Topic != k.cfg.Topic && !slices.Contains(k.cfg.Topics, m.Topic) && !slices.Contains(k.cfg.ExchangeTopics, m.Topic) {
			return nil, fmt.Errorf("sinks: batch %d: a message for topic %s, which KafkaConfig.Topics does not list: %w", b.ID, m.Topic, microbatch.ErrPermanent)
		}
	}
	headers := []kgo.RecordHeader{
		{Key: HeaderJob, Value: []byte(k.cfg.Job)},
		{Key: HeaderBatchID, Value: []byte(strconv.FormatUint(b.ID, 10))},
		{Key: HeaderBatchTime, Value: []byte(b.Time.UTC().Format(time.RFC3339Nano))},
		{Key: HeaderOffsets, Value: []byte(b.OffsetsHeader())},
	}
	if k.cfg.Task != "" {
		headers = append(headers, kgo.RecordHeader{Key: HeaderTask, Value: []byte(k.cfg.Task)})
	}
	for _, m := range msgs {
		rec := &kgo.Record{Key: m.Key, Value: m.Value, Topic: m.Topic, Partition: m.Partition, Headers: headers}
		if len(m.Headers) > 0 {
			rec.Headers = slices.Clip(headers)
			for _, h := range m.Headers {
				rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
		}
		topic := cmpOr(m.Topic, k.cfg.Topic)
		if err := fit(rec, limits[topic], m.MayTruncate); err != nil {
			return nil, fmt.Errorf("sinks: batch %d: %w", b.ID, err)
		}
		records = append(records, rec)
	}
	return append(records, &kgo.Record{Topic: k.cfg.ControlTopic, Partition: k.cfg.ControlPartition, Key: []byte(k.markerKey()),
		Value: encodeMarker(k.cfg.Job, b), Headers: headers}), nil
}

// recordOverhead bounds what a record batch of one record adds to the
// record's key, value and headers: the batch header (61 bytes) and the
// record's varints.
const recordOverhead = 61 + 32

// fit makes rec fit a topic whose records take at most limit bytes: as it
// is, or, if it may be truncated, with its value cut and a header that says
// from what size. A record that does not fit and may not be cut is a
// permanent error: no retry can make it fit.
func fit(rec *kgo.Record, limit int, mayTruncate bool) error {
	size := recordOverhead + len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		size += len(h.Key) + len(h.Value) + 10
	}
	if size <= limit {
		return nil
	}
	if !mayTruncate {
		return fmt.Errorf("a record of %d bytes for topic %s, whose records take at most %d (max.message.bytes): %w",
			size, cmpOr(rec.Topic, "(output)"), limit, microbatch.ErrPermanent)
	}
	from := strconv.Itoa(len(rec.Value))
	size += len(HeaderTruncatedFrom) + len(from) + 10
	keep := len(rec.Value) - (size - limit)
	if keep < 0 {
		return fmt.Errorf("a record's key and headers alone take %d bytes, more than topic %s takes (%d): %w",
			size-len(rec.Value), cmpOr(rec.Topic, "(output)"), limit, microbatch.ErrPermanent)
	}
	rec.Value = rec.Value[:keep]
	rec.Headers = append(slices.Clip(rec.Headers), kgo.RecordHeader{Key: HeaderTruncatedFrom, Value: []byte(from)})
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
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

// Committed implements microbatch.TransactionalSink: the batches after
// `after` whose markers are committed to the control topic, read from its
// tail with read_committed isolation, with one client and within
// ReadTimeout. It fences older producers of the job first, so that no
// transaction can commit behind its back.
func (k *Kafka) Committed(ctx context.Context, after uint64) ([]microbatch.BatchInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.ReadTimeout)
	defer cancel()
	// A committed transaction's markers reach the partitions after
	// EndTransaction returns, and only then does the last stable offset
	// show its records. Initializing a new producer of the same id waits
	// for every transaction of that id to complete, our own last one
	// included, so the tail read below sees everything committed.
	if err := k.Fence(ctx); err != nil {
		return nil, err
	}
	return MarkersAfter(ctx, k.opts, k.cfg.ControlTopic, k.cfg.ControlPartition, k.markerKey(), after)
}

// MarkersAfter returns the batches after `after` whose markers are keyed
// job (a job's; job/task for a task of a sharded job) in partition of the
// control topic, committed, in batch order, connecting with the client
// options base.
func MarkersAfter(ctx context.Context, base []kgo.Opt, topic string, partition int32, job string, after uint64) ([]microbatch.BatchInfo, error) {
	start, end, err := partitionBounds(ctx, base, topic, partition)
	if err != nil {
		return nil, err
	}
	// Markers are in batch order: read back from the end, in widening
	// windows, until one at or before `after` (or the partition's start)
	// shows that nothing later was missed. One marker a batch and its
	// transaction's commit marker make about two offsets a batch.
	found := map[uint64]microbatch.BatchInfo{}
	for window := int64(16); ; window *= 4 {
		from := max(start, end-window)
		lowest, err := readMarkers(ctx, base, topic, partition, from, end, job, after, found)
		if err != nil {
			return nil, err
		}
		if lowest <= after || from == start {
			break
		}
	}
	out := make([]microbatch.BatchInfo, 0, len(found))
	for _, b := range found {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b microbatch.BatchInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// readMarkers reads offsets [from, end) and adds job's markers after
// `after` to found. It returns the lowest batch id of job's markers in the
// range (MaxUint64 when there are none).
func readMarkers(ctx context.Context, base []kgo.Opt, topic string, partition int32, from, end int64, job string, after uint64, found map[uint64]microbatch.BatchInfo) (uint64, error) {
	lowest := ^uint64(0)
	if from >= end {
		return lowest, nil
	}
	// A client of its own that starts at from: moving a running client
	// with SetOffsets is skipped for a partition it has not fetched yet, and
	// one that had started at the end then waited for records that never
	// came (a reset hung there).
	cl, err := kgo.NewClient(append(slices.Clip(base),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
	)...)
	if err != nil {
		return 0, fmt.Errorf("sinks: reader: %w", err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("sinks: read %s[%d]: %w", topic, partition, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return 0, fmt.Errorf("sinks: read %s[%d]: %w", topic, partition, ferr)
		}
		done := false
		var derr error
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset >= end-1 {
				done = true
			}
			if r.Offset < from || r.Offset >= end || r.Attrs.IsControl() || string(r.Key) != job {
				return
			}
			_, b, err := decodeMarker(r.Value)
			if err != nil {
				derr = fmt.Errorf("sinks: marker at %s[%d]@%d: %w", topic, partition, r.Offset, err)
				return
			}
			lowest = min(lowest, b.ID)
			if b.ID > after {
				found[b.ID] = b
			}
		})
		if derr != nil {
			return 0, derr
		}
		if done {
			return lowest, nil
		}
	}
}

// EnsureControlTopic creates the control topic with partitions partitions
// (one per task) if it does not exist, and checks that it has at least that
// many.
func EnsureControlTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int32) error {
	return EnsureTopic(ctx, cl, "control", topic, partitions)
}

// EnsureTopic creates a topic the job owns (kind says which: "control",
// "exchange") with partitions partitions if it does not exist, and checks
// that it has at least that many.
func EnsureTopic(ctx context.Context, cl *kgo.Client, kind, topic string, partitions int32) error {
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("sinks: describe %s topic %s: %w", kind, topic, err)
	}
	if d, ok := details[topic]; ok && d.Err == nil {
		if n := int32(len(d.Partitions)); n < partitions {
			return fmt.Errorf("sinks: %s topic %s has %d partitions, the job needs %d: add partitions: %w", kind, topic, n, partitions, microbatch.ErrPermanent)
		}
		return nil
	}
	resp, err := adm.CreateTopic(ctx, partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("sinks: create %s topic %s (or create it yourself, with %d partition(s)): %w", kind, topic, partitions, err)
	}
	return nil
}

// GrowTopic makes sure a topic the job owns has at least partitions
// partitions, creating it or adding partitions: what a reset to more
// shards needs, where a start refuses (EnsureTopic).
func GrowTopic(ctx context.Context, cl *kgo.Client, kind, topic string, partitions int32) error {
	err := EnsureTopic(ctx, cl, kind, topic, partitions)
	if !errors.Is(err, microbatch.ErrPermanent) {
		return err
	}
	resp, err := kadm.NewClient(cl).UpdatePartitions(ctx, int(partitions), topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("sinks: grow %s topic %s to %d partitions: %w", kind, topic, partitions, err)
	}
	return nil
}

// LastMarker returns the last batch whose marker job committed to partition
// of the control topic, and false if there is none.
func LastMarker(ctx context.Context, base []kgo.Opt, topic string, partition int32, job string) (microbatch.BatchInfo, bool, error) {
	// Read back from the end, in widening windows, until one holds a
	// marker of job's.
	start, end, err := partitionBounds(ctx, base, topic, partition)
	if err != nil {
		return microbatch.BatchInfo{}, false, err
	}
	for window := int64(16); ; window *= 4 {
		from := max(start, end-window)
		found := map[uint64]microbatch.BatchInfo{}
		if _, err := readMarkers(ctx, base, topic, partition, from, end, job, 0, found); err != nil {
			return microbatch.BatchInfo{}, false, err
		}
		if len(found) > 0 {
			last := slices.Max(slices.Collect(maps.Keys(found)))
			return found[last], true, nil
		}
		if from == start {
			return microbatch.BatchInfo{}, false, nil
		}
	}
}

// partitionBounds returns a partition's log start and last stable offset.
func partitionBounds(ctx context.Context, base []kgo.Opt, topic string, partition int32) (start, end int64, err error) {
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return 0, 0, fmt.Errorf("sinks: admin client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("sinks: end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("sinks: start offsets of %s: %w", topic, err)
	}
	e, ok1 := ends.Lookup(topic, partition)
	s, ok2 := starts.Lookup(topic, partition)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("sinks: %s has no partition %d: %w", topic, partition, microbatch.ErrPermanent)
	}
	return s.Offset, e.Offset, nil
}
