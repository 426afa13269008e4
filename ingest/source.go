package ingest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/dstream-io/dstream/microbatch"
)

// StartOffset says where a job with no checkpoint starts reading.
type StartOffset string

const (
	// Earliest starts at the oldest offset each partition still has.
	Earliest StartOffset = "earliest"
	// Latest starts at the end: only records produced after the start.
	Latest StartOffset = "latest"
)

// Config configures a Source.
type Config struct {
	// Topic is the input topic. Required.
	Topic string
	// StartOffset applies to a job without checkpoint (default Earliest).
	// Partitions added to the topic later always start at their earliest.
	StartOffset StartOffset
	// BatchInterval is the job's batch interval, which turns rates into
	// batch sizes. Required with MaxRatePerPartition or Backpressure.
	BatchInterval time.Duration
	// MaxRatePerPartition caps every partition at this many records per
	// second of batch interval (0: no cap), Spark's maxRatePerPartition.
	MaxRatePerPartition int64
	// PartitionFetchBytes is the most a fetch returns per partition
	// (default 8 MiB).
	PartitionFetchBytes int32
}

func (c Config) withDefaults() Config {
	if c.StartOffset == "" {
		c.StartOffset = Earliest
	}
	if c.PartitionFetchBytes == 0 {
		c.PartitionFetchBytes = 8 << 20
	}
	return c
}

// Validate reports settings that cannot work, saying what to change.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Topic == "" {
		errs = append(errs, errors.New("ingest: the input topic is empty: set it"))
	}
	if c.StartOffset != Earliest && c.StartOffset != Latest {
		errs = append(errs, fmt.Errorf("ingest: start offset %q: use %q or %q", c.StartOffset, Earliest, Latest))
	}
	if c.MaxRatePerPartition < 0 {
		errs = append(errs, fmt.Errorf("ingest: max rate per partition %d: use 0 (no cap) or a positive rate", c.MaxRatePerPartition))
	}
	if c.MaxRatePerPartition > 0 && c.BatchInterval <= 0 {
		errs = append(errs, errors.New("ingest: a max rate per partition needs the batch interval"))
	}
	if c.PartitionFetchBytes < 1024 {
		errs = append(errs, fmt.Errorf("ingest: partition fetch bytes %d: use at least 1024", c.PartitionFetchBytes))
	}
	return errors.Join(errs...)
}

// OffsetGapError reports planned offsets the broker no longer has.
type OffsetGapError struct {
	Topic     string
	Partition int32
	Want      int64 // the first offset the plan needs
	Got       int64 // the first offset the broker still has
}

// Is makes an OffsetGapError permanent: retrying cannot bring records back.
func (e *OffsetGapError) Is(target error) bool { return target == microbatch.ErrPermanent }

func (e *OffsetGapError) Error() string {
	return fmt.Sprintf("ingest: %s[%d]: offsets from %d are needed but the partition starts at %d "+
		"(deleted by retention or truncation): the records are gone; reset the job's checkpoint to start over",
		e.Topic, e.Partition, e.Want, e.Got)
}

// Source reads a Kafka topic as offset-ranged batches. It implements
// microbatch.Source.
type Source struct {
	cl    *kgo.Client
	adm   *kadm.Client
	cfg   Config
	log   zerolog.Logger
	decom kgo.Decompressor
	rate  *RateEstimator

	mu struct {
		sync.Mutex
		topicID [16]byte
		leaders map[int32]int32
		lastCut []CutPosition
	}
}

// CutPosition is where the last Cut left one partition.
type CutPosition struct {
	Partition int32
	Until     int64 // the end of the planned batch: the next batch starts here
	End       int64 // the partition's last stable offset when it was cut
}

// LastCut returns the positions of the last Cut, in partition order (nil
// before the first). End-Until records were left for later batches by a
// rate cap or backpressure; records produced since the cut add to the lag.
func (s *Source) LastCut() []CutPosition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.lastCut)
}

// Option configures a Source.
type Option func(*Source)

// WithLogger sets the source's logger.
func WithLogger(l zerolog.Logger) Option {
	return func(s *Source) { s.log = l.With().Str("component", "ingest").Logger() }
}

// WithBackpressure lets the estimator bound every batch's size, like Spark's
// spark.streaming.backpressure.enabled; feed it the job's batch statistics.
func WithBackpressure(r *RateEstimator) Option { return func(s *Source) { s.rate = r } }

// New returns a Source reading with cl, which must be configured for
// read_committed isolation (kgo.FetchIsolationLevel(kgo.ReadCommitted())).
func New(cl *kgo.Client, cfg Config, opts ...Option) (*Source, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{cl: cl, adm: kadm.NewClient(cl), cfg: cfg, log: zerolog.Nop(), decom: kgo.DefaultDecompressor()}
	for _, o := range opts {
		o(s)
	}
	if s.rate != nil && cfg.BatchInterval <= 0 {
		return nil, errors.New("ingest: backpressure needs the batch interval")
	}
	return s, nil
}

// Topic implements microbatch.Source.
func (s *Source) Topic() string { return s.cfg.Topic }

// Cut implements microbatch.Source: it plans the next batch of every
// partition from the end of after.
func (s *Source) Cut(ctx context.Context, after []microbatch.Range) ([]microbatch.Range, error) {
	if err := s.refreshMetadata(ctx); err != nil {
		return nil, err
	}
	ends, err := s.adm.ListCommittedOffsets(ctx, s.cfg.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("ingest: list end offsets of %s: %w", s.cfg.Topic, err)
	}
	starts, err := s.adm.ListStartOffsets(ctx, s.cfg.Topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("ingest: list start offsets of %s: %w", s.cfg.Topic, err)
	}
	prev := make(map[int32]int64, len(after))
	for _, r := range after {
		prev[r.Partition] = r.Until
	}
	fresh := len(after) == 0
	var capPerPartition int64 = -1
	if s.cfg.MaxRatePerPartition > 0 {
		capPerPartition = max(1, s.cfg.MaxRatePerPartition*int64(s.cfg.BatchInterval)/int64(time.Second))
	}
	var partitions []int32
	ends.Each(func(o kadm.ListedOffset) { partitions = append(partitions, o.Partition) })
	slices.Sort(partitions)
	if s.rate != nil && len(partitions) > 0 {
		if limit, ok := s.rate.Limit(); ok {
			perPartition := max(1, int64(limit*s.cfg.BatchInterval.Seconds())/int64(len(partitions)))
			if capPerPartition < 0 || perPartition < capPerPartition {
				capPerPartition = perPartition
			}
		}
	}
	out := make([]microbatch.Range, 0, len(partitions))
	cut := make([]CutPosition, 0, len(partitions))
	for _, p := range partitions {
		end, _ := ends.Lookup(s.cfg.Topic, p)
		start, _ := starts.Lookup(s.cfg.Topic, p)
		from, known := prev[p]
		switch {
		case known && from < start.Offset:
			return nil, &OffsetGapError{Topic: s.cfg.Topic, Partition: p, Want: from, Got: start.Offset}
		case known && from > end.Offset:
			return nil, fmt.Errorf("ingest: %s[%d]: the checkpoint is at offset %d but the partition ends at %d: "+
				"was the topic recreated? reset the job's checkpoint to start over", s.cfg.Topic, p, from, end.Offset)
		case !known && fresh && s.cfg.StartOffset == Latest:
			from = end.Offset
		case !known:
			from = start.Offset
		}
		until := end.Offset
		if capPerPartition >= 0 {
			until = min(until, from+capPerPartition)
		}
		out = append(out, microbatch.Range{Topic: s.cfg.Topic, Partition: p, From: from, Until: until})
		cut = append(cut, CutPosition{Partition: p, Until: until, End: end.Offset})
	}
	for _, r := range after {
		if _, ok := ends.Lookup(s.cfg.Topic, r.Partition); !ok {
			return nil, fmt.Errorf("ingest: %s[%d] disappeared: partitions cannot be removed from a running job", s.cfg.Topic, r.Partition)
		}
	}
	s.mu.Lock()
	s.mu.lastCut = cut
	s.mu.Unlock()
	return out, nil
}

func (s *Source) refreshMetadata(ctx context.Context) error {
	md, err := s.adm.Metadata(ctx, s.cfg.Topic)
	if err != nil {
		return fmt.Errorf("ingest: metadata of %s: %w", s.cfg.Topic, err)
	}
	td, ok := md.Topics[s.cfg.Topic]
	if !ok || td.Err != nil {
		if td.Err != nil {
			err = td.Err
		}
		return fmt.Errorf("ingest: topic %s: %w (does it exist?)", s.cfg.Topic, errors.Join(err, kerr.UnknownTopicOrPartition))
	}
	leaders := make(map[int32]int32, len(td.Partitions))
	for p, d := range td.Partitions {
		leaders[p] = d.Leader
	}
	s.mu.Lock()
	s.mu.topicID, s.mu.leaders = td.ID, leaders
	s.mu.Unlock()
	return nil
}

// Read implements microbatch.Source. Partitions are fetched concurrently and
// emitted one after the other, in partition order, so the record order is
// the same on every read of the same ranges.
func (s *Source) Read(ctx context.Context, ranges []microbatch.Range, emit func(microbatch.Record)) error {
	ranges = slices.Clone(ranges)
	slices.SortFunc(ranges, func(a, b microbatch.Range) int { return int(a.Partition) - int(b.Partition) })
	s.mu.Lock()
	needMeta := s.mu.leaders == nil
	s.mu.Unlock()
	if needMeta {
		if err := s.refreshMetadata(ctx); err != nil {
			return err
		}
	}
	results := make([][]microbatch.Record, len(ranges))
	errs := make([]error, len(ranges))
	var wg sync.WaitGroup
	for i, r := range ranges {
		if r.From >= r.Until {
			continue
		}
		wg.Go(func() { results[i], errs[i] = s.readRange(ctx, r) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, recs := range results {
		for _, rec := range recs {
			emit(rec)
		}
	}
	return nil
}

// readRange fetches the records of one partition in [r.From, r.Until).
func (s *Source) readRange(ctx context.Context, r microbatch.Range) ([]microbatch.Record, error) {
	recs := make([]microbatch.Record, 0, r.Until-r.From)
	pos := r.From
	stalls := 0
	for pos < r.Until {
		resp, err := s.fetch(ctx, r.Partition, pos)
		if err != nil {
			return nil, err
		}
		rp := findPartition(resp, r.Partition)
		if rp == nil {
			return nil, fmt.Errorf("ingest: fetch %s[%d]: no partition in response", s.cfg.Topic, r.Partition)
		}
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset:         pos,
			IsolationLevel: kgo.ReadCommitted(),
			Topic:          s.cfg.Topic,
			Partition:      r.Partition,
		}, rp, s.decom, nil)
		switch {
		case errors.Is(fp.Err, kerr.OffsetOutOfRange):
			return nil, &OffsetGapError{Topic: s.cfg.Topic, Partition: r.Partition, Want: pos, Got: fp.LogStartOffset}
		case fp.Err != nil && kerr.IsRetriable(fp.Err):
			s.log.Warn().Err(fp.Err).Int32("partition", r.Partition).Msg("retriable fetch error; refreshing metadata")
			if err := s.backoff(ctx, &stalls); err != nil {
				return nil, err
			}
			if err := s.refreshMetadata(ctx); err != nil {
				s.log.Warn().Err(err).Msg("refresh metadata")
			}
			continue
		case fp.Err != nil:
			return nil, fmt.Errorf("ingest: fetch %s[%d] at %d: %w", s.cfg.Topic, r.Partition, pos, fp.Err)
		}
		for _, rec := range fp.Records {
			if rec.Offset >= r.Until {
				break
			}
			recs = append(recs, microbatch.Record{Partition: r.Partition, Offset: rec.Offset, Value: rec.Value})
		}
		if next <= pos {
			// Nothing past pos yet: the range was planned below the last
			// stable offset, so this only happens while a broker recovers.
			if err := s.backoff(ctx, &stalls); err != nil {
				return nil, err
			}
			continue
		}
		stalls = 0
		pos = next
	}
	return recs, nil
}

func (s *Source) backoff(ctx context.Context, stalls *int) error {
	*stalls++
	d := min(time.Duration(*stalls)*50*time.Millisecond, 2*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s *Source) fetch(ctx context.Context, partition int32, offset int64) (*kmsg.FetchResponse, error) {
	s.mu.Lock()
	leader, ok := s.mu.leaders[partition]
	topicID := s.mu.topicID
	s.mu.Unlock()
	if !ok || leader < 0 {
		return nil, fmt.Errorf("ingest: %s[%d] has no leader", s.cfg.Topic, partition)
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 250
	req.MinBytes = 1
	req.MaxBytes = s.cfg.PartitionFetchBytes
	req.IsolationLevel = 1
	req.SessionEpoch = -1 // no fetch session: every request is complete
	t := kmsg.NewFetchRequestTopic()
	t.Topic, t.TopicID = s.cfg.Topic, topicID
	p := kmsg.NewFetchRequestTopicPartition()
	p.Partition = partition
	p.FetchOffset = offset
	p.PartitionMaxBytes = s.cfg.PartitionFetchBytes
	p.CurrentLeaderEpoch = -1
	p.LogStartOffset = -1
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	resp, err := s.cl.Broker(int(leader)).RetriableRequest(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("ingest: fetch %s[%d] at %d: %w", s.cfg.Topic, partition, offset, err)
	}
	fr := resp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(fr.ErrorCode); err != nil {
		return nil, fmt.Errorf("ingest: fetch %s[%d] at %d: %w", s.cfg.Topic, partition, offset, err)
	}
	return fr, nil
}

func findPartition(resp *kmsg.FetchResponse, partition int32) *kmsg.FetchResponseTopicPartition {
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			if resp.Topics[i].Partitions[j].Partition == partition {
				return &resp.Topics[i].Partitions[j]
			}
		}
	}
	return nil
}
