// Command logsender produces web-log lines of the lecture's shape to a Kafka
// topic at a given rate, with a skewed IP popularity, for a given count or
// until stopped.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/weblog"
)

type options struct {
	brokers    string
	topic      string
	rate       int
	count      int64
	partitions int
	ips        int
	seed       uint64
}

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("logsender", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.brokers, "brokers", os.Getenv("DSTREAM_KAFKA_BROKERS"), "Kafka brokers, comma-separated (env DSTREAM_KAFKA_BROKERS)")
	fs.StringVar(&o.topic, "topic", envOr("LOGSENDER_TOPIC", "logs"), "topic to produce to (env LOGSENDER_TOPIC)")
	fs.IntVar(&o.rate, "rate", envInt("LOGSENDER_RATE", 1000), "lines per second, 0 for as fast as possible (env LOGSENDER_RATE)")
	fs.Int64Var(&o.count, "count", int64(envInt("LOGSENDER_COUNT", 0)), "lines to send, 0 until stopped (env LOGSENDER_COUNT)")
	fs.IntVar(&o.partitions, "partitions", envInt("LOGSENDER_PARTITIONS", 4), "partitions of the topic if it must be created (env LOGSENDER_PARTITIONS)")
	fs.IntVar(&o.ips, "ips", envInt("LOGSENDER_IPS", 1000), "distinct source IPs (env LOGSENDER_IPS)")
	fs.Uint64Var(&o.seed, "seed", uint64(envInt("LOGSENDER_SEED", 1)), "random seed: the same seed sends the same lines (env LOGSENDER_SEED)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.brokers == "" {
		fmt.Fprintln(stderr, "logsender: no brokers: pass --brokers or set DSTREAM_KAFKA_BROKERS")
		return 2
	}
	if o.rate < 0 || o.count < 0 || o.partitions < 1 || o.ips < 1 {
		fmt.Fprintln(stderr, "logsender: --rate and --count must be >= 0, --partitions and --ips >= 1")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	sent, err := send(ctx, o)
	fmt.Fprintf(stderr, "logsender: sent %d lines to %s\n", sent, o.topic)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "logsender:", err)
		return 1
	}
	return 0
}

func send(ctx context.Context, o options) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(o.brokers, ",")...),
		kgo.DefaultProduceTopic(o.topic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, int32(o.partitions), -1, nil, o.topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return 0, fmt.Errorf("create topic %s: %w", o.topic, err)
	}
	gen := weblog.NewGenerator(o.seed, o.ips)
	var sent int64
	var produceErr error
	errc := make(chan error, 1)
	start := time.Now()
	for o.count == 0 || sent < o.count {
		if o.rate > 0 && sent%int64(max(1, o.rate/100)) == 0 {
			due := start.Add(time.Duration(float64(sent) / float64(o.rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return sent, cl.Flush(context.Background())
				case <-time.After(d):
				}
			}
		}
		select {
		case produceErr = <-errc:
			return sent, produceErr
		case <-ctx.Done():
			return sent, cl.Flush(context.Background())
		default:
		}
		cl.Produce(ctx, &kgo.Record{Value: gen.Append(nil)}, func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
		sent++
	}
	if err := cl.Flush(ctx); err != nil {
		return sent, err
	}
	select {
	case produceErr = <-errc:
	default:
	}
	return sent, produceErr
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return def
}
