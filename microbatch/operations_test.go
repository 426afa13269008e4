package microbatch

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// snapshot copies a MemoryStore as it is: what a Redis restored from an
// older AOF holds.
func snapshot(s *MemoryStore) *MemoryStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := NewMemoryStore()
	c.mu.epoch, c.mu.committed, c.mu.planned, c.mu.prepared = s.mu.epoch, s.mu.committed, s.mu.planned, s.mu.prepared
	c.mu.graph, c.mu.base, c.mu.pendingOps = slices.Clone(s.mu.graph), s.mu.base, slices.Clone(s.mu.pendingOps)
	for id, p := range s.mu.plans {
		c.mu.plans[id] = clonePlan(p)
	}
	for op, st := range s.mu.state {
		c.mu.state[op] = &memoryState{segments: maps.Clone(st.segments), deltas: maps.Clone(st.deltas)}
	}
	return c
}

// TestHealBatchesTheStoreLost runs the recovery graph to batch k, keeps a
// copy of the store, runs on to batch k+lost, then restarts on the copy: a
// Redis that lost its last writes (k = 0: all of them). The new run must
// recompute the lost batches' state from the sink's markers without writing
// them again (the sink refuses a batch written twice) and go on, so that the
// sink holds exactly an uninterrupted run's output.
func TestHealBatchesTheStoreLost(t *testing.T) {
	_, wantWritten := uninterrupted(t)
	for k := uint64(0); k+1 < recoveryBatches; k++ {
		for _, lost := range []uint64{1, 3} {
			if k+lost >= recoveryBatches {
				continue
			}
			t.Run(fmt.Sprintf("after batch %d, %d lost", k, lost), func(t *testing.T) {
				store, sink := NewMemoryStore(), newTxnSink()
				if k > 0 {
					runJob(t, recoveryJob(store, io.Discard, sink, k))
				}
				old := snapshot(store)
				runJob(t, recoveryJob(store, io.Discard, sink, k+lost))
				var healed []uint64
				j := recoveryJob(old, io.Discard, sink, recoveryBatches, WithListener(func(s BatchStats) {
					if s.Healed {
						healed = append(healed, s.ID)
					}
				}))
				runJob(t, j)
				if want := seq(k+1, k+lost); !slices.Equal(healed, want) {
					t.Errorf("healed batches %v, want %v", healed, want)
				}
				if got := values(sink); !slices.Equal(got, wantWritten) {
					t.Errorf("written output differs from an uninterrupted run:\n%s",
						lineDiff(strings.Join(got, "\n"), strings.Join(wantWritten, "\n")))
				}
			})
		}
	}
}

func seq(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestHealRefusesWhatCannotBeExplained: a sink whose markers jump (batches
// in between unknown) is refused with a StateLostError, not healed.
func TestHealRefusesWhatCannotBeExplained(t *testing.T) {
	store, sink := NewMemoryStore(), newTxnSink()
	runJob(t, recoveryJob(store, io.Discard, sink, 5))
	sink.Forget(0)
	for _, id := range []uint64{3, 4} {
		if err := sink.WriteBatch(context.Background(), BatchInfo{Plan: Plan{ID: id}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	err := recoveryJob(NewMemoryStore(), io.Discard, sink, recoveryBatches).Run(context.Background())
	var lost *StateLostError
	if !errors.As(err, &lost) || !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "jump to batch 3 after batch 0") {
		t.Fatalf("Run: %v, want a permanent StateLostError about the jump", err)
	}
}

// changeInput is the input of the job-change tests: words, a batch each.
var changeInput = func() [][]string {
	words := []string{"a", "b", "c", "d", "e"}
	var out [][]string
	for b := range 16 {
		var batch []string
		for i := range 3 + b%4 {
			batch = append(batch, words[(b*7+i*3)%len(words)])
		}
		out = append(out, batch)
	}
	return out
}()

// changeGraph is a job with a windowed and an unwindowed stateful operator,
// both named; every output goes to sink as "name@batch key=value".
func changeGraph(j *Job, sink Sink, window, slide time.Duration) {
	ones := Map(QueueStream(j, changeInput), func(w string) Pair[string, int] { return KV(w, 1) })
	counts := ReduceByKeyAndWindow(ones, add, sub, window, slide, func(p Pair[string, int]) bool { return p.Value > 0 }).Named("counts")
	totals := UpdateStateByKey(ones, sumUpdate).Named("totals")
	for name, s := range map[string]*Stream[Pair[string, int]]{"counts": counts, "totals": totals} {
		Write(s, sink, func(b BatchInfo, p Pair[string, int]) Message {
			return Message{Value: fmt.Appendf(nil, "%s@%d %s=%d", name, b.ID, p.Key, p.Value)}
		})
	}
}

func changeJob(store Store, sink Sink, interval time.Duration, until uint64, build func(j *Job)) *Job {
	j := NewJob(interval, WithClock(NewVirtualClock(epoch)), WithBatchLimit(until), WithStdout(io.Discard))
	j.Checkpoint(store)
	build(j)
	return j
}

// batchesAfter returns the sink's messages of the batches after `after`, by
// batch, each batch's sorted: a rebuilt window may list its keys in another
// order than a fresh run.
func batchesAfter(s *MemorySink, after uint64) map[uint64][]string {
	out := map[uint64][]string{}
	for _, b := range s.Batches() {
		if b.ID <= after {
			continue
		}
		var vs []string
		for _, m := range s.Messages(b.ID) {
			vs = append(vs, string(m.Value))
		}
		slices.Sort(vs)
		out[b.ID] = vs
	}
	return out
}

// TestWindowChangeIsRebuilt changes a running job's window and slide (as a
// helm upgrade of config.window does): the restart rebuilds the windowed
// state from the recorded plans, and from then on the output equals a run
// that had the new window from the start. The totals, which do not depend on
// the window, carry on.
func TestWindowChangeIsRebuilt(t *testing.T) {
	const s = time.Second
	for _, test := range []struct {
		name                string
		window, slide       time.Duration
		newWindow, newSlide time.Duration
		stopAfter, runUntil uint64
	}{
		{"longer window and slide", 3 * s, s, 6 * s, 2 * s, 5, 14},
		{"shorter window", 6 * s, 2 * s, 2 * s, 2 * s, 6, 14},
		{"slide only, at an odd batch", 4 * s, 2 * s, 4 * s, s, 7, 14},
		// Across the forms: a window of more than recomputedSlides slides
		// is kept incrementally, a shorter one recomputed at every slide.
		{"longer window, now kept incrementally", 3 * s, s, 6 * s, s, 6, 14},
		{"shorter window, now recomputed", 6 * s, s, 3 * s, s, 6, 14},
	} {
		t.Run(test.name, func(t *testing.T) {
			fresh := newTxnSink()
			runJob(t, changeJob(NewMemoryStore(), fresh, s, test.runUntil, func(j *Job) { changeGraph(j, fresh, test.newWindow, test.newSlide) }))
			store, sink := NewMemoryStore(), newTxnSink()
			runJob(t, changeJob(store, sink, s, test.stopAfter, func(j *Job) { changeGraph(j, sink, test.window, test.slide) }))
			runJob(t, changeJob(store, sink, s, test.runUntil-test.stopAfter, func(j *Job) { changeGraph(j, sink, test.newWindow, test.newSlide) }))
			got, want := batchesAfter(sink, test.stopAfter), batchesAfter(fresh, test.stopAfter)
			if len(want) == 0 || !maps.EqualFunc(got, want, slices.Equal[[]string]) {
				t.Errorf("after the change the output differs from a run with the new window from the start:\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestWindowFormChangeIsRebuilt restarts a job whose window keeps its
// length while its form changes (a release that chose the other form):
// incremental, then recomputed at every slide, then incremental again.
// Each restart logs the change and rebuilds the window from the recorded
// plans, so that every run's output equals a fresh run's; the recomputed
// form stores nothing, and its first commit drops what the incremental one
// stored.
func TestWindowFormChangeIsRebuilt(t *testing.T) {
	const s = time.Second
	fresh := newTxnSink()
	runJob(t, changeJob(NewMemoryStore(), fresh, s, 15, func(j *Job) { changeGraph(j, fresh, 3*s, s) }))
	store, sink := NewMemoryStore(), newTxnSink()
	stored := func() int {
		meta, err := store.Progress(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		pairs, err := ReadState[string, int](context.Background(), store, "counts", meta.Committed)
		if err != nil {
			t.Fatal(err)
		}
		return len(pairs)
	}
	var logged strings.Builder
	for i, run := range []struct {
		incremental bool
		until       uint64
		note        string
	}{
		{true, 5, ""},
		{false, 10, `the window of \"counts\" (3/1 batches, length/slide) is now reduced from its batches at every slide`},
		{true, 15, `the window of \"counts\" (3/1 batches, length/slide) is now kept incrementally`},
	} {
		logged.Reset()
		j := NewJob(s, WithClock(NewVirtualClock(epoch)), WithBatchLimit(run.until-[]uint64{0, 5, 10}[i]), WithStdout(io.Discard),
			WithLogger(zerolog.New(&logged)))
		j.incrementalWindows = run.incremental
		j.Checkpoint(store)
		changeGraph(j, sink, 3*s, s)
		runJob(t, j)
		if run.note != "" && !strings.Contains(logged.String(), run.note) {
			t.Errorf("run %d: the log does not say %s:\n%s", i+1, run.note, logged.String())
		}
		if n := stored(); run.incremental != (n > 0) {
			t.Errorf("run %d (incremental %v): %d keys of the window stored", i+1, run.incremental, n)
		}
	}
	got, want := batchesAfter(sink, 0), batchesAfter(fresh, 0)
	if len(want) != 15 || !maps.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Errorf("the output differs from a fresh run's:\n got %v\nwant %v", got, want)
	}
}

// TestUnsafeJobChangesAreRefused restarts a job with changes its checkpoint
// cannot follow: each is refused at start with a permanent GraphChangeError
// that names the change and the command that resolves it, before any batch.
func TestUnsafeJobChangesAreRefused(t *testing.T) {
	const s = time.Second
	for _, test := range []struct {
		name     string
		interval time.Duration
		build    func(j *Job, sink Sink)
		want     []string
	}{
		{"the batch interval", 2 * s, func(j *Job, sink Sink) { changeGraph(j, sink, 4*s, 2*s) },
			[]string{"batch interval changed from 1000ms to 2000ms", "dstream reset --yes"}},
		{"a stateful operator removed", s, func(j *Job, sink Sink) {
			ones := Map(QueueStream(j, changeInput), func(w string) Pair[string, int] { return KV(w, 1) })
			ReduceByKeyAndWindow(ones, add, sub, 3*s, s, nil).Named("counts").ForeachBatch(func(context.Context, BatchInfo, []Pair[string, int]) error { return nil })
		}, []string{`stateful operator "totals" (updateStateByKey) was removed`, "dstream reset --drop-state totals --yes"}},
		{"a state type", s, func(j *Job, sink Sink) {
			ones := Map(QueueStream(j, changeInput), func(w string) Pair[string, int] { return KV(w, 1) })
			ReduceByKeyAndWindow(ones, add, sub, 3*s, s, nil).Named("counts").ForeachBatch(func(context.Context, BatchInfo, []Pair[string, int]) error { return nil })
			UpdateStateByKey(ones, func(vs []int, total float64, _ bool) (float64, bool) { return total + float64(len(vs)), true }).Named("totals").
				ForeachBatch(func(context.Context, BatchInfo, []Pair[string, float64]) error { return nil })
		}, []string{`"totals" changed from updateStateByKey of string→int`, "float64", "dstream reset --drop-state totals --yes"}},
		{"the slide feeding updateStateByKey", s, func(j *Job, sink Sink) {
			ones := Map(QueueStream(j, changeInput), func(w string) Pair[string, int] { return KV(w, 1) })
			ReduceByKeyAndWindow(ones, add, sub, 3*s, s, nil).Named("counts").ForeachBatch(func(context.Context, BatchInfo, []Pair[string, int]) error { return nil })
			UpdateStateByKey(ReduceByKey(ones.Window(2*s, 2*s), add), sumUpdate).Named("totals").ForeachBatch(func(context.Context, BatchInfo, []Pair[string, int]) error { return nil })
		}, []string{`the input of the stateful operator "totals" now produces every 2 batches, not every 1`}},
	} {
		t.Run(test.name, func(t *testing.T) {
			store, sink := NewMemoryStore(), newTxnSink()
			runJob(t, changeJob(store, sink, s, 4, func(j *Job) { changeGraph(j, sink, 3*s, s) }))
			before := len(sink.Batches())
			err := changeJob(store, sink, test.interval, 4, func(j *Job) { test.build(j, sink) }).Run(context.Background())
			var change *GraphChangeError
			if !errors.As(err, &change) || !errors.Is(err, ErrPermanent) {
				t.Fatalf("Run: %v, want a permanent GraphChangeError", err)
			}
			for _, w := range test.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if len(sink.Batches()) != before {
				t.Errorf("the refused job wrote %d batches", len(sink.Batches())-before)
			}
		})
	}
}

// TestAddedOperatorStartsFromItsInitialState adds a stateful operator with
// an initial state to a running job: it starts from that state (Spark's
// initialRDD), and a later restart from its checkpoint does not apply it
// again.
func TestAddedOperatorStartsFromItsInitialState(t *testing.T) {
	const s = time.Second
	store, sink := NewMemoryStore(), newTxnSink()
	runJob(t, changeJob(store, sink, s, 4, func(j *Job) { changeGraph(j, sink, 3*s, s) }))
	var view *StateView[string, int]
	withSeen := func(j *Job) {
		changeGraph(j, sink, 3*s, s)
		ones := Map(QueueStream(j, changeInput), func(w string) Pair[string, int] { return KV(w, 1) })
		seen := UpdateStateByKey(ones, sumUpdate, InitialState([]Pair[string, int]{KV("a", 100), KV("z", 7)})).Named("seen")
		seen.ForeachBatch(func(context.Context, BatchInfo, []Pair[string, int]) error { return nil })
		view, _ = ViewState(seen)
	}
	// Two inputs read the same queue here: the new one reads from batch 1.
	runJob(t, changeJob(store, sink, s, 2, withSeen))
	z, ok, _ := view.Get("z")
	if !ok || z != 7 {
		t.Fatalf("z = %d, %v after the operator was added with an initial state; want 7", z, ok)
	}
	a1, _, _ := view.Get("a")
	runJob(t, changeJob(store, sink, s, 2, withSeen))
	z, _, _ = view.Get("z")
	a2, _, _ := view.Get("a")
	if z != 7 || a1 < 100 || a2 < a1 {
		t.Errorf("after a restart: z = %d, a went %d → %d; want the initial state applied once", z, a1, a2)
	}
}

// offsetClock is the wall clock shifted by off: another host's clock.
type offsetClock struct{ off time.Duration }

func (c offsetClock) Now() time.Time { return time.Now().Add(c.off) }
func (c offsetClock) Wait(ctx context.Context, t time.Time) error {
	return SystemClock{}.Wait(ctx, t.Add(-c.off))
}

// TestClockSkewDoesNotStall runs a job on a host whose clock is an hour
// fast, then on one whose clock is right: the second goes on from the
// recorded timeline (batch times keep increasing by the interval) without
// waiting out the hour, and reports the skew. (The bound is a guard against
// a stall of the hour, far from the batches' pace.)
func TestClockSkewDoesNotStall(t *testing.T) {
	const interval = 100 * time.Millisecond
	store, sink := NewMemoryStore(), newTxnSink()
	run := func(clock Clock, batches uint64) *Job {
		j := NewJob(interval, WithClock(clock), WithBatchLimit(batches), WithStdout(io.Discard))
		j.Checkpoint(store)
		Write(QueueStream(j, [][]int{{1}, {2}, {3}}), sink, func(BatchInfo, int) Message { return Message{} })
		if err := j.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		ended, err := j.AwaitTerminationOrTimeout(time.Minute)
		if !ended || err != nil {
			t.Fatalf("the job did not run %d batches within a minute (%v): it waits for its clock", batches, err)
		}
		return j
	}
	run(offsetClock{time.Hour}, 3)
	j := run(SystemClock{}, 3)
	if skew := j.ClockSkew(); skew < 59*time.Minute || skew > time.Hour {
		t.Errorf("ClockSkew = %v, want about an hour", skew)
	}
	batches := sink.Batches()
	if len(batches) != 6 {
		t.Fatalf("%d batches, want 6", len(batches))
	}
	for i := 1; i < len(batches); i++ {
		if d := batches[i].Time.Sub(batches[i-1].Time); d != interval {
			t.Errorf("batch %d comes %v after batch %d, want the interval", batches[i].ID, d, batches[i-1].ID)
		}
	}
}

// addr is a key with a binary and a text form, as weblog.IP is: the
// default codec stores it binary; releases before that stored it as text.
type addr uint32

func (a addr) AppendText(b []byte) ([]byte, error) {
	return strconv.AppendUint(append(b, 'a'), uint64(a), 10), nil
}

func (a *addr) UnmarshalText(b []byte) error {
	n, err := strconv.ParseUint(strings.TrimPrefix(string(b), "a"), 10, 32)
	*a = addr(n)
	return err
}

func (a addr) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint32(b, uint32(a)), nil
}

func (a *addr) UnmarshalBinary(b []byte) error {
	if len(b) != 4 {
		return fmt.Errorf("addr of %d bytes", len(b))
	}
	*a = addr(binary.BigEndian.Uint32(b))
	return nil
}

// addrGraph is changeGraph keyed by addr.
func addrGraph(j *Job, sink Sink) {
	ones := Map(QueueStream(j, changeInput), func(w string) Pair[addr, int] { return KV(addr(w[0]), 1) })
	counts := ReduceByKeyAndWindow(ones, add, sub, 3*time.Second, time.Second, func(p Pair[addr, int]) bool { return p.Value > 0 }).Named("counts")
	totals := UpdateStateByKey(ones, sumUpdate).Named("totals")
	for name, s := range map[string]*Stream[Pair[addr, int]]{"counts": counts, "totals": totals} {
		Write(s, sink, func(b BatchInfo, p Pair[addr, int]) Message {
			return Message{Value: fmt.Appendf(nil, "%s@%d %d=%d", name, b.ID, p.Key, p.Value)}
		})
	}
}

// addrTables calls f for the tables of addrGraph, with segments of two
// keys: a commit rewrites some segments, not all.
func addrTables(j *Job, f func(*table[addr, int])) {
	for _, st := range j.stateful {
		t := st.(*statefulStream[addr, int, Pair[addr, int]]).table
		t.shift = 1
		f(t)
	}
}

// asText makes the job's tables store their keys as text: the codec an
// older release chose for addr.
func asText(j *Job) {
	addrTables(j, func(t *table[addr, int]) { t.keys = owned(Codec[addr](textCodec[addr]{})) })
}

func asBinary(j *Job) { addrTables(j, func(*table[addr, int]) {}) }

// storedKeyCodecs returns the key codec of each operator in the store's
// graph fingerprint.
func storedKeyCodecs(t *testing.T, store *MemoryStore) map[string]string {
	meta, _ := store.Progress(context.Background())
	var fp Fingerprint
	if err := json.Unmarshal(meta.Graph, &fp); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, st := range fp.State {
		out[st.Name] = st.KeyCodec
	}
	return out
}

// TestStateStoredWithOtherCodecsIsRead restarts, with the binary default
// codec, a job whose state an older release stored with keys as text: the
// restart reads it, the next commit rewrites it binary (the fingerprint
// says so, and a reader finds every key), and the output equals a run
// that never changed codecs. With a crash after the first batch's output
// and before its commit, recovery completes that batch with its delta
// alone: the delta must be in the stored parts' codec, so that the next
// restart, still reading text, reads it too.
func TestStateStoredWithOtherCodecsIsRead(t *testing.T) {
	const s = time.Second
	fresh := newTxnSink()
	runJob(t, changeJob(NewMemoryStore(), fresh, s, 10, func(j *Job) { addrGraph(j, fresh) }))
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			store, sink := NewMemoryStore(), newTxnSink()
			runJob(t, changeJob(store, sink, s, 4, func(j *Job) { addrGraph(j, sink); asText(j) }))
			if got := storedKeyCodecs(t, store); got["totals"] != "microbatch.textCodec" {
				t.Fatalf("the old release's fingerprint: %v", got)
			}
			committed := uint64(5)
			if crash {
				j := changeJob(&crashStore{Store: store, point: "before commit", batch: 5}, sink, s, 6, func(j *Job) { addrGraph(j, sink); asBinary(j) })
				if err := j.Run(context.Background()); !errors.Is(err, errCrash) {
					t.Fatalf("the crashing run returned %v", err)
				}
				committed = 6 // batch 5 completed by recovery, then 6
			}
			// One commit rewrites the whole state.
			runJob(t, changeJob(store, sink, s, 1, func(j *Job) { addrGraph(j, sink); asBinary(j) }))
			for op, codec := range storedKeyCodecs(t, store) {
				if codec != "microbatch.binaryCodec" {
					t.Errorf("%s is stored as %s after the restart's commit, want binaryCodec", op, codec)
				}
			}
			totals, err := readState[addr, int](context.Background(), store, "totals", committed, 1)
			if err != nil || len(totals) != 5 {
				t.Fatalf("read the rewritten totals: %v, %v", totals, err)
			}
			runJob(t, changeJob(store, sink, s, 10-committed, func(j *Job) { addrGraph(j, sink); asBinary(j) }))
			got, want := batchesAfter(sink, 0), batchesAfter(fresh, 0)
			if len(want) != 10 || !maps.EqualFunc(got, want, slices.Equal[[]string]) {
				t.Errorf("output differs from a run that never changed codecs:\n got %v\nwant %v", got, want)
			}
		})
	}
}
