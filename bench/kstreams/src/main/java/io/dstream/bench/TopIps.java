package io.dstream.bench;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StoreQueryParameters;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Joined;
import org.apache.kafka.streams.kstream.KGroupedStream;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.QueryableStoreTypes;
import org.apache.kafka.streams.state.ReadOnlyKeyValueStore;

/**
 * TopIps is dstream's reference job written for Kafka Streams, the way a
 * Kafka Streams user would: every slide (10 s of event time) the top 3
 * source IPs by accesses over the window (30 s), each with its country (a
 * KTable of IP to country) and its running total since the stream began
 * (a KTable of counts).
 *
 * <p>The window counts are a hopping-window count per IP, emitted as they
 * grow. A window's ranking keeps the top N by upserting every count it is
 * sent: a count only ever grows, so an IP can only enter the top N through an
 * update of its own, and the ranking stays exact. The grace period is long
 * (an hour): the four input partitions are processed by independent tasks
 * whose event times drift apart while they catch up on a backlog, and a
 * shorter grace would drop records as late. Processing is exactly-once (v2).
 *
 * <p>Usage: {@code TopIps --bootstrap H:P --input T --countries T --output T
 * --app-id ID --state-dir DIR --out-dir DIR [--threads 2] [--commit-ms 100]
 * [--size-ms 30000] [--advance-ms 10000] [--grace-ms 3600000] [--cache-bytes N]}.
 * The defaults are Kafka Streams' own under exactly-once (a commit every
 * 100 ms, a 10 MB record cache); its users tuning for throughput raise the
 * commit interval and the cache, which lets the cache absorb most updates of
 * a window count before they reach the changelog and the next operator. It prints
 * {@code RUNNING} when it starts processing; a line {@code dump} on its
 * standard input makes it write its totals and rankings to the out dir,
 * print {@code DUMPED} and stop.
 */
public final class TopIps {
  static final int TOP_N = 3;

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

  /** An IP and its count in one window. */
  record IpCount(String ip, long count) {}

  /** Ranking order: count descending, then IP ascending. */
  static final Comparator<IpCount> RANKING =
      Comparator.comparingLong(IpCount::count).reversed().thenComparing(IpCount::ip);

  /** The top N of one window, from counts that only grow. */
  static final class Top {
    final List<IpCount> entries = new ArrayList<>(TOP_N + 1);

    Top offer(IpCount c) {
      entries.removeIf(e -> e.ip().equals(c.ip()));
      entries.add(c);
      entries.sort(RANKING);
      if (entries.size() > TOP_N) {
        entries.remove(entries.size() - 1);
      }
      return this;
    }
  }

  /** One ranked IP of one window: a value of the output topic. */
  record Ranked(long windowEnd, int rank, String ip, long count, long total, String country) {
    Ranked withTotal(long t) {
      return new Ranked(windowEnd, rank, ip, count, t, country);
    }

    Ranked withCountry(String c) {
      return new Ranked(windowEnd, rank, ip, count, total, c);
    }

    String json() {
      return String.format(
          "{\"window_end\":%d,\"rank\":%d,\"ip\":\"%s\",\"count\":%d,\"country\":\"%s\",\"total\":%d}",
          windowEnd, rank, ip, count, country, total);
    }
  }

  static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  static String text(byte[] b) {
    return new String(b, StandardCharsets.UTF_8);
  }

  static final Serde<IpCount> IP_COUNT = Serdes.serdeFrom(
      (topic, c) -> c == null ? null : utf8(c.ip() + " " + c.count()),
      (topic, b) -> {
        if (b == null) {
          return null;
        }
        String[] f = text(b).split(" ");
        return new IpCount(f[0], Long.parseLong(f[1]));
      });

  static final Serde<Top> TOP = Serdes.serdeFrom(
      (topic, t) -> {
        if (t == null) {
          return null;
        }
        StringBuilder sb = new StringBuilder();
        for (IpCount c : t.entries) {
          sb.append(c.ip()).append(' ').append(c.count()).append(';');
        }
        return utf8(sb.toString());
      },
      (topic, b) -> {
        if (b == null) {
          return null;
        }
        Top t = new Top();
        for (String e : text(b).split(";")) {
          if (!e.isEmpty()) {
            String[] f = e.split(" ");
            t.entries.add(new IpCount(f[0], Long.parseLong(f[1])));
          }
        }
        return t;
      });

  static final Serde<Ranked> RANKED = Serdes.serdeFrom(
      (topic, r) -> r == null ? null
          : utf8(r.windowEnd() + " " + r.rank() + " " + r.ip() + " " + r.count() + " " + r.total() + " "
              + (r.country() == null ? "" : r.country())),
      (topic, b) -> {
        if (b == null) {
          return null;
        }
        String[] f = text(b).split(" ", 6);
        return new Ranked(Long.parseLong(f[0]), Integer.parseInt(f[1]), f[2], Long.parseLong(f[3]),
            Long.parseLong(f[4]), f[5].isEmpty() ? null : f[5]);
      });

  /** Builds the job. */
  static Topology topology(String input, String countriesTopic, String output,
      Duration size, Duration advance, Duration grace) {
    StreamsBuilder builder = new StreamsBuilder();
    KTable<String, String> countries = builder.table(countriesTopic,
        Consumed.with(Serdes.String(), Serdes.String()), Materialized.as("countries"));

    KGroupedStream<String, String> byIp = builder
        .stream(input, Consumed.with(Serdes.String(), Serdes.String()))
        .filter((key, line) -> line != null && !line.isEmpty())
        .mapValues(TopIps::sourceIp)
        .filter((key, ip) -> ip != null)
        .groupBy((key, ip) -> ip, Grouped.with("by-ip", Serdes.String(), Serdes.String()));

    // Running totals since the stream began.
    KTable<String, Long> totals = byIp.count(Materialized.as("totals"));

    // Top N per hopping window.
    KTable<Long, Top> top = byIp
        .windowedBy(TimeWindows.ofSizeAndGrace(size, grace).advanceBy(advance))
        .count(Materialized.as("window-counts"))
        .toStream()
        .map((window, n) -> KeyValue.pair(window.window().end(), new IpCount(window.key(), n)))
        .groupByKey(Grouped.with("by-window", Serdes.Long(), IP_COUNT))
        .aggregate(Top::new, (end, c, t) -> t.offer(c),
            Materialized.<Long, Top, KeyValueStore<Bytes, byte[]>>as("top")
                .withKeySerde(Serdes.Long()).withValueSerde(TOP));

    top.toStream()
        .flatMap((end, t) -> {
          List<KeyValue<String, Ranked>> out = new ArrayList<>(t.entries.size());
          for (int i = 0; i < t.entries.size(); i++) {
            IpCount c = t.entries.get(i);
            out.add(KeyValue.pair(c.ip(), new Ranked(end, i + 1, c.ip(), c.count(), 0, null)));
          }
          return out;
        })
        .join(totals, Ranked::withTotal, Joined.with(Serdes.String(), RANKED, Serdes.Long(), "ranked"))
        .leftJoin(countries, (r, c) -> r.withCountry(c == null ? "unknown" : c))
        .mapValues(Ranked::json)
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
    return builder.build();
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
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, need(a, "app-id"));
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, need(a, "bootstrap"));
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(a.getOrDefault("threads", "2")));
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(a.getOrDefault("commit-ms", "100")));
    if (a.containsKey("cache-bytes")) {
      p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, Long.parseLong(a.get("cache-bytes")));
    }
    // Under exactly-once a transaction spans a commit interval, and Kafka
    // Streams' producers default to a 10 s transaction timeout: a longer
    // commit interval needs a longer timeout, or the broker aborts the
    // transaction and fences the producer mid-commit (as it did here at a
    // 10 s interval). Three intervals, at least Kafka's own 60 s default.
    long commitMs = Long.parseLong(a.getOrDefault("commit-ms", "100"));
    if (commitMs >= 1000) {
      p.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG),
          (int) Math.min(Math.max(3 * commitMs, 60_000), 900_000));
    }
    p.put(StreamsConfig.STATE_DIR_CONFIG, need(a, "state-dir"));
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

    Topology topology = topology(need(a, "input"), need(a, "countries"), need(a, "output"),
        Duration.ofMillis(Long.parseLong(a.getOrDefault("size-ms", "30000"))),
        Duration.ofMillis(Long.parseLong(a.getOrDefault("advance-ms", "10000"))),
        Duration.ofMillis(Long.parseLong(a.getOrDefault("grace-ms", "3600000"))));
    Path outDir = Path.of(need(a, "out-dir"));

    KafkaStreams streams = new KafkaStreams(topology, p);
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.RUNNING) {
        System.out.println("RUNNING " + System.currentTimeMillis());
        System.out.flush();
      }
      if (now == KafkaStreams.State.ERROR) {
        // Its threads are dead and it will never commit again: exit, so
        // that the harness fails this run at once. halt, not exit: the
        // shutdown hook would close the client from within its listener.
        System.out.println("ERROR " + System.currentTimeMillis());
        System.out.flush();
        Runtime.getRuntime().halt(2);
      }
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> streams.close(Duration.ofSeconds(10))));
    streams.start();

    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line; (line = in.readLine()) != null; ) {
      if (line.trim().equals("dump")) {
        dump(streams, outDir);
        System.out.println("DUMPED");
        System.out.flush();
        break;
      }
    }
    streams.close(Duration.ofSeconds(30));
  }

  /** Writes the running totals and the rankings of every closed window. */
  static void dump(KafkaStreams streams, Path dir) throws IOException {
    ReadOnlyKeyValueStore<String, Long> totals = streams.store(
        StoreQueryParameters.fromNameAndType("totals", QueryableStoreTypes.<String, Long>keyValueStore()));
    try (PrintWriter w = new PrintWriter(Files.newBufferedWriter(dir.resolve("kstreams-totals.txt")));
        KeyValueIterator<String, Long> it = totals.all()) {
      while (it.hasNext()) {
        KeyValue<String, Long> kv = it.next();
        w.println(kv.key + " " + kv.value);
      }
    }
    ReadOnlyKeyValueStore<Long, Top> top = streams.store(
        StoreQueryParameters.fromNameAndType("top", QueryableStoreTypes.<Long, Top>keyValueStore()));
    try (PrintWriter w = new PrintWriter(Files.newBufferedWriter(dir.resolve("kstreams-top.txt")));
        KeyValueIterator<Long, Top> it = top.all()) {
      while (it.hasNext()) {
        KeyValue<Long, Top> kv = it.next();
        for (int i = 0; i < kv.value.entries.size(); i++) {
          IpCount c = kv.value.entries.get(i);
          w.println(kv.key + " " + (i + 1) + " " + c.ip() + " " + c.count());
        }
      }
    }
  }
}
