package main

import (
	"context"
	"encoding/hex"
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
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(stderr, "dstream: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	if cfg.Demo() {
		fmt.Fprintln(stderr, "dstream reset: set DSTREAM_KAFKA_BROKERS and DSTREAM_REDIS_ADDR: the demo keeps nothing to reset")
		return exitUsage
	}
	if *to == "" {
		*to = cfg.StartOffset
	}
	r := resetter{cfg: cfg, out: stdout, force: *force, yes: *yes}
	if *drop != "" {
		err = r.dropState(ctx, strings.Split(*drop, ","))
	} else {
		err = r.reset(ctx, *to)
	}
	switch {
	case errors.Is(err, errNotConfirmed):
		fmt.Fprintln(stderr, "dstream reset: nothing changed; run again with --yes to do it")
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

// store returns the job's store, held by this command.
func (r resetter) store(ctx context.Context) (*state.Redis, uint64, []byte, func(), error) {
	rdb, err := redisClient(r.cfg)
	if err != nil {
		return nil, 0, nil, nil, err
	}
	store, err := state.NewRedis(rdb, state.Config{Job: r.cfg.JobID, LeaseTTL: r.cfg.LeaseTTL})
	if err != nil {
		rdb.Close()
		return nil, 0, nil, nil, err
	}
	if !r.yes {
		m, err := store.Progress(ctx)
		return store, m.Committed, m.Graph, func() { rdb.Close() }, err
	}
	committed, _, graph, err := store.Seize(ctx, r.force)
	if errors.Is(err, state.ErrJobRunning) {
		err = fmt.Errorf("%w: job %s is running; stop it, or add --force", err, r.cfg.JobID)
	}
	return store, committed, graph, func() {
		_ = store.Release(context.WithoutCancel(ctx))
		rdb.Close()
	}, err
}

func (r resetter) dropState(ctx context.Context, ops []string) error {
	store, committed, _, done, err := r.store(ctx)
	if err != nil {
		return err
	}
	defer done()
	fmt.Fprintf(r.out, "job %s: drop the state of %s at batch %d; the rest resumes\n", r.cfg.JobID, strings.Join(ops, ", "), committed)
	if !r.yes {
		return errNotConfirmed
	}
	if err := store.DropState(ctx, ops); err != nil {
		return err
	}
	fmt.Fprintln(r.out, "done")
	return nil
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
	ranges, err := startRanges(ctx, kadm.NewClient(cl), r.cfg.InputTopic, to)
	if err != nil {
		return err
	}
	store, committed, _, done, err := r.store(ctx)
	if err != nil {
		return err
	}
	defer done()
	// The job's producer is fenced (a transaction it left open is
	// aborted) before the last marker is read: nothing commits behind it.
	var sink *sinks.Kafka
	if r.yes {
		if sink, err = wiring.NewSink(ctx, wiring.SinkConfig{Job: r.cfg.JobID, Output: r.cfg.OutputTopic,
			DeadLetters: r.cfg.DeadLetterTopic, Control: r.cfg.controlTopic()}, base, log); err != nil {
			return err
		}
		defer sink.Close()
		if err := sink.Fence(ctx); err != nil {
			return err
		}
	}
	last, found, err := sinks.LastMarker(ctx, base, r.cfg.controlTopic(), 0, r.cfg.JobID)
	if err != nil && !errors.Is(err, microbatch.ErrPermanent) { // a control topic not created yet holds nothing
		return err
	}
	start := microbatch.Plan{ID: max(last.ID, committed) + 1, Time: time.Now().UTC().Truncate(r.cfg.BatchInterval), Ranges: ranges}
	if next := last.Time.Add(r.cfg.BatchInterval); found && next.After(start.Time) {
		start.Time = next
	}
	fmt.Fprintf(r.out, "job %s: drop its state, plans and history (checkpoint at batch %d, output at batch %d);\n"+
		"batch %d (%s) becomes the reset point: the next batch starts at %s\n",
		r.cfg.JobID, committed, last.ID, start.ID, start.Time.Format(time.RFC3339), start.OffsetsHeader())
	if !r.yes {
		return errNotConfirmed
	}
	if err := store.Reset(ctx, start); err != nil {
		return err
	}
	// The reset point's marker: the control topic's last batch is the
	// checkpoint's again.
	if err := sink.WriteBatch(ctx, microbatch.BatchInfo{Plan: start, Base: start.ID}, nil); err != nil {
		return fmt.Errorf("write the reset point's marker: %w", err)
	}
	fmt.Fprintln(r.out, "done")
	return nil
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
