package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/microbatch"
)

// Headers of the records of an exchange, as the job's sinks write them
// (package sinks): the source reads batches by them.
const (
	headerJob       = "dstream-job"
	headerTask      = "dstream-task"
	headerBatchID   = "dstream-batch-id"
	headerBatchTime = "dstream-batch-time"
	headerOffsets   = "dstream-offsets"
)

// ExchangeConfig configures an Exchange.
type ExchangeConfig struct {
	// Topic and Partition are the exchange partition the task reads.
	Topic     string
	Partition int32
	// Job is the job whose records count (others are skipped).
	Job string
	// Upstream is how many tasks feed the exchange: one record each per
	// batch makes the batch complete.
	Upstream int
	// InputTopic names the job's input, of the ranges the records say they
	// derive from.
	InputTopic string
	// Poll bounds a fetch's wait for records not there yet (default 100ms).
	Poll time.Duration
}

// Exchange reads one partition of an exchange between the stages of a
// sharded job: a microbatch.BatchSource (docs/scale-out.md). Every upstream
// task writes one record per batch into every partition, read committed;
// batch n is complete when the partition holds the batch-n records of all
// upstream tasks. Its plan is their exact offsets.
type Exchange struct {
	cl  *kgo.Client
	cfg ExchangeConfig
	log zerolog.Logger
	// seen keeps the records the last cut scanned, for the read of its
	// plan that follows (offset → record); older reads fetch again.
	seen map[int64]microbatch.Record
}

// NewExchange returns the source of an exchange partition, reading with a
// client of its own built from base (brokers, TLS, SASL).
func NewExchange(base []kgo.Opt, cfg ExchangeConfig, log zerolog.Logger) (*Exchange, error) {
	if cfg.Topic == "" || cfg.Job == "" || cfg.Upstream < 1 || cfg.Partition < 0 {
		return nil, fmt.Errorf("ingest: exchange %s[%d] of job %q from %d tasks: set the topic, the job and at least one upstream task",
			cfg.Topic, cfg.Partition, cfg.Job, cfg.Upstream)
	}
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	cl, err := kgo.NewClient(append(slices.Clip(base),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(cfg.Poll),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: {cfg.Partition: kgo.NewOffset().AtStart()}}),
	)...)
	if err != nil {
		return nil, fmt.Errorf("ingest: exchange client: %w", err)
	}
	return &Exchange{cl: cl, cfg: cfg, log: log.With().Str("component", "exchange").Logger(), seen: map[int64]microbatch.Record{}}, nil
}

// Close closes the exchange's client.
func (x *Exchange) Close() error {
	x.cl.Close()
	return nil
}

// Topic implements microbatch.Source.
func (x *Exchange) Topic() string { return x.cfg.Topic }

// Cut implements microbatch.Source: an exchange is cut by batch.
func (x *Exchange) Cut(context.Context, []microbatch.Range) ([]microbatch.Range, error) {
	return nil, fmt.Errorf("ingest: exchange %s is cut by batch id: %w", x.cfg.Topic, microbatch.ErrPermanent)
}

// exchangeRecord is a record of the exchange with what its headers say.
type exchangeRecord struct {
	rec   microbatch.Record
	batch uint64
	time  time.Time
	task  string
}

// CutBatch implements microbatch.BatchSource. It scans the partition from
// the lowest offset of the batch before's plan (every upstream task writes
// its batches in order, so batch id's records all lie after it), and waits
// until the records of every upstream task for batch id are there.
func (x *Exchange) CutBatch(ctx context.Context, id uint64, after []microbatch.Range) ([]microbatch.Range, time.Time, error) {
	from := int64(-1)
	for _, r := range after {
		if from < 0 || r.From < from {
			from = r.From
		}
	}
	if from < 0 {
		start, err := x.start(ctx)
		if err != nil {
			return nil, time.Time{}, err
		}
		from = start
	}
	clear(x.seen)
	found := map[string]exchangeRecord{}
	err := x.scan(ctx, from, func(r exchangeRecord) bool {
		if r.batch == id {
			if old, dup := found[r.task]; dup {
				x.log.Warn().Str("task", r.task).Uint64("batch", id).Int64("offset", old.rec.Offset).Int64("again", r.rec.Offset).
					Msg("an upstream task wrote a batch twice; taking the first")
			} else {
				found[r.task] = r
				x.seen[r.rec.Offset] = r.rec
			}
		}
		return len(found) == x.cfg.Upstream
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	out := make([]microbatch.Range, 0, len(found))
	var t time.Time
	for _, r := range found {
		out = append(out, microbatch.Range{Topic: x.cfg.Topic, Partition: x.cfg.Partition, From: r.rec.Offset, Until: r.rec.Offset + 1})
		if !t.IsZero() && !t.Equal(r.time) {
			return nil, time.Time{}, fmt.Errorf("ingest: exchange %s[%d] batch %d: its records disagree on its time (%v, %v): %w",
				x.cfg.Topic, x.cfg.Partition, id, t, r.time, microbatch.ErrPermanent)
		}
		t = r.time
	}
	slices.SortFunc(out, func(a, b microbatch.Range) int { return int(a.From - b.From) })
	return out, t, nil
}

// Read implements microbatch.Source: the records at the plan's offsets.
func (x *Exchange) Read(ctx context.Context, ranges []microbatch.Range, emit func(microbatch.Record)) error {
	var missing []int64
	// A reset point's range is empty: where the task starts over.
	ranges = slices.DeleteFunc(slices.Clone(ranges), func(r microbatch.Range) bool { return r.From == r.Until })
	for _, r := range ranges {
		if r.Topic != x.cfg.Topic || r.Partition != x.cfg.Partition || r.Until != r.From+1 {
			return fmt.Errorf("ingest: exchange %s[%d]: a plan of other ranges (%s[%d] [%d,%d)): %w",
				x.cfg.Topic, x.cfg.Partition, r.Topic, r.Partition, r.From, r.Until, microbatch.ErrPermanent)
		}
		if _, ok := x.seen[r.From]; !ok {
			missing = append(missing, r.From)
		}
	}
	if len(missing) > 0 {
		want := map[int64]bool{}
		for _, o := range missing {
			want[o] = true
		}
		err := x.scan(ctx, slices.Min(missing), func(r exchangeRecord) bool {
			if want[r.rec.Offset] {
				x.seen[r.rec.Offset] = r.rec
				delete(want, r.rec.Offset)
			}
			return len(want) == 0
		})
		if err != nil {
			return err
		}
	}
	for _, r := range ranges {
		emit(x.seen[r.From])
	}
	return nil
}

// start returns the partition's log start.
func (x *Exchange) start(ctx context.Context) (int64, error) {
	starts, err := kadm.NewClient(x.cl).ListStartOffsets(ctx, x.cfg.Topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("ingest: start of exchange %s: %w", x.cfg.Topic, err)
	}
	o, ok := starts.Lookup(x.cfg.Topic, x.cfg.Partition)
	if !ok {
		return 0, fmt.Errorf("ingest: exchange %s has no partition %d: %w", x.cfg.Topic, x.cfg.Partition, microbatch.ErrPermanent)
	}
	return o.Offset, nil
}

// scan reads the partition's committed records from offset from, this
// job's, until done says so, waiting for records not written yet.
func (x *Exchange) scan(ctx context.Context, from int64, done func(exchangeRecord) bool) error {
	x.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{x.cfg.Topic: {x.cfg.Partition: {Epoch: -1, Offset: from}}})
	for {
		fetches := x.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return fmt.Errorf("ingest: read exchange %s[%d]: %w", x.cfg.Topic, x.cfg.Partition, ferr)
		}
		stop := false
		var derr error
		fetches.EachRecord(func(kr *kgo.Record) {
			if stop || derr != nil || kr.Offset < from {
				return
			}
			r, ok, err := x.decode(kr)
			if err != nil {
				derr = err
				return
			}
			if ok && done(r) {
				stop = true
			}
		})
		if derr != nil {
			return derr
		}
		if stop {
			return nil
		}
	}
}

// decode reads a record's headers; ok is false for another job's record.
func (x *Exchange) decode(kr *kgo.Record) (exchangeRecord, bool, error) {
	r := exchangeRecord{rec: microbatch.Record{Partition: kr.Partition, Offset: kr.Offset, Value: kr.Value}}
	var job, batch, bt, offsets string
	for _, h := range kr.Headers {
		switch h.Key {
		case headerJob:
			job = string(h.Value)
		case headerTask:
			r.task = string(h.Value)
		case headerBatchID:
			batch = string(h.Value)
		case headerBatchTime:
			bt = string(h.Value)
		case headerOffsets:
			offsets = string(h.Value)
		}
	}
	if job != x.cfg.Job {
		return r, false, nil
	}
	var err error
	if r.batch, err = strconv.ParseUint(batch, 10, 64); err == nil {
		if r.time, err = time.Parse(time.RFC3339Nano, bt); err == nil {
			r.rec.Origin, err = microbatch.ParseOffsetsHeader(x.cfg.InputTopic, offsets)
		}
	}
	if err != nil || r.task == "" {
		return r, false, fmt.Errorf("ingest: exchange %s[%d]@%d: headers of a record of job %s: %v: %w",
			x.cfg.Topic, x.cfg.Partition, kr.Offset, job, err, microbatch.ErrPermanent)
	}
	return r, true, nil
}
