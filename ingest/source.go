package ingest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
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
	// second of batch interval (0: no cap), Spark's maxRatePerPartition:
	// a batch takes at most max(1, ⌊MaxRatePerPartition × interval⌋)
	// offsets of each partition.
	MaxRatePerPartition int64
	// PartitionFetchBytes is the most a fetch returns per partition
	// (default 8 MiB). Fetches ask for about the bytes a range still needs,
	// learnt from the fetches before, up to this; a record batch larger
	// than this still comes whole.
	PartitionFetchBytes int32
	// Shard and Shards make the source read only the partitions p with
	// p mod Shards = Shard: a task of a sharded job (Shards 0: all).
	Shard, Shards int
	// OnRecreated says what Cut does when the topic was deleted and
	// created again since the last batch (its topic ID changed): Refuse
	// (the default) fails with a TopicRecreatedError; Follow starts the new
	// topic at StartOffset and logs a warning.
	OnRecreated RecreatePolicy
}

// RecreatePolicy is what a Source does about a recreated topic.
type RecreatePolicy string

const (
	// Refuse fails with a TopicRecreatedError.
	Refuse RecreatePolicy = "refuse"
	// Follow starts the new topic at the start offset, logging it.
	Follow RecreatePolicy = "follow"
)

// TopicRecreatedError reports that the input topic was deleted and created
// again: its offsets name other records now. It is permanent.
type TopicRecreatedError struct {
	Topic    string
	Was, Now string // topic IDs
}

// Is makes a TopicRecreatedError permanent.
func (e *TopicRecreatedError) Is(target error) bool { return target == microbatch.ErrPermanent }

func (e *TopicRecreatedError) Error() string {
	return fmt.Sprintf("ingest: topic %s was deleted and created again (its id changed from %s to %s): "+
		"the planned offsets name other records now; set DSTREAM_ON_TOPIC_RECREATED=follow to start the new topic at "+
		"DSTREAM_START_OFFSET, or `dstream reset --yes` to start the job over", e.Topic, e.Was, e.Now)
}

func (c Config) withDefaults() Config {
	if c.StartOffset == "" {
		c.StartOffset = Earliest
	}
	if c.PartitionFetchBytes == 0 {
		c.PartitionFetchBytes = 8 << 20
	}
	if c.OnRecreated == "" {
		c.OnRecreated = Refuse
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
	if c.Shards < 0 || c.Shard < 0 || (c.Shards > 0 && c.Shard >= c.Shards) {
		errs = append(errs, fmt.Errorf("ingest: shard %d of %d: use 0 ≤ shard < shards", c.Shard, c.Shards))
	}
	if c.OnRecreated != Refuse && c.OnRecreated != Follow {
		errs = append(errs, fmt.Errorf("ingest: on recreated %q: use %q or %q", c.OnRecreated, Refuse, Follow))
	}
	if c.MaxRatePerPartition < 0 {
		errs = append(errs, fmt.Errorf("ingest: max rate per partition %d: use 0 (no cap) or a positive rate", c.MaxRatePerPartition))
	}
	if c.MaxRatePerPartition > 0 && c.BatchInterval <= 0 {
		errs = append(errs, errors.New("ingest: a max rate per partition needs the batch interval"))
	}
	if c.BatchInterval < 0 {
		errs = append(errs, fmt.Errorf("ingest: batch interval %s: use a positive interval", c.BatchInterval))
	}
	if c.PartitionFetchBytes < 1024 {
		errs = append(errs, fmt.Errorf("ingest: partition fetch bytes %d: use at least 1024", c.PartitionFetchBytes))
	}
	return errors.Join(errs...)
}

// OffsetGapError reports planned offsets the broker no longer has: the
// partition's log start moved past them (retention, DeleteRecords).
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
		"(deleted by retention or truncation): the records are gone; `dstream reset --yes` starts the job over",
		e.Topic, e.Partition, e.Want, e.Got)
}

// Source reads a Kafka topic as offset-ranged batches. It implements
// microbatch.Source.
type Source struct {
	cl    *kgo.Client
	cfg   Config
	log   zerolog.Logger
	decom kgo.Decompressor
	rate  *RateEstimator
	// relist is how long a cut may reuse listed offsets (tests lengthen it).
	relist time.Duration

	// The last fetch's bytes per offset and largest record batch
	// (float64 bits), which size the next fetches.
	perOffset, largestBatch atomic.Uint64

	mu struct {
		sync.Mutex
		topicID [16]byte
		leaders map[int32]int32
		lastCut []CutPosition
		listed  listed
		// kept holds, by partition, what a read fetched past its range.
		kept map[int32]keptFetch
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
// A batch then takes max(1, ⌊limit × interval⌋) offsets in all, shared
// among the partitions in proportion to what each may take (its backlog,
// within MaxRatePerPartition).
func WithBackpressure(r *RateEstimator) Option { return func(s *Source) { s.rate = r } }

// New returns a Source reading with cl, which must be configured for
// read_committed isolation (kgo.FetchIsolationLevel(kgo.ReadCommitted())).
func New(cl *kgo.Client, cfg Config, opts ...Option) (*Source, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{cl: cl, cfg: cfg, log: zerolog.Nop(), decom: kgo.DefaultDecompressor(), relist: relist}
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
// partition from the end of after, in partition order. A partition that
// after does not name (the topic grew) starts at its earliest offset. While
// the rate cap bounds every range, Cut reuses the offsets it listed up to a
// second before (see cutCapped): partitions added meanwhile come a second
// late, and records deleted meanwhile are reported by Read.
func (s *Source) Cut(ctx context.Context, after []microbatch.Range) ([]microbatch.Range, error) {
	if out, ok := s.cutCapped(after); ok {
		return out, nil
	}
	leaders, starts, ends, err := s.offsets(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.mu.listed = listed{at: time.Now(), leaders: leaders, starts: starts, ends: ends}
	s.mu.Unlock()
	id := s.topicID()
	if was := recordedID(after); was != "" && id != "" && was != id {
		if s.cfg.OnRecreated != Follow {
			return nil, &TopicRecreatedError{Topic: s.cfg.Topic, Was: was, Now: id}
		}
		s.log.Warn().Str("topic", s.cfg.Topic).Str("was", was).Str("now", id).Str("start_offset", string(s.cfg.StartOffset)).
			Msg("the input topic was deleted and created again: following it from the start offset, as DSTREAM_ON_TOPIC_RECREATED=follow says")
		after = nil
	}
	partitions := slices.Sorted(maps.Keys(leaders))
	partitions = slices.DeleteFunc(partitions, func(p int32) bool { return !s.reads(p) })
	prev := make(map[int32]int64, len(after))
	for _, r := range after {
		if !slices.Contains(partitions, r.Partition) {
			return nil, fmt.Errorf("ingest: %s[%d] disappeared: partitions cannot be removed from a running job", s.cfg.Topic, r.Partition)
		}
		prev[r.Partition] = r.Until
	}
	fresh := len(after) == 0
	out := make([]microbatch.Range, 0, len(partitions))
	cut := make([]CutPosition, 0, len(partitions))
	for _, p := range partitions {
		start, end := starts[p], ends[p]
		from, known := prev[p]
		switch {
		case known && from < start:
			return nil, &OffsetGapError{Topic: s.cfg.Topic, Partition: p, Want: from, Got: start}
		case known && from > end:
			return nil, fmt.Errorf("ingest: %s[%d]: the checkpoint is at offset %d but the partition ends at %d: "+
				"was the topic recreated or truncated? `dstream reset --yes` starts the job over (%w)",
				s.cfg.Topic, p, from, end, microbatch.ErrPermanent)
		case !known && fresh && s.cfg.StartOffset == Latest:
			from = end
		case !known:
			from = start
		}
		// A log start listed after the end (records deleted in between)
		// may pass it: the range is empty then.
		out = append(out, microbatch.Range{Topic: s.cfg.Topic, Partition: p, From: from, Until: max(from, end), TopicID: id})
		cut = append(cut, CutPosition{Partition: p, End: end})
	}
	s.bound(out)
	for i := range out {
		cut[i].Until = out[i].Until
	}
	s.mu.Lock()
	s.mu.lastCut = cut
	s.mu.Unlock()
	return out, nil
}

// relist bounds how long the offsets a Cut listed stand in for new ones
// (see cutCapped): how late a cut sees partitions added to the topic, or a
// topic deleted and created again, while the job catches up.
const relist = time.Second

// listed is what the last Cut that asked the brokers learnt.
type listed struct {
	at           time.Time
	leaders      map[int32]int32
	starts, ends map[int32]int64
}

// cutCapped cuts the batch after `after` without asking the brokers when
// the answer cannot change it: the rate cap bounds every range, the ends
// listed less than relist ago lie at or past where the cap puts them (ends
// only grow), and the partitions are those of `after`. A job catching up
// then cuts a batch with no request (a cut asked for the metadata and two
// lists of offsets: three requests a batch to a broker). Backpressure,
// which shares a budget by the partitions' lags, always asks.
func (s *Source) cutCapped(after []microbatch.Range) ([]microbatch.Range, bool) {
	if s.cfg.MaxRatePerPartition <= 0 || s.rate != nil || len(after) == 0 {
		return nil, false
	}
	s.mu.Lock()
	l := s.mu.listed
	s.mu.Unlock()
	if l.leaders == nil || time.Since(l.at) >= s.relist || len(after) != s.owned(l.leaders) {
		return nil, false
	}
	id := s.topicID()
	c := capOf(s.cfg.MaxRatePerPartition, s.cfg.BatchInterval)
	out := make([]microbatch.Range, 0, len(after))
	cut := make([]CutPosition, 0, len(after))
	for _, r := range after {
		end, ok := l.ends[r.Partition]
		if _, led := l.leaders[r.Partition]; !ok || !led || r.TopicID != id || r.Until < l.starts[r.Partition] || end-r.Until < c {
			return nil, false
		}
		out = append(out, microbatch.Range{Topic: s.cfg.Topic, Partition: r.Partition, From: r.Until, Until: r.Until + c, TopicID: id})
		cut = append(cut, CutPosition{Partition: r.Partition, Until: r.Until + c, End: end})
	}
	s.mu.Lock()
	s.mu.lastCut = cut
	s.mu.Unlock()
	return out, true
}

// owned counts the partitions of leaders this source reads.
func (s *Source) owned(leaders map[int32]int32) int {
	n := 0
	for p := range leaders {
		if s.reads(p) {
			n++
		}
	}
	return n
}

// reads reports whether this source reads partition p: all partitions, or
// its shard's (p mod Shards = Shard).
func (s *Source) reads(p int32) bool { return s.cfg.Shards == 0 || int(p)%s.cfg.Shards == s.cfg.Shard }

// offsets returns the topic's partitions with their leaders, log starts and
// last stable offsets. It asks for the offsets from the leaders it knows
// while it asks for metadata, and asks again only if the metadata shows
// other partitions or leaders: one round trip, mostly, yet a partition
// added to the topic is in the answer as soon as the broker knows of it.
func (s *Source) offsets(ctx context.Context) (leaders map[int32]int32, starts, ends map[int32]int64, err error) {
	s.mu.Lock()
	known := s.mu.leaders
	s.mu.Unlock()
	var offErr error
	if known != nil {
		var wg sync.WaitGroup
		wg.Go(func() { starts, ends, offErr = s.partitionOffsets(ctx, known) })
		leaders, err = s.refreshMetadata(ctx)
		wg.Wait()
	} else {
		leaders, err = s.refreshMetadata(ctx)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if known == nil || offErr != nil || !maps.Equal(known, leaders) {
		starts, ends, err = s.partitionOffsets(ctx, leaders)
	}
	return leaders, starts, ends, err
}

// bound shortens the ranges, each running to its partition's end, to what
// the rate cap and the backpressure limit allow.
func (s *Source) bound(ranges []microbatch.Range) {
	if s.cfg.MaxRatePerPartition > 0 {
		c := capOf(s.cfg.MaxRatePerPartition, s.cfg.BatchInterval)
		for i := range ranges {
			ranges[i].Until = ranges[i].From + min(c, ranges[i].Until-ranges[i].From)
		}
	}
	if s.rate == nil {
		return
	}
	limit, ok := s.rate.Limit()
	if !ok {
		return
	}
	lags := make([]int64, len(ranges))
	for i, r := range ranges {
		lags[i] = r.Until - r.From
	}
	for i, n := range share(budgetOf(limit, s.cfg.BatchInterval), lags) {
		ranges[i].Until = ranges[i].From + n
	}
}

// capOf is max(1, ⌊rate × interval⌋) records, computed exactly and
// saturating at math.MaxInt64.
func capOf(rate int64, interval time.Duration) int64 {
	hi, lo := bits.Mul64(uint64(rate), uint64(interval))
	if hi >= uint64(time.Second) {
		return math.MaxInt64
	}
	q, _ := bits.Div64(hi, lo, uint64(time.Second))
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return max(1, int64(q))
}

// budgetOf is max(1, ⌊limit × interval⌋) records, saturating.
func budgetOf(limit float64, interval time.Duration) int64 {
	n := math.Floor(limit * interval.Seconds())
	if n >= math.MaxInt64 || math.IsNaN(n) {
		return math.MaxInt64
	}
	return max(1, int64(n))
}

// share divides budget records among partitions in proportion to their
// lags, Spark's backpressure split: each takes ⌊budget × lag / Σlags⌋, and
// what the rounding leaves goes one record each to the largest remainders
// (the lower partition first on a tie). The shares add up to
// min(budget, Σlags) and none exceeds its lag.
func share(budget int64, lags []int64) []int64 {
	out := slices.Clone(lags)
	var total uint64
	for _, l := range lags {
		total += uint64(l)
	}
	if total <= uint64(budget) {
		return out
	}
	rems := make([]uint64, len(lags))
	left := budget
	for i, l := range lags {
		// budget < total, so budget × l / total < l fits in 64 bits.
		hi, lo := bits.Mul64(uint64(budget), uint64(l))
		q, r := bits.Div64(hi, lo, total)
		out[i], rems[i] = int64(q), r
		left -= int64(q)
	}
	order := make([]int, len(lags))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case rems[a] > rems[b]:
			return -1
		case rems[a] < rems[b]:
			return 1
		}
		return 0
	})
	for _, i := range order[:left] {
		out[i]++
	}
	return out
}

// refreshMetadata asks the broker (not the client's cache, which may be
// seconds old) for the topic's partitions and returns their leaders. It fails permanently if the topic's ID changed:
// a topic deleted and recreated under the same name holds other records
// under the offsets already planned.
func (s *Source) refreshMetadata(ctx context.Context) (map[int32]int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(s.cfg.Topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, s.cl)
	if err != nil {
		return nil, fmt.Errorf("ingest: metadata of %s: %w", s.cfg.Topic, err)
	}
	var td *kmsg.MetadataResponseTopic
	for i := range resp.Topics {
		if t := resp.Topics[i].Topic; t != nil && *t == s.cfg.Topic {
			td = &resp.Topics[i]
		}
	}
	if td == nil {
		return nil, fmt.Errorf("ingest: topic %s: %w (does it exist?)", s.cfg.Topic, kerr.UnknownTopicOrPartition)
	}
	if err := kerr.ErrorForCode(td.ErrorCode); err != nil {
		return nil, fmt.Errorf("ingest: topic %s: %w (does it exist?)", s.cfg.Topic, err)
	}
	leaders := make(map[int32]int32, len(td.Partitions))
	for _, p := range td.Partitions {
		leaders[p.Partition] = p.Leader
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.topicID, s.mu.leaders = td.TopicID, leaders // never changed once published
	return leaders, nil
}

// topicID returns the topic's ID as the last metadata showed it, in hex
// ("" if the broker has none).
func (s *Source) topicID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.topicID == ([16]byte{}) {
		return ""
	}
	return hex.EncodeToString(s.mu.topicID[:])
}

// recordedID returns the topic ID the ranges were cut with ("" if none).
func recordedID(ranges []microbatch.Range) string {
	for _, r := range ranges {
		if r.TopicID != "" {
			return r.TopicID
		}
	}
	return ""
}
