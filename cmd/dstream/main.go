// Command dstream runs a dstream job: Kafka in, micro-batches through the
// DStream graph, results out to Kafka exactly once, checkpoints in Redis.
//
// With no DSTREAM_KAFKA_BROKERS it runs the demo: an in-process Kafka and
// Redis fed by a built-in log generator, nothing durable.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/rs/zerolog"

	"github.com/dstream-io/dstream/internal/gcpolicy"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	case "config":
		cfg, err := loadConfig()
		printSettings(stdout, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "\ndstream: invalid configuration:\n%v\n", err)
			return 2
		}
		return 0
	case "replay":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return replayCommand(ctx, args[1:], stdout, stderr)
	case "", "run":
	default:
		fmt.Fprintf(stderr, "dstream: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(stderr, "dstream: invalid configuration:\n%v\n", err)
		return 2
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := zerolog.New(stderr).Level(level).With().Timestamp().Logger()
	gc := gcpolicy.Apply(cfg.GCPercent, "/sys/fs/cgroup")
	log.Info().Int("percent", gc.Percent).Str("percent_from", gc.PercentFrom).
		Int64("memory_limit", gc.MemoryLimit).Str("limit_from", gc.LimitFrom).Msg("garbage collector")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := runProcessor(ctx, cfg, log, stdout); err != nil {
		log.Error().Err(err).Msg("dstream stopped")
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `dstream: Spark Streaming's discretized streams on Kafka.

Usage:
  dstream           run the job configured by DSTREAM_* variables
                    (with no DSTREAM_KAFKA_BROKERS: the in-process demo)
  dstream config    print the effective configuration, secrets masked
  dstream replay --batch N | --from N --to M
                    recompute batches from their recorded plans and print their output,
                    without writing to Kafka or touching the checkpoint
  dstream help      print this help

Settings (environment variables):
`)
	var zero Config
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, s := range zero.settings() {
		def := s[2]
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s[0], def, s[3])
	}
	tw.Flush()
}

func printSettings(w io.Writer, cfg Config) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, s := range cfg.settings() {
		fmt.Fprintf(tw, "%s=%s\n", s[0], s[1])
	}
	tw.Flush()
}

func parseLevel(s string) (zerolog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return zerolog.DebugLevel, nil
	case "info", "":
		return zerolog.InfoLevel, nil
	case "warn":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.InfoLevel, errors.New("unknown level")
}
