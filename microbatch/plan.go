package microbatch

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Range is the offsets [From, Until) of one partition of an input topic that a
// batch covers. Until−From may exceed the records read: transaction markers,
// aborted records and compacted gaps take offsets but are no records.
type Range struct {
	Topic     string
	Partition int32
	From      int64
	Until     int64
	// TopicID identifies the topic beyond its name (Kafka's topic ID): a
	// topic deleted and created again has another. Empty when the source
	// has none.
	TopicID string
}

// Plan defines batch ID completely: its batch time and the input ranges.
// Plans are recorded before their batch runs and are the lineage from which
// any batch is recomputed.
type Plan struct {
	ID     uint64
	Time   time.Time
	Ranges []Range
}

// OffsetsHeader renders the ranges as "partition:from-until,…", the value of
// the dstream-offsets header on every output record.
func (p Plan) OffsetsHeader() string {
	var b strings.Builder
	for i, r := range p.Ranges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(r.Partition)))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(r.From, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatInt(r.Until, 10))
	}
	return b.String()
}

// ParseOffsetsHeader is the inverse of OffsetsHeader for the given topic.
func ParseOffsetsHeader(topic, h string) ([]Range, error) {
	if h == "" {
		return nil, nil
	}
	var out []Range
	for _, part := range strings.Split(h, ",") {
		p, span, ok := strings.Cut(part, ":")
		from, until, ok2 := strings.Cut(span, "-")
		if !ok || !ok2 {
			return nil, fmt.Errorf("offsets %q: want partition:from-until", part)
		}
		pi, err1 := strconv.ParseInt(p, 10, 32)
		fi, err2 := strconv.ParseInt(from, 10, 64)
		ui, err3 := strconv.ParseInt(until, 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || fi > ui {
			return nil, fmt.Errorf("offsets %q: want partition:from-until", part)
		}
		out = append(out, Range{Topic: topic, Partition: int32(pi), From: fi, Until: ui})
	}
	return out, nil
}

// Records counts the offsets the plan spans (an upper bound on its records).
func (p Plan) Records() int64 {
	var n int64
	for _, r := range p.Ranges {
		n += r.Until - r.From
	}
	return n
}
