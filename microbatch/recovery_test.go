package microbatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// recoveryBatches is how many batches the recovery tests run in all.
const recoveryBatches = 12

// recoveryInput is the input of the recovery tests: random pairs, a few
// empty batches, then nothing.
var recoveryInput = func() [][]Pair[string, int] {
	rng := rand.New(rand.NewPCG(7, 11))
	return randomBatches(rng, recoveryBatches-2)
}()

// recoveryGraph builds a job with every kind of state: incremental windows
// (checkpointed), windows with an inverse short enough to be recomputed at
// every slide, recomputed windows (rebuilt from plans), a window of a
// window, updateStateByKey over a window and skipping idle keys,
// mapWithState with a timeout, and a join of stateful with windowed
// streams. Every output is printed and written to sink; with computed set,
// outputs are only written (so batches may commit in groups), and computed
// is called as a batch computes.
func recoveryGraph(j *Job, sink Sink, computed func(batchTime time.Time)) {
	const s = time.Second
	in := QueueStream(j, recoveryInput)
	if computed != nil {
		in = TransformTime(in, func(bt time.Time, b []Pair[string, int]) []Pair[string, int] {
			computed(bt)
			return b
		})
	}
	keys := Map(in, func(p Pair[string, int]) string { return p.Key })
	positive := func(p Pair[string, int]) bool { return p.Value > 0 }
	incremental := ReduceByKeyAndWindow(in, add, sub, (recomputedSlides+1)*s, s, positive)
	short := ReduceByKeyAndWindow(in, add, sub, 3*s, s, positive)
	recomputed := ReduceByKeyAndWindow(in, add, nil, 4*s, 2*s, nil)
	// Integer keys: a short window lists them in bucket order, which a
	// restarted process must compute alike.
	codes := Map(in, func(p Pair[string, int]) Pair[int, int] { return KV(keyCode(p.Key), p.Value) })
	shortCodes := ReduceByKeyAndWindow(codes, add, sub, 3*s, s, func(p Pair[int, int]) bool { return p.Value > 0 })
	distinct := CountByValueAndWindow(keys, 2*s, 2*s)
	nested := in.Window(2*s, 2*s).Window(4*s, 2*s).Count()
	running := UpdateStateByKey(ReduceByKey(in.Window(2*s, s), add), sumUpdate)
	// Only keys with values are updated: the changed ones must reach the
	// checkpoint all the same.
	capped := UpdateStateByKey(in, cappedTotal, SkipIdleKeys[string, int]())
	totals := MapWithState(in, 3*s, runningTotal)
	joined := LeftOuterJoin(incremental, running)
	groups := GroupByKeyAndWindow(in, 3*s, 3*s)
	// Windows over stateful outputs: checkpointed, since they cannot be
	// recomputed from plans.
	windowedState := ReduceByKey(running.Window(3*s, s), add)
	timedOut := CountByValueAndWindow(totals, 2*s, 2*s)
	out := func(name string) func(b BatchInfo, v string) Message {
		return func(b BatchInfo, v string) Message {
			return Message{Value: fmt.Appendf(nil, "%s@%d %s", name, b.ID, v)}
		}
	}
	emit := func(name string, print func(int), s *Stream[string]) {
		if computed == nil {
			print(100)
		}
		Write(s, sink, out(name))
	}
	emit("incremental", incremental.Pprint, reprs(incremental))
	emit("short", short.Pprint, reprs(short))
	emit("recomputed", recomputed.Pprint, reprs(recomputed))
	emit("shortCodes", shortCodes.Pprint, reprs(shortCodes))
	emit("distinct", distinct.Pprint, reprs(distinct))
	emit("nested", nested.Pprint, reprs(nested))
	emit("running", running.Pprint, reprs(running))
	emit("capped", capped.Pprint, reprs(capped))
	emit("totals", totals.Pprint, totals)
	emit("joined", joined.Pprint, reprs(joined))
	emit("groups", groups.Pprint, reprs(groups))
	emit("windowedState", windowedState.Pprint, reprs(windowedState))
	emit("timedOut", timedOut.Pprint, reprs(timedOut))
}

// keyCode is an integer for a key, a different one for most keys.
func keyCode(k string) int {
	n := 0
	for _, c := range []byte(k) {
		n = n*31 + int(c)
	}
	return n
}

// reprs maps every element to its repr.
func reprs[T any](s *Stream[T]) *Stream[string] {
	return Map(s, func(v T) string { return repr(v) })
}

// recoveryJob returns a job over the recovery graph that stops after batch
// `until` is committed.
func recoveryJob(store Store, w io.Writer, sink Sink, until uint64, opts ...Option) *Job {
	var j *Job
	j = NewJob(time.Second, append([]Option{WithClock(NewVirtualClock(epoch)), WithStdout(w), WithListener(func(s BatchStats) {
		if s.ID >= until {
			j.Stop(true)
		}
	})}, opts...)...)
	j.Checkpoint(store)
	recoveryGraph(j, sink, nil)
	return j
}

// uninterrupted runs the recovery graph without a crash.
func uninterrupted(t *testing.T) (printed string, written []string) {
	t.Helper()
	var buf bytes.Buffer
	sink := newTxnSink()
	runJob(t, recoveryJob(NewMemoryStore(), &buf, sink, recoveryBatches))
	if !strings.Contains(buf.String(), "Time: 1970-01-01 00:00:12") {
		t.Fatalf("the run stopped before batch %d:\n%s", recoveryBatches, buf.String())
	}
	return buf.String(), values(sink)
}

// TestRecoveryAtEveryBatchBoundary stops the job after every batch k and
// starts a new Job on the same Store: the output of both runs together must
// be the output of one uninterrupted run, byte for byte.
func TestRecoveryAtEveryBatchBoundary(t *testing.T) {
	wantPrinted, wantWritten := uninterrupted(t)
	for _, test := range []struct {
		name        string
		first, opts []Option // first: the first run's, if other
	}{
		{"", nil, nil},
		// Windows keep the plans they need, whatever the retention.
		{", retaining 1 plan", nil, []Option{WithPlanRetention(1)}},
		// An upgrade from a release that wrote state parts in format 1,
		// and the setting that keeps writing them.
		{", state written in format 1 first", []Option{WithStatePartFormat(partFormatV1)}, nil},
		{", state written in format 1", nil, []Option{WithStatePartFormat(partFormatV1)}},
	} {
		for k := uint64(1); k < recoveryBatches; k++ {
			t.Run(fmt.Sprintf("stop after batch %d%s", k, test.name), func(t *testing.T) {
				store := NewMemoryStore()
				sink := newTxnSink()
				var buf bytes.Buffer
				first := test.opts
				if test.first != nil {
					first = test.first
				}
				runJob(t, recoveryJob(store, &buf, sink, k, first...))
				runJob(t, recoveryJob(store, &buf, sink, recoveryBatches, test.opts...))
				if got := buf.String(); got != wantPrinted {
					t.Errorf("printed output differs from an uninterrupted run:\n%s", lineDiff(got, wantPrinted))
				}
				if got := values(sink); !slices.Equal(got, wantWritten) {
					t.Errorf("written output differs from an uninterrupted run:\n%s",
						lineDiff(strings.Join(got, "\n"), strings.Join(wantWritten, "\n")))
				}
			})
		}
	}
}

// errCrash is the failure crashStore injects.
var errCrash = fmt.Errorf("injected crash: %w", ErrPermanent) // a crashed process does not retry

// crashStore fails at one point of the commit protocol of one batch, as a
// process killed there would: the step before the point is done, the rest
// never happens.
type crashStore struct {
	Store
	point string
	batch uint64
}

// crashPoints are the points of the protocol where crashStore can fail.
var crashPoints = []string{"before plan", "after plan", "after prepare", "before commit", "after commit"}

func (c *crashStore) at(point string, batch uint64) bool { return c.point == point && c.batch == batch }

func (c *crashStore) RecordPlan(ctx context.Context, plans ...Plan) error {
	at := func(point string) bool {
		return slices.ContainsFunc(plans, func(p Plan) bool { return c.at(point, p.ID) })
	}
	if at("before plan") {
		return errCrash
	}
	if err := c.Store.RecordPlan(ctx, plans...); err != nil {
		return err
	}
	if at("after plan") {
		return errCrash
	}
	return nil
}

func (c *crashStore) Prepare(ctx context.Context, batch uint64, deltas []Delta) error {
	if err := c.Store.Prepare(ctx, batch, deltas); err != nil {
		return err
	}
	if c.at("after prepare", batch) {
		return errCrash
	}
	return nil
}

func (c *crashStore) Commit(ctx context.Context, ck Checkpoint) error {
	if c.at("before commit", ck.Batch) { // the sink already holds the batch
		return errCrash
	}
	if err := c.Store.Commit(ctx, ck); err != nil {
		return err
	}
	if c.at("after commit", ck.Batch) {
		return errCrash
	}
	return nil
}

// TestRecoveryFromCrashes crashes the job at every point of the commit
// protocol of every batch, restarts it, and checks that the transactional
// sink holds every batch exactly once with the content of an uninterrupted
// run, and that a batch printed again after the crash prints the same.
func TestRecoveryFromCrashes(t *testing.T) {
	wantPrinted, wantWritten := uninterrupted(t)
	wantBatches := splitBatches(wantPrinted)
	for k := uint64(1); k < recoveryBatches; k++ {
		for _, point := range crashPoints {
			t.Run(fmt.Sprintf("batch %d %s", k, point), func(t *testing.T) {
				store := NewMemoryStore()
				sink := newTxnSink()
				var first, second bytes.Buffer
				err := recoveryJob(&crashStore{Store: store, point: point, batch: k}, &first, sink, recoveryBatches).Run(context.Background())
				if !errors.Is(err, errCrash) {
					t.Fatalf("the crashing run returned %v", err)
				}
				runJob(t, recoveryJob(store, &second, sink, recoveryBatches))
				if got := values(sink); !slices.Equal(got, wantWritten) {
					t.Errorf("written output differs from an uninterrupted run:\n%s",
						lineDiff(strings.Join(got, "\n"), strings.Join(wantWritten, "\n")))
				}
				// Pprint is at-least-once: a batch may print in both runs,
				// but every print of a batch is the print of the
				// uninterrupted run.
				printed := map[string]string{}
				for _, run := range []string{first.String(), second.String()} {
					for tm, b := range splitBatches(run) {
						if want := wantBatches[tm]; b != want {
							t.Errorf("batch %s printed\n%s\nwant\n%s", tm, b, want)
						}
						printed[tm] = b
					}
				}
				if len(printed) != len(wantBatches) {
					t.Errorf("%d batch times printed, want %d", len(printed), len(wantBatches))
				}
			})
		}
	}
}

// TestRecoveryFromRepeatedCrashes crashes one job after another at random
// points until the last batch is committed: the sink must still hold the
// output of an uninterrupted run.
func TestRecoveryFromRepeatedCrashes(t *testing.T) {
	_, wantWritten := uninterrupted(t)
	rng := rand.New(rand.NewPCG(3, 5))
	for round := range 8 {
		store := NewMemoryStore()
		sink := newTxnSink()
		var schedule []string
		for batch := uint64(0); ; {
			batch += 1 + uint64(rng.IntN(2))
			if batch >= recoveryBatches {
				break
			}
			point := crashPoints[rng.IntN(len(crashPoints))]
			schedule = append(schedule, fmt.Sprintf("%d %s", batch, point))
			err := recoveryJob(&crashStore{Store: store, point: point, batch: batch}, io.Discard, sink, recoveryBatches).Run(context.Background())
			if !errors.Is(err, errCrash) {
				t.Fatalf("round %d, crash at %s: run returned %v", round, schedule[len(schedule)-1], err)
			}
		}
		runJob(t, recoveryJob(store, io.Discard, sink, recoveryBatches))
		if got := values(sink); !slices.Equal(got, wantWritten) {
			t.Errorf("round %d, crashes %q: written output differs from an uninterrupted run:\n%s", round, schedule,
				lineDiff(strings.Join(got, "\n"), strings.Join(wantWritten, "\n")))
		}
	}
}

// groupingStore delays the commit of batch n until batch n+2 computed (up
// to the last batch), so that the batches behind a commit wait for it and
// commit together, as they do when a job is behind. At a crash point of
// one batch it fails the step of the whole group's commit, as a process
// killed there would.
type groupingStore struct {
	Store
	log   *eventLog
	last  uint64
	point string
	batch uint64
	group []uint64 // the batches of the group committing
}

func (s *groupingStore) in() bool { return slices.Contains(s.group, s.batch) }

func (s *groupingStore) RecordPlan(ctx context.Context, plans ...Plan) error {
	s.group = s.group[:0]
	for _, p := range plans {
		s.group = append(s.group, p.ID)
	}
	if s.point == "before plan" && s.in() {
		return errCrash
	}
	if err := s.Store.RecordPlan(ctx, plans...); err != nil {
		return err
	}
	if s.point == "after plan" && s.in() {
		return errCrash
	}
	return nil
}

func (s *groupingStore) Prepare(ctx context.Context, batch uint64, deltas []Delta) error {
	if err := s.Store.Prepare(ctx, batch, deltas); err != nil {
		return err
	}
	if s.point == "after prepare" && s.in() {
		return errCrash
	}
	return nil
}

func (s *groupingStore) Commit(ctx context.Context, ck Checkpoint) error {
	if ck.Batch+2 <= s.last {
		s.log.waitFor(fmt.Sprintf("compute %d", ck.Batch+2))
	}
	if s.point == "before commit" && s.in() { // the sink already holds the group
		return errCrash
	}
	if err := s.Store.Commit(ctx, ck); err != nil {
		return err
	}
	if s.point == "after commit" && s.in() {
		return errCrash
	}
	return nil
}

// groupJob is recoveryJob over the recovery graph with writes only, so
// that batches may commit in groups; it logs every batch it computes.
func groupJob(store Store, sink Sink, log *eventLog, until uint64) *Job {
	var j *Job
	j = NewJob(time.Second, WithClock(NewVirtualClock(epoch)), WithListener(func(s BatchStats) {
		if s.ID >= until {
			j.Stop(true)
		}
	}))
	j.Checkpoint(store)
	recoveryGraph(j, sink, func(bt time.Time) { log.add("compute %d", bt.Sub(epoch)/time.Second) })
	return j
}

// valuesUpTo returns the values of the messages of batches up to last.
func valuesUpTo(s *MemorySink, last uint64) []string {
	var out []string
	for _, b := range s.Batches() {
		if b.ID <= last {
			for _, m := range s.Messages(b.ID) {
				out = append(out, string(m.Value))
			}
		}
	}
	return out
}

// TestRecoveryFromCrashesInGroups crashes a job whose batches commit in
// groups at every step of the commit of the group that holds batch k, then
// restarts it: the sink must hold every batch exactly once with the output
// of a run that committed batch by batch.
func TestRecoveryFromCrashesInGroups(t *testing.T) {
	want := func() []string {
		sink := newTxnSink()
		runJob(t, groupJob(NewMemoryStore(), sink, &eventLog{}, recoveryBatches))
		return valuesUpTo(sink, recoveryBatches)
	}()
	grouped := 0
	for k := uint64(1); k < recoveryBatches; k++ {
		for _, point := range crashPoints {
			t.Run(fmt.Sprintf("batch %d %s", k, point), func(t *testing.T) {
				store := NewMemoryStore()
				sink := newTxnSink()
				log := &eventLog{}
				gs := &groupingStore{Store: store, log: log, last: recoveryBatches, point: point, batch: k}
				err := groupJob(gs, sink, log, recoveryBatches).Run(context.Background())
				if !errors.Is(err, errCrash) {
					t.Fatalf("the crashing run returned %v", err)
				}
				if len(gs.group) > 1 {
					grouped++
				}
				runJob(t, groupJob(store, sink, &eventLog{}, recoveryBatches))
				if got := valuesUpTo(sink, recoveryBatches); !slices.Equal(got, want) {
					t.Errorf("crash in group %v: written output differs from a run without crashes:\n%s", gs.group,
						lineDiff(strings.Join(got, "\n"), strings.Join(want, "\n")))
				}
				for i, b := range sink.Batches() {
					if b.ID != uint64(i+1) {
						t.Fatalf("the sink holds batch %d at %d", b.ID, i)
					}
				}
			})
		}
	}
	if grouped < int(recoveryBatches) {
		t.Errorf("only %d crashes came in a group of more than one batch", grouped)
	}
}

// TestFencedHandleCannotWrite checks that once another holder acquires a
// MemoryStore, every write of the previous holder fails with ErrFenced.
func TestFencedHandleCannotWrite(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryStore()
	old := store.Handle()
	if _, err := old.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	plan := Plan{ID: 1, Time: epoch.Add(time.Second)}
	if err := old.RecordPlan(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if err := old.Prepare(ctx, 1, []Delta{{Op: "op", Batch: 1, Data: []byte("delta")}}); err != nil {
		t.Fatal(err)
	}
	meta, err := store.Handle().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Committed != 0 || meta.Planned != 1 || meta.Prepared != 1 {
		t.Errorf("the new holder sees %+v, want planned 1, prepared 1, committed 0", meta)
	}
	for _, test := range []struct {
		name string
		call func() error
	}{
		{"Commit", func() error { return old.Commit(ctx, Checkpoint{Batch: 1, KeepFrom: 1}) }},
		{"Prepare", func() error { return old.Prepare(ctx, 1, nil) }},
		{"Discard", func() error { return old.Discard(ctx, 1) }},
		{"RecordPlan", func() error { return old.RecordPlan(ctx, Plan{ID: 2, Time: epoch.Add(2 * time.Second)}) }},
		{"Renew", func() error { return old.Renew(ctx) }},
	} {
		if err := test.call(); !errors.Is(err, ErrFenced) {
			t.Errorf("%s by the fenced handle: %v, want ErrFenced", test.name, err)
		}
	}
	// The prepared delta stays staged: a load finds it, but past the
	// committed batch, which is how the engine knows to ignore it.
	if err := store.LoadState(ctx, "op", func(p StatePart) error {
		if p.Kind != DeltaPart || p.Batch <= meta.Committed {
			t.Errorf("the fenced holder's prepared delta became visible: %+v", p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// fencingStore lets another holder take the job over right after batch
// `at` is planned, as a standby would.
type fencingStore struct {
	*MemoryHandle
	at uint64
}

func (f *fencingStore) RecordPlan(ctx context.Context, plans ...Plan) error {
	err := f.MemoryHandle.RecordPlan(ctx, plans...)
	if err == nil && slices.ContainsFunc(plans, func(p Plan) bool { return p.ID == f.at }) {
		_, err = f.s.Handle().Acquire(ctx)
	}
	return err
}

// TestFencedJobStops checks that a job whose Store holder was fenced stops
// with ErrFenced and commits nothing more.
func TestFencedJobStops(t *testing.T) {
	store := NewMemoryStore()
	sink := newTxnSink()
	j := recoveryJob(&fencingStore{MemoryHandle: store.Handle(), at: 3}, io.Discard, sink, recoveryBatches)
	if err := j.Run(context.Background()); !errors.Is(err, ErrFenced) {
		t.Fatalf("Run: %v, want ErrFenced", err)
	}
	if b := sink.Batches(); len(b) != 2 || b[1].ID != 2 {
		t.Errorf("the sink holds %d batches, want batches 1 and 2", len(b))
	}
	meta, _ := store.Handle().Acquire(context.Background())
	if meta.Committed != 2 {
		t.Errorf("committed %d, want 2", meta.Committed)
	}
}

// splitBatches splits pprint output into the text of each batch by time.
func splitBatches(s string) map[string]string {
	out := map[string]string{}
	const rule = "-------------------------------------------\n"
	for _, part := range strings.Split(s, rule+"Time: ")[1:] {
		tm, _, _ := strings.Cut(part, "\n")
		out[tm] += part
	}
	return out
}

// lineDiff shows the first line where got and want differ.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d:\n got  %q\n want %q", i+1, gl, wl)
		}
	}
	return "(no difference)"
}

// TestStatePartFormatIsWhatTheJobWrites checks WithStatePartFormat: every
// state part a job stores is in the format it asks for, and a format it
// cannot write is a build error, not a store it would corrupt.
func TestStatePartFormatIsWhatTheJobWrites(t *testing.T) {
	for _, format := range []int{partFormatV1, partFormat} {
		t.Run(fmt.Sprintf("format %d", format), func(t *testing.T) {
			store := NewMemoryStore()
			runJob(t, recoveryJob(store, io.Discard, newTxnSink(), recoveryBatches, WithStatePartFormat(format)))
			store.mu.Lock()
			defer store.mu.Unlock()
			parts := 0
			for op, st := range store.mu.state {
				for _, data := range slices.Concat(slices.Collect(maps.Values(st.segments)), slices.Collect(maps.Values(st.deltas))) {
					parts++
					if int(data[0]) != format {
						t.Errorf("%s: a part in format %d", op, data[0])
					}
				}
			}
			if parts == 0 {
				t.Fatal("the job stored no state parts")
			}
		})
	}
	j := recoveryJob(NewMemoryStore(), io.Discard, newTxnSink(), 1, WithStatePartFormat(3))
	var be *BuildError
	if err := j.Run(context.Background()); !errors.As(err, &be) || !strings.Contains(err.Error(), "state part format 3") {
		t.Errorf("a job asking for state part format 3 ran: %v", err)
	}
}
