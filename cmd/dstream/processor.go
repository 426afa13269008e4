package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/internal/wiring"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/rdd"
	"github.com/dstream-io/dstream/state"
)

// runProcessor wires Kafka, Redis and the job, serves HTTP, and runs until
// ctx is done (then stops gracefully within the grace period) or it fails.
func runProcessor(ctx context.Context, cfg Config, log zerolog.Logger, stdout io.Writer) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	bgCtx, cancelBg := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBg()

	demo := cfg.Demo()
	if demo {
		d, err := startDemo(bgCtx, cfg, log)
		if err != nil {
			return err
		}
		defer d.Close()
		wg.Go(func() { d.Generate(bgCtx) })
		cfg.KafkaBrokers, cfg.RedisAddr = d.Brokers(), d.RedisAddr()
	}

	m := newMetrics()
	base, err := kafkaOpts(cfg, log)
	if err != nil {
		return err
	}
	base = append(base, kgo.WithHooks(m.kafka))
	srcClient, err := kgo.NewClient(append(base, kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer srcClient.Close()

	rdb, err := redisClient(cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := preflight(ctx, cfg, srcClient, rdb, log); err != nil {
		return err
	}
	store, err := state.NewRedis(rdb, state.Config{Job: cfg.JobID, LeaseTTL: cfg.LeaseTTL}, state.WithLogger(log))
	if err != nil {
		return err
	}
	for _, w := range store.Check(ctx) {
		if demo {
			continue // the demo's Redis is in memory by design
		}
		log.Warn().Str("component", "state").Msg(w)
	}

	sink, err := wiring.NewSink(ctx, wiring.SinkConfig{Job: cfg.JobID, Output: cfg.OutputTopic, DeadLetters: cfg.DeadLetterTopic}, base, log)
	if err != nil {
		return err
	}
	defer sink.Close()

	countries, err := loadCountries(cfg)
	if err != nil {
		return err
	}
	if countries != nil {
		log.Info().Int("ips", countries.Len()).Str("file", cfg.CountriesFile).Msg("countries loaded")
	}

	status := newStatus(cfg, 60)
	var estimator *ingest.RateEstimator
	srcOpts := []ingest.Option{ingest.WithLogger(log)}
	if cfg.Backpressure {
		estimator = ingest.NewRateEstimator(cfg.BatchInterval, cfg.BackpressureMinRate)
		srcOpts = append(srcOpts, ingest.WithBackpressure(estimator))
	}
	src, err := ingest.New(srcClient, ingest.Config{
		Topic: cfg.InputTopic, StartOffset: ingest.StartOffset(cfg.StartOffset),
		BatchInterval: cfg.BatchInterval, MaxRatePerPartition: cfg.MaxRatePerPartition,
	}, srcOpts...)
	if err != nil {
		return err
	}
	m.watchLag(src, srcClient)

	malformedLog := log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second})
	job := microbatch.NewJob(cfg.BatchInterval,
		microbatch.WithLogger(log),
		microbatch.WithStdout(stdout),
		microbatch.WithLeaseRenewal(cfg.LeaseTTL/4),
		microbatch.WithListener(func(b microbatch.BatchStats) {
			m.observe(b)
			status.observe(b)
			if estimator != nil {
				estimator.Observe(b)
			}
		}))
	job.Checkpoint(store)
	pipeline := topips.Build(job, src, m.countAborts(sink), topips.Config{
		Window: cfg.Window, Slide: cfg.Slide, TopN: cfg.TopN,
		InputTopic: cfg.InputTopic, DeadLetterTopic: cfg.DeadLetterTopic,
		Countries: countries, Pprint: true,
		OnMalformed: func(rec microbatch.Record, reason error) {
			m.malformed.Inc()
			malformedLog.Warn().Int32("partition", rec.Partition).Int64("offset", rec.Offset).Str("reason", reason.Error()).Msg("malformed line sent to dead letters")
		},
	})
	pipeline.Results.ForeachBatch(func(_ context.Context, b microbatch.BatchInfo, batch []topips.Result) error {
		status.results(b, batch)
		return nil
	})

	srv := &http.Server{Addr: cfg.HTTPAddr, Handler: newHandler(m, status), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: listen on %s: %w", cfg.HTTPAddr, err)
	}
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("http server")
		}
	})
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	log.Info().Str("job", cfg.JobID).Strs("brokers", cfg.KafkaBrokers).Str("input", cfg.InputTopic).
		Str("output", cfg.OutputTopic).Dur("interval", cfg.BatchInterval).Dur("window", cfg.Window).
		Dur("slide", cfg.Slide).Str("http", ln.Addr().String()).Msg("dstream starting")
	if err := job.Start(bgCtx); err != nil {
		return err
	}
	ended := make(chan struct{})
	wg.Go(func() {
		_ = job.AwaitTermination()
		close(ended)
	})
	select {
	case <-ctx.Done():
		log.Info().Dur("grace", cfg.ShutdownGrace).Msg("stopping: finishing the batch in flight")
		job.Stop(true)
		if ended, err := job.AwaitTerminationOrTimeout(cfg.ShutdownGrace); !ended {
			log.Warn().Msg("grace period over: abandoning the batch in flight; it reruns from its plan on restart")
			job.Stop(false)
			return job.AwaitTermination()
		} else if err != nil {
			return err
		}
		return nil
	case <-ended:
		return job.AwaitTermination()
	}
}

func kafkaOpts(cfg Config, log zerolog.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.KafkaBrokers...),
		kgo.WithLogger(kgoLogger{log.With().Str("component", "kafka").Logger()}),
	}
	if cfg.KafkaTLS {
		tc, err := tlsConfig(cfg.KafkaTLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka tls: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if cfg.KafkaSASLMechanism == "SCRAM-SHA-512" {
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.KafkaSASLUser, Pass: cfg.KafkaSASLPassword}.AsSha512Mechanism()))
	}
	return opts, nil
}

func redisClient(cfg Config) (*redis.Client, error) {
	opts := &redis.Options{Addr: cfg.RedisAddr, Username: cfg.RedisUser, Password: cfg.RedisPassword}
	if cfg.RedisTLS {
		tc, err := tlsConfig(cfg.RedisTLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("redis tls: %w", err)
		}
		opts.TLSConfig = tc
	}
	return redis.NewClient(opts), nil
}

func tlsConfig(caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// kgoLogger adapts zerolog to franz-go's logger; franz-go's info is chatty,
// so only its warnings and errors pass.
type kgoLogger struct{ log zerolog.Logger }

func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	ev := l.log.Warn()
	if level == kgo.LogLevelError {
		ev = l.log.Error()
	}
	for i := 0; i+1 < len(keyvals); i += 2 {
		ev = ev.Interface(fmt.Sprint(keyvals[i]), keyvals[i+1])
	}
	ev.Msg(msg)
}

// loadCountries reads DSTREAM_COUNTRIES_FILE, if set.
func loadCountries(cfg Config) (*rdd.Table[string, string], error) {
	if cfg.CountriesFile == "" {
		return nil, nil
	}
	f, err := os.Open(cfg.CountriesFile)
	if err != nil {
		return nil, fmt.Errorf("countries: %w", err)
	}
	defer f.Close()
	return topips.LoadCountries(f)
}
