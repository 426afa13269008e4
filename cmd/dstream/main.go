// Command dstream runs a dstream job: Kafka in, micro-batches through the
// DStream graph, results out to Kafka exactly once, checkpoints in Redis.
//
// With no DSTREAM_KAFKA_BROKERS it runs the demo: an in-process Kafka and
// Redis fed by a built-in log generator, nothing durable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dstream-io/dstream/internal/gcpolicy"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1 // the job failed
	exitUsage  = 2 // a bad command line or configuration
)

// run runs the command line args and returns the exit code. Help asked for
// goes to stdout with exit 0; a bad command line or configuration is told on
// stderr with exit 2.
func run(args []string, stdout, stderr io.Writer) int {
	cmd, rest := "run", args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, rest = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runCommand(rest, stdout, stderr)
	case "config":
		return configCommand(rest, stdout, stderr)
	case "replay":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return replayCommand(ctx, rest, stdout, stderr)
	case "reset":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return resetCommand(ctx, rest, stdout, stderr)
	case "version":
		return versionCommand(rest, stdout, stderr)
	case "help":
		return helpCommand(rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "dstream: unknown command %q\n\n", cmd)
	usage(stderr)
	return exitUsage
}

// parseFlags parses a command's flags. --help prints help to stdout; an
// unknown flag or a stray argument is reported on stderr with the help. It
// returns false with the exit code when the command should not go on.
func parseFlags(fs *flag.FlagSet, args []string, help func(io.Writer), stdout, stderr io.Writer) (bool, int) {
	// The flag package would print its own usage to its output; the
	// command's help is printed here instead, to stdout when asked for.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		help(stdout)
		return false, exitOK
	case err != nil:
		fmt.Fprintf(stderr, "dstream %s: %v\n\n", fs.Name(), err)
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "dstream %s: unexpected argument %q\n\n", fs.Name(), fs.Arg(0))
	default:
		return true, exitOK
	}
	help(stderr)
	return false, exitUsage
}

func runCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if ok, code := parseFlags(fs, args, usage, stdout, stderr); !ok {
		return code
	}
	if *showVersion {
		printVersion(stdout)
		return exitOK
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(stderr, "dstream: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := zerolog.New(stderr).Level(level).With().Timestamp().Logger()
	// go-redis has one logger for the whole process (redis.SetLogger, no
	// per-client option), which prints plain text lines to stderr by
	// default: set it once, here, before any client exists, so that its
	// lines are JSON like every other.
	redis.SetLogger(newRedisLogger(log))
	b := buildInfo()
	log.Info().Str("version", b.Version).Str("revision", b.Revision).Str("go_version", b.GoVersion).Msg("dstream")
	gc := gcpolicy.Apply(cfg.GCPercent, "/sys/fs/cgroup")
	log.Info().Int("percent", gc.Percent).Str("percent_from", gc.PercentFrom).
		Int64("memory_limit", gc.MemoryLimit).Str("limit_from", gc.LimitFrom).
		Int64("max_headroom", gcpolicy.MaxHeadroom).Bool("headroom_bounded", gc.Bounded()).Msg("garbage collector")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	defer gc.StartBound(ctx, time.Second)()
	if err := runProcessor(ctx, cfg, log, stdout); err != nil {
		log.Error().Err(err).Msg("dstream stopped")
		return exitFailed
	}
	return exitOK
}

func configCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("config", flag.ContinueOnError)
	if ok, code := parseFlags(fs, args, configHelp, stdout, stderr); !ok {
		return code
	}
	cfg, err := loadConfig()
	printSettings(stdout, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "\ndstream: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	return exitOK
}

func configHelp(w io.Writer) {
	fmt.Fprint(w, `usage: dstream config

Prints the effective configuration as VARIABLE=value lines: the DSTREAM_*
variables set, and the defaults of the others. Secrets are masked. Exits 2,
naming what to change, if the configuration is invalid.
`)
}

func versionCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	help := func(w io.Writer) {
		fmt.Fprint(w, "usage: dstream version\n\nPrints dstream's version, its VCS revision and the Go version it was built with.\n")
	}
	if ok, code := parseFlags(fs, args, help, stdout, stderr); !ok {
		return code
	}
	printVersion(stdout)
	return exitOK
}

func helpCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout)
		return exitOK
	}
	switch args[0] {
	case "run":
		usage(stdout)
	case "config", "replay", "reset", "version":
		return run([]string{args[0], "--help"}, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "dstream help: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return exitOK
}

func usage(w io.Writer) {
	fmt.Fprint(w, `dstream: Spark Streaming's discretized streams on Kafka.

Usage:
  dstream [run]     run the job configured by DSTREAM_* variables
                    (with no DSTREAM_KAFKA_BROKERS: the in-process demo)
  dstream config    print the effective configuration, secrets masked
  dstream replay --batch N | --from N --to M
                    recompute batches from their recorded plans and print their output,
                    without writing to Kafka or touching the checkpoint
  dstream version   print the version (also: dstream --version)
  dstream help [command]
                    print this help, or a command's (also: dstream COMMAND --help)

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

// durMillis is a duration in milliseconds, for log fields named *_ms: a
// float, so that sub-millisecond times keep their precision.
func durMillis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
