package microbatch

import (
	"context"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// epoch is the virtual start of test jobs: with a one-second interval, batch n
// runs at n seconds after the Unix epoch.
var epoch = time.Unix(0, 0).UTC()

// newTestJob returns a job with a one-second interval, a VirtualClock at epoch
// and a MemoryStore, that stops after the given number of batches.
func newTestJob(batches uint64, opts ...Option) *Job {
	j := NewJob(time.Second, append([]Option{WithClock(NewVirtualClock(epoch)), WithBatchLimit(batches)}, opts...)...)
	j.Checkpoint(NewMemoryStore())
	return j
}

// collect appends every batch of s to out as "id:repr", e.g. "3:[('a', 1)]".
func collect[T any](s *Stream[T], out *[]string) {
	s.ForeachBatch(func(_ context.Context, b BatchInfo, batch []T) error {
		*out = append(*out, strconv.FormatUint(b.ID, 10)+":"+repr(batch))
		return nil
	})
}

// repr returns v as Python's repr prints it.
func repr(v any) string {
	var b strings.Builder
	pyRepr(&b, reflect.ValueOf(v))
	return b.String()
}

// ints queues one batch of ints per argument.
func ints(j *Job, batches ...[]int) *Stream[int] { return QueueStream(j, batches) }

// words queues one batch per argument: the argument's space-separated words.
func words(j *Job, batches ...string) *Stream[string] {
	var q [][]string
	for _, b := range batches {
		q = append(q, strings.Fields(b))
	}
	return QueueStream(j, q)
}

// pairs queues one batch per argument: "a=1 b=2" is the batch [('a', 1), ('b', 2)].
func pairs(j *Job, batches ...string) *Stream[Pair[string, int]] {
	return QueueStream(j, pairBatches(batches...))
}

func pairBatches(batches ...string) [][]Pair[string, int] {
	var q [][]Pair[string, int]
	for _, b := range batches {
		var batch []Pair[string, int]
		for _, f := range strings.Fields(b) {
			k, v, _ := strings.Cut(f, "=")
			n, err := strconv.Atoi(v)
			if err != nil {
				panic("pairs: bad value in " + f)
			}
			batch = append(batch, KV(k, n))
		}
		q = append(q, batch)
	}
	return q
}

func add(a, b int) int { return a + b }
func sub(a, b int) int { return a - b }

// runJob runs j to its batch limit and fails the test on error.
func runJob(t testing.TB, j *Job) {
	t.Helper()
	if err := j.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// txnSink is the transactional sink of the tests.
type txnSink = MemorySink

func newTxnSink() *txnSink { return NewMemorySink() }

// values returns the values of all messages, batch by batch.
func values(s *MemorySink) []string {
	var out []string
	for _, b := range s.Batches() {
		for _, m := range s.Messages(b.ID) {
			out = append(out, string(m.Value))
		}
	}
	return out
}
