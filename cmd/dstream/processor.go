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
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/dstream-io/dstream/ingest"
	"github.com/dstream-io/dstream/internal/topips"
	"github.com/dstream-io/dstream/internal/wiring"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/rdd"
	"github.com/dstream-io/dstream/state"
)

// historyLen is how many recent batches the status keeps, and Redis for it.
const historyLen = 60

// runProcessor wires Kafka, Redis and the job, serves HTTP, and runs until
// ctx is done (then stops gracefully within the grace period) or the job
// fails. It stands by while another instance holds the job, goes back to
// standing by when another instance takes the job over, and, when the job
// cannot run (microbatch.ErrPermanent), stays up and refuses until ctx is
// done, rather than exit and be restarted into the same refusal.
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
	m.interval.Set(cfg.BatchInterval.Seconds())
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
	// reader reads the job's progress without taking the job.
	reader, err := state.NewRedis(rdb, state.Config{Job: cfg.JobID, LeaseTTL: cfg.LeaseTTL}, state.WithLogger(log))
	if err != nil {
		return err
	}
	for _, w := range reader.Check(ctx) {
		if demo {
			continue // the demo's Redis is in memory by design
		}
		log.Warn().Str("component", "state").Msg(w)
	}
	countries, err := loadCountries(cfg)
	if err != nil {
		return err
	}
	if countries != nil {
		log.Info().Int("ips", countries.Len()).Str("file", cfg.CountriesFile).Msg("countries loaded")
	}

	p := &processor{
		cfg: cfg, log: log, stdout: stdout, base: base, client: srcClient, adm: kadm.NewClient(srcClient),
		rdb: rdb, reader: reader, history: state.NewHistory(rdb, cfg.JobID, historyLen), countries: countries,
		m: m, status: newStatus(cfg, demo, historyLen), batches: newBatchLog(log),
		sampled: log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second}),
	}
	p.status.live = live{lag: p.lag, rate: m.backpressureRate, state: p.stateStats, lookup: p.lookup, tasks: p.tasks}
	m.watchState(p.stateStats)

	srv := &http.Server{Addr: cfg.HTTPAddr, Handler: newHandler(m, p.status), ReadHeaderTimeout: 5 * time.Second}
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
	wg.Go(func() { p.checkHealth(bgCtx) })
	wg.Go(func() { p.follow(bgCtx) })

	b := buildInfo()
	log.Info().Str("job", cfg.JobID).Strs("brokers", cfg.KafkaBrokers).Str("input", cfg.InputTopic).
		Str("output", cfg.OutputTopic).Str("interval", cfg.BatchInterval.String()).Str("window", cfg.Window.String()).
		Str("slide", cfg.Slide.String()).Str("http", ln.Addr().String()).Str("version", b.Version).Msg("dstream starting")
	if err := p.claimShards(ctx); err != nil {
		if errors.Is(err, microbatch.ErrPermanent) {
			return p.refuse(ctx, err)
		}
		return nil // stopped while Redis was down
	}
	if cfg.Shards > 1 {
		return p.runShards(ctx, bgCtx)
	}
	return p.run(ctx, bgCtx)
}

// processor runs the job for as long as dstream runs. What lives as long
// as the process (clients, metrics, status) is here; a job, its store,
// source and sink are built anew for every turn as the active instance.
type processor struct {
	cfg       Config
	log       zerolog.Logger
	sampled   zerolog.Logger // for what may repeat every batch
	stdout    io.Writer
	base      []kgo.Opt
	client    *kgo.Client // the input's, read_committed
	adm       *kadm.Client
	rdb       redisConn
	reader    *state.Redis
	history   *state.History
	countries *rdd.Table[string, string]
	m         *metrics
	status    *status
	batches   *batchLog
	running   atomic.Pointer[running]     // the job, while this instance is active
	shards    atomic.Pointer[shardRunner] // a sharded job's tasks here
}

// running is the job of the active instance: what lookups, state sizes and
// lag read while it runs.
type running struct {
	job      *microbatch.Job
	pipeline *topips.Pipeline
	src      *ingest.Source
}

// run runs turns of the job until ctx is done or one fails.
func (p *processor) run(ctx, bgCtx context.Context) error {
	for {
		err := p.turn(ctx, bgCtx)
		switch {
		case ctx.Err() != nil:
			return err
		case errors.Is(err, state.ErrCheckpointLost), errors.Is(err, microbatch.ErrConflict):
			// The checkpoint vanished, or went back (a Redis restored from
			// an older AOF): taking the job again recovers it, healing the
			// batches it lost from the output's markers.
			p.log.Error().Err(err).Msg("the checkpoint is not where this instance left it: taking the job again, to recover it from the output's markers")
		case errors.Is(err, microbatch.ErrFenced):
			p.m.fenced.Inc()
			p.status.fenced()
			p.log.Warn().Err(err).Msg("another instance took the job over: standing by again")
		case errors.Is(err, microbatch.ErrPermanent):
			return p.refuse(ctx, err)
		default:
			return err
		}
		// A fenced instance waits a moment, so that a fault that fences it
		// at once cannot spin.
		t := time.NewTimer(p.cfg.LeaseTTL / 4)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// refuse keeps the process up, not ready, until ctx is done: restarting
// cannot fix a permanent error, and a process that exits is restarted into
// the same refusal, over and over.
func (p *processor) refuse(ctx context.Context, err error) error {
	p.status.refuse(err.Error())
	p.m.refused.Set(1)
	p.m.setRole(roleRefused)
	p.log.Error().Err(err).Msg("refusing to run the job: staying up, not ready, until stopped; /api/status shows why")
	<-ctx.Done()
	p.log.Info().Msg("stopping")
	return nil
}

// turn builds a job and runs it: it stands by until it gets the job, runs
// its batches, and returns when ctx is done (after a graceful stop) or the
// job ends.
func (p *processor) turn(ctx, bgCtx context.Context) error {
	cfg := p.cfg
	store, err := state.NewRedis(p.rdb, state.Config{Job: cfg.JobID, LeaseTTL: cfg.LeaseTTL}, state.WithLogger(p.log))
	if err != nil {
		return err
	}
	sink, err := wiring.NewSink(ctx, wiring.SinkConfig{Job: cfg.JobID, Output: cfg.OutputTopic, DeadLetters: cfg.DeadLetterTopic, Control: cfg.controlTopic()}, p.base, p.log)
	if err != nil {
		return err
	}
	defer sink.Close()
	var estimator *ingest.RateEstimator
	srcOpts := []ingest.Option{ingest.WithLogger(p.log)}
	if cfg.Backpressure {
		estimator = ingest.NewRateEstimator(cfg.BatchInterval, cfg.BackpressureMinRate)
		srcOpts = append(srcOpts, ingest.WithBackpressure(estimator))
	}
	src, err := ingest.New(p.client, ingest.Config{
		Topic: cfg.InputTopic, StartOffset: ingest.StartOffset(cfg.StartOffset),
		BatchInterval: cfg.BatchInterval, MaxRatePerPartition: cfg.MaxRatePerPartition,
		OnRecreated: ingest.RecreatePolicy(cfg.OnTopicRecreated),
	}, srcOpts...)
	if err != nil {
		return err
	}

	job := microbatch.NewJob(cfg.BatchInterval,
		microbatch.WithLogger(p.log),
		microbatch.WithStdout(p.stdout),
		microbatch.WithLeaseRenewal(cfg.LeaseTTL/4),
		microbatch.WithStatePartFormat(cfg.StateFormat),
		microbatch.WithListener(func(b microbatch.BatchStats) {
			if estimator != nil {
				estimator.Observe(b)
			}
			p.committed(bgCtx, b)
		}))
	var pipeline *topips.Pipeline
	job.Checkpoint(&trackedStore{
		Store: store,
		acquired: func(ctx context.Context) {
			p.acquired(ctx, &running{job: job, pipeline: pipeline, src: src}, estimator)
		},
		planned: func(plan microbatch.Plan) { p.status.planned(plan, lagAtPlan(src, plan)) },
	})
	pipeline = p.buildPipeline(job, src, p.m.countAborts(sink))

	p.setRole(roleStandby)
	defer func() {
		p.setRole(roleStandby)
		p.running.Store(nil)
		p.m.skew.Store(nil)
		p.m.watchLag(nil, nil)
		p.m.rate.Store(nil)
	}()
	if err := job.Start(bgCtx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ended := make(chan struct{})
	wg.Go(func() {
		_ = job.AwaitTermination()
		close(ended)
	})
	select {
	case <-ctx.Done():
		return p.stop(job)
	case <-ended:
		return job.AwaitTermination()
	}
}

// stop stops the job on SIGTERM: a batch in flight may finish within the
// grace period; standing by or between batches, the job ends at once.
func (p *processor) stop(job *microbatch.Job) error {
	if p.status.role() == roleActive {
		p.log.Info().Str("grace", p.cfg.ShutdownGrace.String()).Msg("stopping: finishing the batch in flight")
	} else {
		p.log.Info().Msg("stopping")
	}
	job.Stop(true)
	if ended, err := job.AwaitTerminationOrTimeout(p.cfg.ShutdownGrace); !ended {
		p.log.Warn().Msg("grace period over: abandoning the batch in flight; it reruns from its plan on restart")
		job.Stop(false)
		return job.AwaitTermination()
	} else if err != nil {
		return err
	}
	return nil
}

func (p *processor) setRole(r role) {
	p.status.setRole(r)
	p.m.setRole(p.status.role())
	if p.shards.Load() == nil { // an unsharded job is one task, run by the active instance
		p.m.tasks.Set(map[bool]float64{true: 1}[r == roleActive])
	}
}

// unshardedTask names the one task of an unsharded job in the metrics.
const unshardedTask = "job"

// acquired runs when the job's Store was acquired: this instance is now
// the active one. The recent batches that other instances ran are loaded
// before the first batch here.
func (p *processor) acquired(ctx context.Context, r *running, estimator *ingest.RateEstimator) {
	p.setRole(roleActive)
	p.running.Store(r)
	p.m.skew.Store(r.job)
	p.m.watchLag(r.src, p.client)
	if estimator != nil {
		p.m.rate.Store(estimator)
	}
	p.loadHistory(ctx)
}

// committed is the job's listener: it runs on the job's goroutine after
// every commit.
func (p *processor) committed(ctx context.Context, b microbatch.BatchStats) {
	rec := p.status.observe(b, time.Now())
	p.m.observe(b)
	p.m.taskLast.WithLabelValues(unshardedTask).Set(float64(b.ID))
	p.batches.observe(b)
	ctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	err := p.history.Record(ctx, state.BatchRecord{
		ID: b.ID, Time: b.Time, Records: b.Records, SchedulingDelay: b.SchedulingDelay,
		ProcessingTime: b.ProcessingTime, CheckpointTime: b.CheckpointTime, OutputRecords: b.Messages,
		StateChanges: b.StateChanges, Lag: rec.Lag, CommittedAt: rec.CommittedAt,
	})
	if err != nil {
		p.sampled.Warn().Err(err).Msg("the status history misses a batch")
	}
}

// historyTimeout bounds the Redis calls for the status history.
const historyTimeout = 5 * time.Second

// loadHistory reads the job's progress and recent batches from Redis.
func (p *processor) loadHistory(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, historyTimeout)
	defer cancel()
	err := func() error {
		progress, err := p.reader.Progress(ctx)
		if err != nil {
			return err
		}
		committed := progress.Committed
		recs, err := p.history.Recent(ctx, historyLen)
		if err != nil {
			return err
		}
		from, to := committed, committed
		if len(recs) > 0 {
			from, to = min(from, recs[0].ID), max(to, recs[len(recs)-1].ID)
		}
		var plans []microbatch.Plan
		if to > 0 {
			if plans, err = p.reader.Plans(ctx, max(from, 1), to); err != nil {
				return err
			}
		}
		p.status.loadHistory(recs, plans, committed)
		return nil
	}()
	if err != nil {
		p.log.Debug().Err(err).Msg("read the job's history")
		return
	}
	c := p.status.committed()
	p.m.committed(c.ID, c.Time, c.CommittedAt)
}

// follow keeps a standby's view of the job current: its committed batch
// (dstream_last_committed_batch and the status) and recent batches, read
// from Redis once a batch interval (1 s to 10 s).
func (p *processor) follow(ctx context.Context) {
	t := time.NewTicker(min(max(p.cfg.BatchInterval, time.Second), 10*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p.status.role() != roleActive {
			p.loadHistory(ctx)
		}
	}
}

// healthEvery is how often Redis and Kafka are checked for readiness.
const healthEvery = 2 * time.Second

// checkHealth pings Redis and Kafka every healthEvery for readiness.
func (p *processor) checkHealth(ctx context.Context) {
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, healthEvery)
		redisErr := p.rdb.Ping(rctx).Err()
		cancel()
		kctx, cancel := context.WithTimeout(ctx, healthEvery)
		kafkaErr := p.client.Ping(kctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		p.status.checked(redisErr, kafkaErr)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lag is the lag of every input partition: past the last planned batch on
// the active instance, past latest (the last committed batch's ranges) on
// a standby.
func (p *processor) lag(ctx context.Context, latest []microbatch.Range) []partitionLag {
	if r := p.running.Load(); r != nil {
		if cut := r.src.LastCut(); len(cut) > 0 {
			return lagOf(ctx, p.adm, r.src.Topic(), cutPositions(cut))
		}
	}
	return lagOf(ctx, p.adm, p.cfg.InputTopic, rangesLag(latest))
}

// stateStats is the size of the running job's state (nil on a standby);
// a sharded job's tasks here name theirs task/operator.
func (p *processor) stateStats() []microbatch.StateStats {
	if sr := p.shards.Load(); sr != nil {
		var out []microbatch.StateStats
		for _, run := range sr.running() {
			for _, st := range run.job.StateStats() {
				st.Operator = run.spec.name + "/" + st.Operator
				out = append(out, st)
			}
		}
		return out
	}
	if r := p.running.Load(); r != nil {
		return r.job.StateStats()
	}
	return nil
}

// lookup returns the running job's state lookup (nil on a standby). For a
// sharded job it answers the IPs whose task runs here.
func (p *processor) lookup() func(ip string) (topips.Entry, bool) {
	if sr := p.shards.Load(); sr != nil {
		return func(ip string) (topips.Entry, bool) {
			e, ok, _ := sr.lookup(ip)
			return e, ok
		}
	}
	if r := p.running.Load(); r != nil {
		return r.pipeline.Lookup
	}
	return nil
}

// tasks lists the job's tasks, where each runs and how far it got.
func (p *processor) tasks(ctx context.Context) []apiTask {
	if sr := p.shards.Load(); sr != nil {
		return sr.view(ctx)
	}
	t := apiTask{Name: unshardedTask, Here: p.status.role() == roleActive, CommittedBatch: p.status.committed().ID}
	if owner, err := p.reader.Holder(ctx); err == nil && owner != "" {
		t.Replica = &owner
	}
	return []apiTask{t}
}

// lagAtPlan is how many records src left past plan's end as its last cut
// saw the partitions' ends: when plan's batch was cut, or a little later
// for a batch whose plan is recorded with the batches after it (a group
// commit). It is -1 if the last cut does not follow plan (a plan recorded
// before, recovered).
func lagAtPlan(src *ingest.Source, plan microbatch.Plan) int64 {
	cut := src.LastCut()
	if len(cut) == 0 {
		return -1
	}
	var lag int64
	for _, c := range cut {
		until := int64(-1)
		for _, r := range plan.Ranges {
			if r.Topic == src.Topic() && r.Partition == c.Partition {
				until = r.Until
				break
			}
		}
		if until < 0 || until > c.Until {
			return -1
		}
		lag += max(0, c.End-until)
	}
	return lag
}

// trackedStore is the job's Store as the processor watches it: it tells
// when this instance acquires the job and which plans it records.
type trackedStore struct {
	microbatch.Store
	acquired func(ctx context.Context)
	planned  func(microbatch.Plan)
}

// Acquire implements microbatch.Store.
func (s *trackedStore) Acquire(ctx context.Context) (microbatch.Meta, error) {
	meta, err := s.Store.Acquire(ctx)
	if err == nil {
		s.acquired(ctx)
	}
	return meta, err
}

// RecordPlan implements microbatch.Store.
func (s *trackedStore) RecordPlan(ctx context.Context, plans ...microbatch.Plan) error {
	err := s.Store.RecordPlan(ctx, plans...)
	if err == nil {
		for _, p := range plans {
			s.planned(p)
		}
	}
	return err
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

// buildPipeline builds the reference job on job (the whole job, or one task
// of a sharded one): malformed lines counted and logged, results shown on
// the status page.
func (p *processor) buildPipeline(job *microbatch.Job, src microbatch.Source, sink microbatch.TransactionalSink) *topips.Pipeline {
	cfg := p.cfg
	pipeline := topips.Build(job, src, sink, topips.Config{
		Window: cfg.Window, Slide: cfg.Slide, TopN: cfg.TopN,
		InputTopic: cfg.InputTopic, DeadLetterTopic: cfg.DeadLetterTopic,
		Countries: p.countries, Pprint: true,
		OnMalformed: func(rec microbatch.Record, reason error) {
			p.m.malformed.Inc()
			p.sampled.Warn().Int32("partition", rec.Partition).Int64("offset", rec.Offset).Str("reason", reason.Error()).Msg("malformed line sent to dead letters")
		},
	})
	pipeline.Results.ForeachBatch(func(_ context.Context, b microbatch.BatchInfo, batch []topips.Result) error {
		p.status.results(b, batch)
		return nil
	})
	return pipeline
}
