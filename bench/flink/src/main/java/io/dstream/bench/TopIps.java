package io.dstream.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.JobStatus;
import org.apache.flink.api.common.accumulators.LongMaximum;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.PipelineOptions;
import org.apache.flink.configuration.RestOptions;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

/**
 * TopIps is dstream's reference job written for Apache Flink's DataStream
 * API, the way a Flink user would: every slide (10 s of event time) the top 3
 * source IPs by accesses over the window (30 s), each with its country and
 * its running total since the stream began, written to Kafka exactly once.
 *
 * <p>Event time is the Kafka record's timestamp, which the benchmark's
 * pre-load sets so that the 10 s buckets of event time are exactly dstream's
 * batches; each partition's timestamps only grow, and the Kafka source keeps
 * a watermark per partition, so no record is late and every window is exact.
 *
 * <p>The plan, per IP: counts in tumbling 10 s panes (one state update per
 * line), then a sliding 30 s / 10 s window over the panes (three panes a
 * window rather than every line three times: Flink's own advice for
 * sliding windows over many elements). A window's function also keeps the
 * IP's running total in per-key state: the newest pane of a window is the
 * 10 s that ends with it, and a key's windows fire in the order of their
 * ends, so the total it adds each pane to is the total as of the window's
 * end, exactly dstream's. Then per window end the top 3 (a keyed function
 * with an event-time timer at the window's end, which fires once every
 * count of that window has arrived), the country (a CSV loaded by the
 * operator), and a transactional KafkaSink; checkpoints every batch
 * interval commit the transactions.
 *
 * <p>The final running total of every IP goes to a second topic (a side
 * output written exactly once too) whenever an IP's window holds its oldest
 * pane only, that is when the IP went quiet: at the end of the input every
 * IP does, so the last total of each IP in that topic is its total.
 *
 * <p>Usage: {@code TopIps --bootstrap H:P --input T --output T --totals T
 * --countries FILE --checkpoints DIR [--parallelism 2] [--checkpoint-ms
 * 10000]}. The source is bounded at the topic's end offsets as the job
 * starts, so the job ends when it has read and committed everything. It
 * prints {@code RUNNING} when the job runs and {@code SECONDS p c} when it
 * has finished: p seconds from RUNNING to its last ranking, c to the end of
 * the job, after the checkpoint that committed the output.
 */
public final class TopIps {
  static final int TOP_N = 3;
  static final long PANE_MS = 10_000;
  static final long WINDOW_MS = 30_000;

  private TopIps() {}

  /** Returns the source IP of a web-log line (its second field), or null. */
  static String sourceIp(String line) {
    int a = line.indexOf(' ');
    if (a < 0) {
      return null;
    }
    int b = line.indexOf(' ', a + 1);
    if (b <= a + 1) {
      return null;
    }
    return line.substring(a + 1, b);
  }

  /** The count of one IP in one pane or window, ending at end (ms). */
  public static final class IpCount {
    public String ip;
    public long end;
    public long count;
    public long total;
    public int rank;

    public IpCount() {}

    IpCount(String ip, long end, long count, long total) {
      this.ip = ip;
      this.end = end;
      this.count = count;
      this.total = total;
    }
  }

  /** Ranking order: count descending, then IP ascending. */
  static final Comparator<IpCount> RANKING =
      Comparator.comparingLong((IpCount c) -> c.count).reversed().thenComparing(c -> c.ip);

  /** Counts lines. */
  static final class Count implements AggregateFunction<String, Long, Long> {
    @Override
    public Long createAccumulator() {
      return 0L;
    }

    @Override
    public Long add(String ip, Long acc) {
      return acc + 1;
    }

    @Override
    public Long getResult(Long acc) {
      return acc;
    }

    @Override
    public Long merge(Long a, Long b) {
      return a + b;
    }
  }

  /** Labels a pane's count with its IP and end. */
  static final class Pane extends ProcessWindowFunction<Long, IpCount, String, TimeWindow> {
    @Override
    public void process(String ip, Context ctx, Iterable<Long> counts, Collector<IpCount> out) {
      out.collect(new IpCount(ip, ctx.window().getEnd(), counts.iterator().next(), 0));
    }
  }

  /**
   * Sums the panes of a window, keeping the newest and the second newest
   * pane's count apart: the window's function needs them.
   */
  static final class SumPanes implements AggregateFunction<IpCount, long[], long[]> {
    // acc: [sum, end of newest pane, its count, end of the second, its count]
    @Override
    public long[] createAccumulator() {
      return new long[] {0, Long.MIN_VALUE, 0, Long.MIN_VALUE, 0};
    }

    @Override
    public long[] add(IpCount p, long[] acc) {
      acc[0] += p.count;
      if (p.end > acc[1]) {
        acc[3] = acc[1];
        acc[4] = acc[2];
        acc[1] = p.end;
        acc[2] = p.count;
      } else if (p.end > acc[3]) {
        acc[3] = p.end;
        acc[4] = p.count;
      }
      return acc;
    }

    @Override
    public long[] getResult(long[] acc) {
      return acc;
    }

    @Override
    public long[] merge(long[] a, long[] b) {
      long[] m = createAccumulator();
      for (long[] x : new long[][] {a, b}) {
        if (x[1] != Long.MIN_VALUE) {
          add(new IpCount(null, x[1], x[2], 0), m);
        }
        if (x[3] != Long.MIN_VALUE) {
          add(new IpCount(null, x[3], x[4], 0), m);
        }
      }
      m[0] = a[0] + b[0];
      return m;
    }
  }

  /**
   * The accumulator of the wall time (ms) of the last ranking: the end of
   * the processing, which the job's end follows by the wait for the next
   * checkpoint (up to its interval) that commits the output.
   */
  static final String LAST_RANKING = "last-ranking-ms";

  static final OutputTag<String> TOTALS = new OutputTag<>("totals", Types.STRING);

  /**
   * Emits a window's count of an IP with the IP's running total as of the
   * window's end, kept in per-key state across windows.
   */
  static final class WindowTotal extends ProcessWindowFunction<long[], IpCount, String, TimeWindow> {
    private final ValueStateDescriptor<Long> totalDesc = new ValueStateDescriptor<>("total", Types.LONG);

    @Override
    public void process(String ip, Context ctx, Iterable<long[]> accs, Collector<IpCount> out)
        throws IOException {
      long[] acc = accs.iterator().next();
      long end = ctx.window().getEnd();
      ValueState<Long> state = ctx.globalState().getState(totalDesc);
      long total = state.value() == null ? 0 : state.value();
      if (acc[1] == end) {
        total += acc[2];
        state.update(total);
      }
      out.collect(new IpCount(ip, end, acc[0], total));
      boolean newestEmpty = acc[1] != end;
      boolean secondEmpty = !(acc[1] == end - PANE_MS || acc[3] == end - PANE_MS);
      if (newestEmpty && secondEmpty) {
        ctx.output(TOTALS, ip + " " + total);
      }
    }
  }

  /** Ranks the IPs of each window end, once all of its counts are in. */
  static final class TopOfWindow extends KeyedProcessFunction<Long, IpCount, IpCount> {
    private transient ValueState<List<IpCount>> top;
    private transient LongMaximum lastRanking;

    @Override
    public void open(OpenContext ctx) {
      top = getRuntimeContext().getState(
          new ValueStateDescriptor<>("top", Types.LIST(Types.POJO(IpCount.class))));
      lastRanking = new LongMaximum();
      getRuntimeContext().addAccumulator(LAST_RANKING, lastRanking);
    }

    @Override
    public void processElement(IpCount c, Context ctx, Collector<IpCount> out) throws IOException {
      List<IpCount> t = top.value();
      if (t == null) {
        t = new ArrayList<>(TOP_N + 1);
        // Window results carry the timestamp end - 1: the watermark that
        // fired the window, forwarded after its results, fires this too.
        ctx.timerService().registerEventTimeTimer(c.end - 1);
      }
      if (t.size() < TOP_N || RANKING.compare(c, t.get(t.size() - 1)) < 0) {
        t.add(new IpCount(c.ip, c.end, c.count, c.total));
        t.sort(RANKING);
        if (t.size() > TOP_N) {
          t.remove(t.size() - 1);
        }
      }
      top.update(t);
    }

    @Override
    public void onTimer(long ts, OnTimerContext ctx, Collector<IpCount> out) throws IOException {
      List<IpCount> t = top.value();
      for (int i = 0; i < t.size(); i++) {
        IpCount c = t.get(i);
        c.rank = i + 1;
        out.collect(c);
      }
      top.clear();
      lastRanking.add(System.currentTimeMillis());
    }
  }

  /** Formats a ranked IP as JSON with its country, from a CSV of ip,country. */
  static final class WithCountry extends RichMapFunction<IpCount, String> {
    private final String path;
    private transient Map<String, String> countries;

    WithCountry(String path) {
      this.path = path;
    }

    @Override
    public void open(OpenContext ctx) throws IOException {
      countries = new HashMap<>();
      for (String line : Files.readAllLines(Path.of(path), StandardCharsets.UTF_8)) {
        int comma = line.indexOf(',');
        if (comma > 0) {
          countries.put(line.substring(0, comma), line.substring(comma + 1));
        }
      }
    }

    @Override
    public String map(IpCount c) {
      return String.format(
          "{\"window_end\":%d,\"rank\":%d,\"ip\":\"%s\",\"count\":%d,\"country\":\"%s\",\"total\":%d}",
          c.end, c.rank, c.ip, c.count, countries.getOrDefault(c.ip, "unknown"), c.total);
    }
  }

  static KafkaSink<String> sink(String bootstrap, String topic, String txPrefix) {
    return KafkaSink.<String>builder()
        .setBootstrapServers(bootstrap)
        .setRecordSerializer(KafkaRecordSerializationSchema.builder()
            .setTopic(topic)
            .setValueSerializationSchema(new SimpleStringSchema())
            .build())
        .setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
        .setTransactionalIdPrefix(txPrefix)
        // Under the broker's transaction.max.timeout.ms (15 min).
        .setProperty("transaction.timeout.ms", "600000")
        .build();
  }

  static Map<String, String> parseArgs(String[] args) {
    Map<String, String> m = new HashMap<>();
    for (int i = 0; i + 1 < args.length; i += 2) {
      if (!args[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value, got " + args[i]);
      }
      m.put(args[i].substring(2), args[i + 1]);
    }
    return m;
  }

  static String need(Map<String, String> a, String name) {
    String v = a.get(name);
    if (v == null) {
      throw new IllegalArgumentException("missing --" + name);
    }
    return v;
  }

  public static void main(String[] args) throws Exception {
    Map<String, String> a = parseArgs(args);
    String bootstrap = need(a, "bootstrap");
    int parallelism = Integer.parseInt(a.getOrDefault("parallelism", "2"));

    Configuration conf = new Configuration();
    conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, "file://" + need(a, "checkpoints"));
    // Records are not reused by any function here after they are emitted.
    conf.set(PipelineOptions.OBJECT_REUSE, true);
    conf.set(RestOptions.BIND_PORT, "0");
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
    env.setParallelism(parallelism);
    env.enableCheckpointing(Long.parseLong(a.getOrDefault("checkpoint-ms", "10000")),
        CheckpointingMode.EXACTLY_ONCE);

    KafkaSource<String> source = KafkaSource.<String>builder()
        .setBootstrapServers(bootstrap)
        .setTopics(need(a, "input"))
        .setGroupId("flink-top-ips")
        .setStartingOffsets(OffsetsInitializer.earliest())
        .setBounded(OffsetsInitializer.latest())
        .setValueOnlyDeserializer(new SimpleStringSchema())
        .build();
    DataStream<String> ips = env
        .fromSource(source, WatermarkStrategy.<String>forMonotonousTimestamps(), "logs")
        .map(TopIps::sourceIp)
        .filter(ip -> ip != null);

    SingleOutputStreamOperator<IpCount> windows = ips
        .keyBy(ip -> ip)
        .window(TumblingEventTimeWindows.of(Duration.ofMillis(PANE_MS)))
        .aggregate(new Count(), new Pane())
        .keyBy(p -> p.ip)
        .window(SlidingEventTimeWindows.of(Duration.ofMillis(WINDOW_MS), Duration.ofMillis(PANE_MS)))
        .aggregate(new SumPanes(), new WindowTotal());

    windows
        .keyBy(c -> c.end)
        .process(new TopOfWindow())
        .map(new WithCountry(need(a, "countries")))
        .sinkTo(sink(bootstrap, need(a, "output"), "flink-top-ips"));
    windows.getSideOutput(TOTALS).sinkTo(sink(bootstrap, need(a, "totals"), "flink-totals"));

    JobClient job = env.executeAsync("top-ips");
    while (job.getJobStatus().get() != JobStatus.RUNNING && !job.getJobStatus().get().isTerminalState()) {
      Thread.sleep(10);
    }
    long began = System.currentTimeMillis();
    System.out.println("RUNNING " + began);
    System.out.flush();
    JobExecutionResult result = job.getJobExecutionResult().get();
    long ended = System.currentTimeMillis();
    long ranked = result.<Long>getAccumulatorResult(LAST_RANKING);
    System.out.println("SECONDS " + (ranked - began) / 1e3 + " " + (ended - began) / 1e3);
    System.out.flush();
  }
}
