package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
)

// replayCommand parses `dstream replay` flags and runs the replay.
func replayCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	batch := fs.Uint64("batch", 0, "replay this batch")
	from := fs.Uint64("from", 0, "first batch of a range")
	to := fs.Uint64("to", 0, "last batch of a range")
	help := func(w io.Writer) {
		fmt.Fprint(w, "usage: dstream replay --batch N | --from N --to M\n\n"+
			"Recomputes batches from their recorded plans and prints the records they wrote to the output topic,\n"+
			"without writing to Kafka or touching the checkpoint. Reads DSTREAM_* settings like dstream itself.\n\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if ok, code := parseFlags(fs, args, help, stdout, stderr); !ok {
		return code
	}
	if *batch > 0 {
		*from, *to = *batch, *batch
	}
	if *from == 0 || *to < *from {
		fmt.Fprintf(stderr, "dstream replay: give --batch N, or --from N --to M with 1 ≤ N ≤ M\n\n")
		help(stderr)
		return exitUsage
	}
	cfg, ok := storedJobConfig("replay", "the demo keeps no plans to replay", stderr)
	if !ok {
		return exitUsage
	}
	if err := replay(ctx, cfg, *from, *to, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "dstream replay:", err)
		return exitFailed
	}
	return exitOK
}

// replay recomputes batches from..to of the configured job from the plans in
// Redis. State starts at the first retained plan, so replay starts there:
// with every plan retained, running totals equal the live ones.
func replay(ctx context.Context, cfg Config, from, to uint64, stdout, stderr io.Writer) error {
	log := zerolog.New(stderr).Level(zerolog.WarnLevel)
	base, err := kafkaOpts(cfg, log)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(base, kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	rdb, err := redisClient(cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	plans, err := recordedPlans(ctx, cfg, rdb, to)
	if err != nil {
		return err
	}
	if len(plans) == 0 || plans[len(plans)-1].ID != to {
		return fmt.Errorf("batch %d has no recorded plan (not run yet, or trimmed)", to)
	}
	// Keep the consecutive run of plans that ends at to.
	first := len(plans) - 1
	for first > 0 && plans[first-1].ID == plans[first].ID-1 {
		first--
	}
	plans = plans[first:]
	if plans[0].ID > from {
		return fmt.Errorf("batch %d's plan was trimmed: the oldest retained plan is %d", from, plans[0].ID)
	}
	if plans[0].ID > 1 {
		fmt.Fprintf(stderr, "replay: plans before batch %d were trimmed: running totals count from batch %d\n", plans[0].ID, plans[0].ID)
	}
	countries, err := loadCountries(cfg)
	if err != nil {
		return err
	}
	src, err := ingest.New(cl, ingest.Config{Topic: cfg.InputTopic, BatchInterval: cfg.BatchInterval})
	if err != nil {
		return err
	}
	job := microbatch.NewJob(cfg.BatchInterval, microbatch.WithStdout(io.Discard))
	topips.Build(job, src, discardSink{}, topips.Config{
		Window: cfg.Window, Slide: cfg.Slide, TopN: cfg.TopN,
		InputTopic: cfg.InputTopic, DeadLetterTopic: cfg.DeadLetterTopic, Countries: countries,
	})
	lastProgress := time.Now()
	return job.Replay(ctx, plans, func(b microbatch.BatchInfo, msgs []microbatch.Message) error {
		if time.Since(lastProgress) > time.Second || b.ID == to {
			fmt.Fprintf(stderr, "replay: batch %d of %d-%d\n", b.ID, plans[0].ID, to)
			lastProgress = time.Now()
		}
		if b.ID < from {
			return nil
		}
		fmt.Fprintf(stdout, "# batch %d time %s offsets %s\n", b.ID, b.Time.UTC().Format(time.RFC3339Nano), b.OffsetsHeader())
		for _, m := range msgs {
			if m.Topic != "" {
				fmt.Fprintf(stdout, "# dead letter to %s: %q\n", m.Topic, m.Value)
				continue
			}
			fmt.Fprintf(stdout, "%s\n", m.Value)
		}
		return nil
	})
}

// recordedPlans reads the job's plans up to batch to. A sharded job's are
// its first-stage tasks', each over its share of the input partitions:
// merged by batch, they are the plans of the unsharded job, which replays
// to the same results (docs/scale-out.md). The stores are only read: no
// Acquire, so running instances are not disturbed.
func recordedPlans(ctx context.Context, cfg Config, rdb state.Client, to uint64) ([]microbatch.Plan, error) {
	jobs := []string{cfg.JobID}
	if cfg.Shards > 1 {
		jobs = nil
		for i := range cfg.Shards {
			jobs = append(jobs, state.TaskJob(cfg.JobID, fmt.Sprintf("s0-%d", i)))
		}
	}
	var merged []microbatch.Plan
	for n, job := range jobs {
		store, err := state.NewRedis(rdb, state.Config{Job: job})
		if err != nil {
			return nil, err
		}
		plans, err := store.Plans(ctx, 1, to)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			merged = plans
			continue
		}
		// Keep the batches every task still has, with all their ranges.
		byID := map[uint64]microbatch.Plan{}
		for _, p := range plans {
			byID[p.ID] = p
		}
		merged = slices.DeleteFunc(merged, func(p microbatch.Plan) bool { _, ok := byID[p.ID]; return !ok })
		for i := range merged {
			merged[i].Ranges = append(merged[i].Ranges, byID[merged[i].ID].Ranges...)
		}
	}
	for i := range merged {
		slices.SortFunc(merged[i].Ranges, func(a, b microbatch.Range) int { return int(a.Partition - b.Partition) })
	}
	return merged, nil
}

// discardSink stands in for the output topic during a replay; the job never
// writes to it (Replay hands the messages to its callback instead).
type discardSink struct{}

func (discardSink) WriteBatch(context.Context, microbatch.BatchInfo, []microbatch.Message) error {
	return errors.New("replay never writes")
}

// storedJobConfig loads the settings of a command that works on a job's
// stored checkpoint and topics (replay, reset), which the demo does not
// keep (why says what it lacks); false after it told stderr why not.
func storedJobConfig(command, why string, stderr io.Writer) (Config, bool) {
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(stderr, "dstream: invalid configuration:\n%v\n", err)
		return cfg, false
	}
	if cfg.Demo() {
		fmt.Fprintf(stderr, "dstream %s: set DSTREAM_KAFKA_BROKERS and DSTREAM_REDIS_ADDR: %s\n", command, why)
		return cfg, false
	}
	return cfg, true
}
