"""The lecture's third program on PySpark DStreams: dstream's reference job.

Every 10 s the top-3 source IPs of the last 30 s, each with its country (a
join with a static RDD read from a CSV file) and its running total since the
stream began (updateStateByKey). As in dstream's job, the window counts are
kept incrementally (reduceByKeyAndWindow with an inverse function) and the
running totals are fed per-batch counts, so that every line counts once.

Input: the benchmark's Kafka topic, cut into the same offset-ranged batches
that dstream plans (batch b takes offsets [(b-1)*per, b*per) of every
partition), each read with Spark's Kafka source and handed to the program by
queueStream, one per batch interval: the direct-stream model.

To catch up on the backlog as fast as Spark can, the streaming context runs on
Spark's ManualClock, which this driver advances by one batch interval as soon
as the previous batch is done; batch times stay exact. Spark's checkpoints
(metadata and state RDDs) go to --checkpoint.

Writes results.jsonl (every ranking), totals.txt (the final running totals)
and stats.json (the processing time) into --out.
"""

import argparse
import glob
import json
import os
import sys
import threading
import time
from operator import add, sub

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession
from pyspark.streaming import StreamingContext

BATCH_SECONDS = 10
WINDOW_SECONDS = 30
SLIDE_SECONDS = 10
TOP_N = 3


class Driver:
    """What the output operations share with the driver's main loop.

    Spark checkpoints the DStream graph, Python functions included. The
    functions below live at module level and reach the driver's state
    through this module global, so they pickle by reference (the module is
    imported, not run as __main__: see the end of the file) and nothing
    unpicklable (files, locks, RDDs) is captured.
    """

    def __init__(self, out_dir, batches, countries):
        self.out_dir = out_dir
        self.batches = batches
        self.countries = countries
        self.results = open(os.path.join(out_dir, "results.jsonl"), "w")
        self.done = threading.Condition()
        self.last = 0
        self.finished = []  # time.time() when each batch's output was done


driver = None


def update_total(new_values, running_count):
    if running_count is None:
        running_count = 0
    return sum(new_values, running_count)


def top_n(rdd):
    return (rdd.sortBy(lambda kv: (-kv[1], kv[0]))
            .zipWithIndex()
            .filter(lambda v: v[1] < TOP_N)
            .map(lambda v: (v[0][0], (v[1] + 1, v[0][1]))))


def join_countries(rdd):
    return rdd.leftOuterJoin(driver.countries)


def batch_of(t):
    return int(t.timestamp()) // BATCH_SECONDS


def save_totals(t, rdd):
    if batch_of(t) == driver.batches:
        with open(os.path.join(driver.out_dir, "totals.txt"), "w") as f:
            for ip, n in rdd.collect():
                f.write("%s %d\n" % (ip, n))


def emit(t, rdd):
    b = batch_of(t)
    for ip, (((rank, count), total), country) in rdd.collect():
        driver.results.write(json.dumps({"batch": b, "rank": rank, "ip": ip, "count": count,
                                         "total": total, "country": country or "unknown"}) + "\n")
    with driver.done:
        driver.last = b
        driver.finished.append(time.time())
        driver.done.notify_all()


def main():
    global driver
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--ends", required=True, help="end offset of every partition, comma-separated")
    ap.add_argument("--per-partition", type=int, required=True, help="offsets of a partition per batch")
    ap.add_argument("--batches", type=int, required=True)
    ap.add_argument("--countries", required=True)
    ap.add_argument("--jars", required=True, help="directory of spark-sql-kafka and its dependencies")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--master", default="local[*]")
    ap.add_argument("--driver-memory", default="2g")
    ap.add_argument("--checkpoint-every", type=int, default=0,
                    help="checkpoint the stateful streams every this many slides (0: Spark's default, every 10 s)")
    args = ap.parse_args()

    ends = [int(e) for e in args.ends.split(",")]
    conf = (SparkConf()
            .setMaster(args.master)
            .setAppName("top-ips")
            .set("spark.jars", ",".join(sorted(glob.glob(os.path.join(args.jars, "*.jar")))))
            .set("spark.driver.memory", args.driver_memory)
            .set("spark.ui.enabled", "false")
            .set("spark.streaming.clock", "org.apache.spark.util.ManualClock"))
    sc = SparkContext(conf=conf)
    sc.setLogLevel("WARN")
    sc.addPyFile(os.path.abspath(__file__))  # the workers unpickle this module's functions by reference
    spark = SparkSession(sc)
    ssc = StreamingContext(sc, BATCH_SECONDS)
    ssc.checkpoint(args.checkpoint)

    countries = (sc.textFile(args.countries)
                 .filter(lambda l: len(l) > 0)
                 .map(lambda l: l.split(','))
                 .map(lambda l: (l[0], l[1])))
    countries.cache()
    driver = Driver(args.out, args.batches, countries)

    def batch(b):
        start = {args.topic: {str(p): min((b - 1) * args.per_partition, e) for p, e in enumerate(ends)}}
        end = {args.topic: {str(p): min(b * args.per_partition, e) for p, e in enumerate(ends)}}
        df = (spark.read.format("kafka")
              .option("kafka.bootstrap.servers", args.brokers)
              .option("subscribe", args.topic)
              .option("startingOffsets", json.dumps(start))
              .option("endingOffsets", json.dumps(end))
              .load())
        return df.selectExpr("CAST(value AS STRING)").rdd.map(lambda row: row[0])

    planned = time.time()
    lines = ssc.queueStream([batch(b) for b in range(1, args.batches + 1)], oneAtATime=True)
    planned = time.time() - planned

    hits = (lines.filter(lambda line: len(line) > 0)
            .map(lambda line: line.split(' '))
            .map(lambda vals: (vals[1], 1)))
    counts = hits.reduceByKey(add)  # per batch, which is one slide
    counts.cache()
    windowed = counts.reduceByKeyAndWindow(add, sub, WINDOW_SECONDS, SLIDE_SECONDS,
                                           filterFunc=lambda kv: kv[1] > 0)
    totals = counts.updateStateByKey(update_total)
    if args.checkpoint_every > 0:
        windowed.checkpoint(args.checkpoint_every * SLIDE_SECONDS)
        totals.checkpoint(args.checkpoint_every * SLIDE_SECONDS)
    result = windowed.transform(top_n).join(totals).transform(join_countries)

    totals.foreachRDD(save_totals)  # before emit: a batch is done when emit ran
    result.foreachRDD(emit)

    ssc.start()
    clock = ssc._jssc.ssc().scheduler().clock()
    began = time.time()
    for b in range(1, args.batches + 1):
        clock.advance(BATCH_SECONDS * 1000)
        with driver.done:
            while driver.last < b:
                if not driver.done.wait(600):
                    print("batch %d did not finish in 600 s" % b, file=sys.stderr)
                    sys.exit(1)
    elapsed = time.time() - began
    driver.results.close()
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        per_batch = [t - s for s, t in zip([began] + driver.finished[:-1], driver.finished)]
        json.dump({"seconds": elapsed, "planning_seconds": planned, "batches": args.batches,
                   "batch_seconds": per_batch}, f)
    print("spark: %d batches in %.1f s" % (args.batches, elapsed), flush=True)
    ssc.stop(stopSparkContext=True, stopGraceFully=False)


if __name__ == "__main__":
    # Run as the module topips, not as __main__, so that Spark's checkpoints
    # pickle its functions by reference.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import topips

    topips.main()
