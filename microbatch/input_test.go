package microbatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// memSource is a replayable Source over in-memory partitions: each cut takes
// up to perBatch more records of every partition.
type memSource struct {
	topic      string
	partitions [][]string
	perBatch   int64
}

func (s *memSource) Topic() string { return s.topic }

func (s *memSource) Cut(_ context.Context, after []Range) ([]Range, error) {
	var out []Range
	for p, records := range s.partitions {
		from := int64(0)
		for _, r := range after {
			if r.Partition == int32(p) {
				from = r.Until
			}
		}
		out = append(out, Range{Topic: s.topic, Partition: int32(p), From: from, Until: min(from+s.perBatch, int64(len(records)))})
	}
	return out, nil
}

func (s *memSource) Read(_ context.Context, ranges []Range, emit func(Record)) error {
	for _, r := range ranges {
		for off := r.From; off < r.Until; off++ {
			emit(Record{Partition: r.Partition, Offset: off, Value: []byte(s.partitions[r.Partition][off])})
		}
	}
	return nil
}

func TestLinesAndRecords(t *testing.T) {
	src := &memSource{topic: "logs", partitions: [][]string{{"a", "b", "c", "d"}, {"x", "y", "z"}}, perBatch: 2}
	j := newTestJob(3)
	var lines, records, plans []string
	collect(j.Lines(src), &lines)
	Map(j.Records(&memSource{topic: "other", partitions: src.partitions, perBatch: 3}), func(r Record) string {
		return fmt.Sprintf("%d/%d:%s", r.Partition, r.Offset, r.Value)
	}).ForeachBatch(func(_ context.Context, b BatchInfo, batch []string) error {
		records = append(records, strings.Join(batch, " "))
		var rs []string
		for _, r := range b.Ranges {
			rs = append(rs, fmt.Sprintf("%s/%d:%d-%d", r.Topic, r.Partition, r.From, r.Until))
		}
		plans = append(plans, strings.Join(rs, " "))
		return nil
	})
	runJob(t, j)
	if want := []string{"1:['a', 'b', 'x', 'y']", "2:['c', 'd', 'z']", "3:[]"}; !slices.Equal(lines, want) {
		t.Errorf("lines:\n%q\nwant\n%q", lines, want)
	}
	if want := []string{"0/0:a 0/1:b 0/2:c 1/0:x 1/1:y 1/2:z", "0/3:d", ""}; !slices.Equal(records, want) {
		t.Errorf("records:\n%q\nwant\n%q", records, want)
	}
	// A job's plan covers all its inputs, each continuing where it stopped.
	if want := []string{
		"logs/0:0-2 logs/1:0-2 other/0:0-3 other/1:0-3",
		"logs/0:2-4 logs/1:2-3 other/0:3-4 other/1:3-3",
		"logs/0:4-4 logs/1:3-3 other/0:4-4 other/1:3-3",
	}; !slices.Equal(plans, want) {
		t.Errorf("plans:\n%q\nwant\n%q", plans, want)
	}
}

// appendingSource is a memSource that is also a RecordAppender.
type appendingSource struct {
	memSource
	appends int
}

func (s *appendingSource) AppendRecords(ctx context.Context, ranges []Range, dst []Record) ([]Record, error) {
	s.appends++
	err := s.Read(ctx, ranges, func(r Record) { dst = append(dst, r) })
	return dst, err
}

// TestRecordsUseAppendRecords checks that a Records input of a
// RecordAppender is read with AppendRecords, to the same batches, and that a
// Lines input of it is not (its elements are converted one by one).
func TestRecordsUseAppendRecords(t *testing.T) {
	parts := [][]string{{"a", "b", "c"}, {"x"}}
	records := &appendingSource{memSource: memSource{topic: "r", partitions: parts, perBatch: 2}}
	lines := &appendingSource{memSource: memSource{topic: "l", partitions: parts, perBatch: 2}}
	j := newTestJob(2)
	var got, gotLines []string
	collect(Map(j.Records(records), func(r Record) string { return fmt.Sprintf("%d/%d:%s", r.Partition, r.Offset, r.Value) }), &got)
	collect(j.Lines(lines), &gotLines)
	runJob(t, j)
	if want := []string{"1:['0/0:a', '0/1:b', '1/0:x']", "2:['0/2:c']"}; !slices.Equal(got, want) {
		t.Errorf("records %q, want %q", got, want)
	}
	if want := []string{"1:['a', 'b', 'x']", "2:['c']"}; !slices.Equal(gotLines, want) {
		t.Errorf("lines %q, want %q", gotLines, want)
	}
	if records.appends != 2 || lines.appends != 0 {
		t.Errorf("AppendRecords called %d times for Records and %d for Lines; want 2 and 0", records.appends, lines.appends)
	}
}

func TestTwoInputsOnOneTopic(t *testing.T) {
	j := newTestJob(1)
	src := &memSource{topic: "logs"}
	j.Lines(src).Union(j.Lines(src)).ForeachBatch(func(context.Context, BatchInfo, []string) error { return nil })
	var be *BuildError
	if err := j.Start(context.Background()); !errors.As(err, &be) || !strings.Contains(err.Error(), `two inputs read "logs"`) {
		t.Fatalf("Start: %v, want a BuildError about two inputs", err)
	}
}

// TestRecoveryRereadsSource checks recovery with a Source input: windows are
// rebuilt by reading the recorded ranges again.
func TestRecoveryRereadsSource(t *testing.T) {
	const s, batches = time.Second, 8
	partitions := [][]string{strings.Fields("a b a c b b a c d a e f"), strings.Fields("c c d a b e e e f a")}
	run := func(store Store, w *bytes.Buffer, until uint64) {
		var j *Job
		j = NewJob(time.Second, WithClock(NewVirtualClock(epoch)), WithStdout(w), WithListener(func(st BatchStats) {
			if st.ID >= until {
				j.Stop(true)
			}
		}))
		j.Checkpoint(store)
		lines := j.Lines(&memSource{topic: "logs", partitions: partitions, perBatch: 2})
		CountByValue(lines.Window(3*s, 2*s)).Pprint(10)
		CountByValueAndWindow(lines, 2*s, s).Pprint(10)
		UpdateStateByKey(CountByValue(lines), func(vs []int64, st int64, _ bool) (int64, bool) {
			for _, v := range vs {
				st += v
			}
			return st, true
		}).Pprint(10)
		runJob(t, j)
	}
	var want bytes.Buffer
	run(NewMemoryStore(), &want, batches)
	for k := uint64(1); k < batches; k++ {
		store := NewMemoryStore()
		var got bytes.Buffer
		run(store, &got, k)
		run(store, &got, batches)
		if got.String() != want.String() {
			t.Errorf("stopped after batch %d: output differs:\n%s", k, lineDiff(got.String(), want.String()))
		}
	}
}
