package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/wiring"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/sinks"
	"github.com/dstream-io/dstream/state"
)

func resetHelp(w io.Writer) {
	fmt.Fprint(w, `usage: dstream reset [--to earliest|latest|TIME|P:OFFSET,…] [--force] --yes
       dstream reset --drop-state NAME[,NAME…] [--force] --yes

The first form starts the job over: it drops the job's state, plans and
history, and the next batch starts at --to on every input partition
(default: DSTREAM_START_OFFSET). TIME is RFC 3339 (the first offset at or
after it); P:OFFSET,… names an offset for every partition. Batch ids and
times go on from the last batch in the job's control topic, so the output
topic's history stays in order and is never taken for lost checkpoints.

The second form drops the state of the named stateful operators only: an
operator removed from the job, or one whose state type changed (the refusal
at start names them). On the next start they begin empty.

A reset needs the job stopped (its lease free); --force takes it from a
running instance, which is then fenced. Without --yes it says what it would
do and changes nothing. Reads DSTREAM_* settings like dstream itself.

`)
}

// resetCommand parses `dstream reset` flags and runs the reset.
func resetCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reset", flag.ContinueOnError)
	to := fs.String("to", "", "where the next batch starts: earliest, latest, an RFC 3339 time, or partition:offset,…")
	drop := fs.String("drop-state", "", "drop only these stateful operators' state (comma-separated names)")
	force := fs.Bool("force", false, "take the job from a running instance")
	yes := fs.Bool("yes", false, "do it (without: say what would be done)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long (a reset cut short can be run again)")
	help := func(w io.Writer) {
		resetHelp(w)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if ok, code := parseFlags(fs, args, help, stdout, stderr); !ok {
		return code
	}
	if *drop != "" && *to != "" {
		fmt.Fprintln(stderr, "dstream reset: --to and --drop-state do not go together: --drop-state keeps the offsets")
		return exitUsage
	}
	cfg, ok := storedJobConfig("reset", "the demo keeps nothing to reset", stderr)
	if !ok {
		return exitUsage
	}
	if *to == "" {
		*to = cfg.StartOffset
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "dstream reset: --timeout must be positive, such as 5m")
		return exitUsage
	}
	// An unreachable broker or Redis must end a reset with an error an
	// operator reads, not leave a command hanging in a deploy script.
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	r := resetter{cfg: cfg, out: stdout, force: *force, yes: *yes}
	var err error
	if *drop != "" {
		err = r.dropState(ctx, strings.Split(*drop, ","))
	} else {
		err = r.reset(ctx, *to)
	}
	switch {
	case errors.Is(err, errNotConfirmed):
		fmt.Fprintln(stderr, "dstream reset: nothing changed; run again with --yes to do it")
		return exitFailed
	case err != nil && ctx.Err() == context.DeadlineExceeded:
		fmt.Fprintf(stderr, "dstream reset: gave up after --timeout=%v (is the broker or Redis reachable?): %v\nRun the same reset again: it starts over.\n", *timeout, err)
		return exitFailed
	case err != nil:
		fmt.Fprintln(stderr, "dstream reset:", err)
		return exitFailed
	}
	return exitOK
}

var errNotConfirmed = errors.New("not confirmed")

type resetter struct {
	cfg   Config
	out   io.Writer
	force bool
	yes   bool
}

// A reset changes checkpoints: the unsharded job's, or the tasks' of a
// sharded one. It changes those of the layout the job ran in (its recorded
// shards) and of the one DSTREAM_SHARDS asks for, which a reset may change:
// the only way to, since keyed state cannot be divided anew.

// checkpoint is one checkpoint a reset holds.
type checkpoint struct {
	task      taskSpec // name "" for the unsharded job
	tasks     int32    // the tasks of its layout: the control topic's partitions
	store     *state.Redis
	committed uint64
	graph     []byte
	sink      *sinks.Kafka
	plan      microbatch.Plan // where it starts over
}

// job is the checkpoint's job name: its keys, lease and marker key.
func (c *checkpoint) job(job string) string {
	if c.task.name == "" {
		return job
	}
	return state.TaskJob(job, c.task.name)
}

func (c *checkpoint) String() string {
	if c.task.name == "" {
		return "the job"
	}
	return "task " + c.task.name
}

// layout lists the checkpoints of the job run in shards shards.
func (r resetter) layout(shards int) ([]*checkpoint, error) {
	if shards <= 1 {
		return []*checkpoint{{tasks: 1}}, nil
	}
	cfg := r.cfg
	cfg.Shards = shards
	tasks, _, err := layoutOf(cfg)
	if err != nil {
		return nil, err
	}
	out := make([]*checkpoint, 0, len(tasks))
	for _, t := range tasks {
		out = append(out, &checkpoint{task: t, tasks: int32(len(tasks))})
	}
	return out, nil
}

// layouts returns the checkpoints of the layout the job ran in (was) and
// of the one configured (now); those in both are shared.
func (r resetter) layouts(ctx context.Context, rdb state.Client) (was, now []*checkpoint, recorded int, err error) {
	recorded, found, err := state.RecordedShards(ctx, rdb, r.cfg.JobID)
	if err != nil {
		return nil, nil, 0, err
	}
	if !found {
		recorded = 1 // a job that never started, or checkpointed before shards were recorded
	}
	if was, err = r.layout(recorded); err != nil {
		return nil, nil, 0, err
	}
	if now, err = r.layout(r.cfg.Shards); err != nil {
		return nil, nil, 0, err
	}
	for i, c := range now {
		for _, o := range was {
			if o.task.name == c.task.name {
				now[i] = o
			}
		}
	}
	return was, now, recorded, nil
}

// hold seizes each checkpoint for the command (without --yes, only reads
// it), and returns what releases them.
func (r resetter) hold(ctx context.Context, rdb state.Client, cps []*checkpoint) (func(), error) {
	var held []*state.Redis
	release := func() {
		for _, s := range held {
			_ = s.Release(context.WithoutCancel(ctx))
		}
	}
	for _, c := range cps {
		store, err := state.NewRedis(rdb, state.Config{Job: c.job(r.cfg.JobID), LeaseTTL: r.cfg.LeaseTTL})
		if err != nil {
			release()
			return nil, err
		}
		c.store = store
		if !r.yes {
			m, err := store.Progress(ctx)
			if err != nil {
				return release, err
			}
			c.committed, c.graph = m.Committed, m.Graph
			continue
		}
		c.committed, _, c.graph, err = store.Seize(ctx, r.force)
		if errors.Is(err, state.ErrJobRunning) {
			err = fmt.Errorf("%w: job %s (%s) is running; stop it, or add --force", err, r.cfg.JobID, c)
		}
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, store)
	}
	return release, nil
}

// union lists the checkpoints of both layouts once each.
func union(was, now []*checkpoint) []*checkpoint {
	out := slices.Clone(was)
	for _, c := range now {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func (r resetter) dropState(ctx context.Context, ops []string) error {
	rdb, err := redisClient(r.cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	was, _, recorded, err := r.layouts(ctx, rdb)
	if err != nil {
		return err
	}
	if recorded != r.cfg.Shards {
		return fmt.Errorf("job %s runs in %d shard(s), not DSTREAM_SHARDS=%d: set it back to drop state (or reset the job to change its shards)", r.cfg.JobID, recorded, r.cfg.Shards)
	}
	release, err := r.hold(ctx, rdb, was)
	if err != nil {
		return err
	}
	defer release()
	// Each operator's state is kept by the checkpoints of its stage.
	drops := map[*checkpoint][]string{}
	for _, op := range ops {
		var holders []string
		for _, c := range was {
			if slices.Contains(statefulOps(c.graph), op) {
				drops[c] = append(drops[c], op)
				holders = append(holders, c.String())
			}
		}
		if holders == nil {
			return fmt.Errorf("the checkpoint of job %s has no stateful operator %q (it has: %s)", r.cfg.JobID, op, strings.Join(allOps(was), ", "))
		}
		fmt.Fprintf(r.out, "job %s: drop the state of %s (%s) at batch %d; the rest resumes\n", r.cfg.JobID, op, strings.Join(holders, ", "), was[0].committed)
	}
	if !r.yes {
		return errNotConfirmed
	}
	for _, c := range was {
		if len(drops[c]) == 0 {
			continue
		}
		if err := c.store.DropState(ctx, drops[c]); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	fmt.Fprintln(r.out, "done")
	return nil
}

// statefulOps names the stateful operators of a stored graph.
func statefulOps(graph []byte) []string {
	var fp microbatch.Fingerprint
	if len(graph) == 0 || json.Unmarshal(graph, &fp) != nil {
		return nil
	}
	var out []string
	for _, s := range fp.State {
		out = append(out, s.Name)
	}
	return out
}

func allOps(cps []*checkpoint) []string {
	var out []string
	for _, c := range cps {
		for _, op := range statefulOps(c.graph) {
			if !slices.Contains(out, op) {
				out = append(out, op)
			}
		}
	}
	return out
}

func (r resetter) reset(ctx context.Context, to string) error {
	log := zerolog.Nop()
	base, err := kafkaOpts(r.cfg, log)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ranges, err := startRanges(ctx, adm, r.cfg.InputTopic, to)
	if err != nil {
		return err
	}
	rdb, err := redisClient(r.cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	was, now, recorded, err := r.layouts(ctx, rdb)
	if err != nil {
		return err
	}
	all := union(was, now)
	release, err := r.hold(ctx, rdb, all)
	if err != nil {
		return err
	}
	defer release()
	ctl := r.cfg.controlTopic()
	if r.yes {
		if err := r.growTopics(ctx, cl, int32(len(now))); err != nil {
			return err
		}
		// Each producer is fenced (a transaction it left open is aborted)
		// before the last markers are read: nothing commits behind them.
		for _, c := range all {
			if c.sink, err = wiring.NewSink(ctx, wiring.SinkConfig{Job: r.cfg.JobID, Output: r.cfg.OutputTopic, DeadLetters: r.cfg.DeadLetterTopic,
				Control: ctl, Task: c.task.name, ControlPartition: c.task.partition, Tasks: c.tasks}, base, log); err != nil {
				return err
			}
			defer c.sink.Close()
			if err := c.sink.Fence(ctx); err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
		}
	}
	// Batch ids and times go on from the last batch of any checkpoint or
	// marker of the job, so that every task starts over at the same batch.
	var last microbatch.BatchInfo
	for _, c := range all {
		last.ID = max(last.ID, c.committed)
	}
	for _, c := range was {
		m, found, err := sinks.LastMarker(ctx, base, ctl, c.task.partition, c.job(r.cfg.JobID))
		if err != nil && !errors.Is(err, microbatch.ErrPermanent) { // a control topic not created yet holds nothing
			return err
		}
		if found {
			last.ID = max(last.ID, m.ID)
			if m.Time.After(last.Time) {
				last.Time = m.Time
			}
		}
	}
	start := microbatch.Plan{ID: last.ID + 1, Time: time.Now().UTC().Truncate(r.cfg.BatchInterval)}
	if next := last.Time.Add(r.cfg.BatchInterval); !last.Time.IsZero() && next.After(start.Time) {
		start.Time = next
	}
	for _, c := range now {
		c.plan = start
		if c.plan.Ranges, err = r.rangesOf(ctx, adm, c, ranges); err != nil {
			return err
		}
	}
	shards := ""
	if recorded != r.cfg.Shards {
		shards = fmt.Sprintf("; its shards go from %d to %d", recorded, r.cfg.Shards)
	}
	fmt.Fprintf(r.out, "job %s: drop its state, plans and history (%d checkpoint(s), last batch %d%s);\n"+
		"batch %d (%s) becomes the reset point: the next batch starts at %s\n",
		r.cfg.JobID, len(all), last.ID, shards, start.ID, start.Time.Format(time.RFC3339), microbatch.Plan{Ranges: ranges}.OffsetsHeader())
	if !r.yes {
		return errNotConfirmed
	}
	for _, c := range all {
		plan := c.plan
		if plan.ID == 0 { // of the old layout only: its state goes
			plan = microbatch.Plan{ID: start.ID, Time: start.Time}
		}
		if err := c.store.Reset(ctx, plan); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
	// The reset point's markers: each control partition's last batch is
	// its checkpoint's again.
	for _, c := range now {
		if err := c.sink.WriteBatch(ctx, microbatch.BatchInfo{Plan: c.plan, Base: c.plan.ID}, nil); err != nil {
			return fmt.Errorf("%s: write the reset point's marker: %w", c, err)
		}
	}
	if err := state.SetShards(ctx, rdb, r.cfg.JobID, max(1, r.cfg.Shards)); err != nil {
		return err
	}
	fmt.Fprintln(r.out, "done")
	return nil
}

// growTopics makes sure the control topic and the exchanges have the
// partitions the configured layout needs.
func (r resetter) growTopics(ctx context.Context, cl *kgo.Client, tasks int32) error {
	if err := sinks.GrowTopic(ctx, cl, "control", r.cfg.controlTopic(), tasks); err != nil {
		return err
	}
	if r.cfg.Shards <= 1 {
		return nil
	}
	for name, n := range graphOf(r.cfg).Exchanges(r.cfg.Shards) {
		if err := sinks.GrowTopic(ctx, cl, "exchange", wiring.ExchangeTopic(r.cfg.JobID, name), int32(n)); err != nil {
			return err
		}
	}
	return nil
}

// rangesOf returns where checkpoint c starts over: its input partitions
// at the input's start ranges, or, for a task fed by exchanges, the end of
// its partition of each.
func (r resetter) rangesOf(ctx context.Context, adm *kadm.Client, c *checkpoint, input []microbatch.Range) ([]microbatch.Range, error) {
	switch {
	case c.task.name == "":
		return input, nil
	case c.task.stage == 0:
		return slices.DeleteFunc(slices.Clone(input), func(rg microbatch.Range) bool {
			return int(rg.Partition)%r.cfg.Shards != c.task.index
		}), nil
	}
	into, err := graphOf(r.cfg).ExchangesInto(c.task.stage, c.task.index)
	if err != nil {
		return nil, err
	}
	var out []microbatch.Range
	for _, name := range slices.Sorted(maps.Keys(into)) {
		topic, partition := wiring.ExchangeTopic(r.cfg.JobID, name), into[name]
		ends, err := committedEnds(ctx, adm, topic)
		if err != nil && r.yes { // without --yes the exchange may not exist yet: it then starts at 0
			return nil, fmt.Errorf("the end of %s: %w", topic, err)
		}
		end, _ := ends.Lookup(topic, partition)
		out = append(out, microbatch.Range{Topic: topic, Partition: partition, From: end.Offset, Until: end.Offset})
	}
	return out, nil
}

// committedEnds lists the ends of topic's partitions, waiting a moment for
// partitions just created or added to be known.
func committedEnds(ctx context.Context, adm *kadm.Client, topic string) (kadm.ListedOffsets, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		ends, err := adm.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(deadline) {
			return ends, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startRanges returns, for every partition of topic, the empty range at
// the offset to names.
func startRanges(ctx context.Context, adm *kadm.Client, topic, to string) ([]microbatch.Range, error) {
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", topic, err)
	}
	detail, ok := topics[topic]
	if !ok || detail.Err != nil {
		return nil, fmt.Errorf("describe %s: %v", topic, detail.Err)
	}
	id := hex.EncodeToString(detail.ID[:])
	offsets := map[int32]int64{}
	var listed kadm.ListedOffsets
	switch to {
	case "earliest":
		listed, err = adm.ListStartOffsets(ctx, topic)
	case "latest":
		listed, err = adm.ListCommittedOffsets(ctx, topic)
	default:
		if t, terr := time.Parse(time.RFC3339, to); terr == nil {
			listed, err = adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topic)
			break
		}
		for _, part := range strings.Split(to, ",") {
			p, o, ok := strings.Cut(part, ":")
			pi, err1 := strconv.ParseInt(p, 10, 32)
			oi, err2 := strconv.ParseInt(o, 10, 64)
			if !ok || err1 != nil || err2 != nil || oi < 0 {
				return nil, fmt.Errorf("--to %q: use earliest, latest, an RFC 3339 time, or partition:offset,…", to)
			}
			offsets[int32(pi)] = oi
		}
	}
	if err == nil && listed != nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	listed.Each(func(o kadm.ListedOffset) { offsets[o.Partition] = o.Offset })
	partitions := slices.Sorted(maps.Keys(detail.Partitions))
	var ranges []microbatch.Range
	for _, p := range partitions {
		o, ok := offsets[p]
		if !ok {
			return nil, fmt.Errorf("--to %q names no offset for partition %d of %s", to, p, topic)
		}
		ranges = append(ranges, microbatch.Range{Topic: topic, Partition: p, From: o, Until: o, TopicID: id})
	}
	if len(offsets) != len(partitions) {
		return nil, fmt.Errorf("--to %q names partitions %s has not", to, topic)
	}
	return ranges, nil
}
