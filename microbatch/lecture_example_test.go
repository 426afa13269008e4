package microbatch_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/rdd"
)

// logLine is a line of the lecture's web log with the given source IP.
func logLine(ip string) string {
	return "2016-12-06T08:58:35.318+0000 " + ip + " 200 GET /codemove/TTCENCUFMH3C 0.026"
}

// lectureBatches is the input of the lecture examples: four 10 s batches.
func lectureBatches() [][]string {
	spec := []string{
		"185.28.193.95*3 120.52.73.97*2 120.52.73.98",
		"120.52.73.97*4 120.52.73.98*2 178.22.148.122 _",
		"178.22.148.122*5 185.28.193.95",
		"120.52.73.98*2",
	}
	var out [][]string
	for _, s := range spec {
		var batch []string
		for _, f := range strings.Fields(s) {
			if f == "_" {
				batch = append(batch, "") // an empty line, which the programs filter out
				continue
			}
			ip, n := f, 1
			if i := strings.IndexByte(f, '*'); i >= 0 {
				ip = f[:i]
				fmt.Sscan(f[i+1:], &n)
			}
			for range n {
				batch = append(batch, logLine(ip))
			}
		}
		out = append(out, batch)
	}
	return out
}

// lectureJob returns a job that runs the four lecture batches back to back
// with batch times from 2020-03-09 00:28:00.
func lectureJob(interval time.Duration) *microbatch.Job {
	start := time.Date(2020, 3, 9, 0, 27, 55, 0, time.UTC)
	return microbatch.NewJob(interval,
		microbatch.WithClock(microbatch.NewVirtualClock(start)),
		microbatch.WithBatchLimit(4))
}

// topN is the lecture's transform: sortBy count descending, zipWithIndex,
// keep indexes below n, drop the index.
func topN[V int | int64](n int64) func([]microbatch.Pair[string, V]) []microbatch.Pair[string, V] {
	return func(batch []microbatch.Pair[string, V]) []microbatch.Pair[string, V] {
		sorted := rdd.SortBy(batch, func(p microbatch.Pair[string, V]) V { return p.Value }, false)
		indexed := rdd.Filter(rdd.ZipWithIndex(sorted), func(p microbatch.Pair[microbatch.Pair[string, V], int64]) bool { return p.Value < n })
		return rdd.Map(indexed, func(p microbatch.Pair[microbatch.Pair[string, V], int64]) microbatch.Pair[string, V] { return p.Key })
	}
}

// The lecture's first program: the top-3 source IPs over the last 30 s,
// every 10 s.
//
//	result = lines.window(30,10) \
//	    .filter(lambda line : len(line) > 0 ) \
//	    .map(lambda line: line.split(' ')) \
//	    .map(lambda vals: (vals[1],1)) \
//	    .reduceByKey(lambda a, b: a+b) \
//	    .transform(lambda rdd: rdd.sortBy(lambda x: x[1], ascending=False)
//	        .zipWithIndex().filter(lambda v: v[1] < 3).map(lambda v: v[0]))
//	result.pprint()
func Example_lectureTopIPs() {
	job := lectureJob(10 * time.Second)
	lines := microbatch.QueueStream(job, lectureBatches())
	windowed := lines.Window(30*time.Second, 10*time.Second).Filter(func(l string) bool { return len(l) > 0 })
	fields := microbatch.Map(windowed, func(l string) []string { return strings.Split(l, " ") })
	pairs := microbatch.Map(fields, func(vals []string) microbatch.Pair[string, int] { return microbatch.KV(vals[1], 1) })
	counts := microbatch.ReduceByKey(pairs, func(a, b int) int { return a + b })
	result := microbatch.Transform(counts, topN[int](3))
	result.Pprint(10)
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// -------------------------------------------
	// Time: 2020-03-09 00:28:00
	// -------------------------------------------
	// ('185.28.193.95', 3)
	// ('120.52.73.97', 2)
	// ('120.52.73.98', 1)
	//
	// -------------------------------------------
	// Time: 2020-03-09 00:28:10
	// -------------------------------------------
	// ('120.52.73.97', 6)
	// ('185.28.193.95', 3)
	// ('120.52.73.98', 3)
	//
	// -------------------------------------------
	// Time: 2020-03-09 00:28:20
	// -------------------------------------------
	// ('120.52.73.97', 6)
	// ('178.22.148.122', 6)
	// ('185.28.193.95', 4)
	//
	// -------------------------------------------
	// Time: 2020-03-09 00:28:30
	// -------------------------------------------
	// ('178.22.148.122', 6)
	// ('120.52.73.97', 4)
	// ('120.52.73.98', 4)
	//
}

// countriesCSV stands for the lecture's countries.csv: "ip,country" lines.
// 178.22.148.122 has no line, so the inner join drops it.
//
// The golden outputs of the examples below were computed by hand and checked
// with an independent model, testdata/lecture_model.py.
const countriesCSV = "185.28.193.95,PT\n120.52.73.97,CN\n\n120.52.73.98,CN\n10.0.0.1,US\n"

// The lecture's second program: the first program's top-3, joined with the
// country of each IP from a CSV file. A static dataset is joined inside
// transform; IPs the table lacks are dropped, as rdd.join drops them.
//
//	countries = sc.textFile('countries.csv') \
//	    .filter( lambda l: len(l) > 0 ) \
//	    .map( lambda l : l.split(',') ) \
//	    .map( lambda l : (l[0],l[1]))
//	...
//	result = result.transform( \
//	    lambda rdd: rdd.join(countries))
func Example_lectureCountries() {
	csv := rdd.Filter(strings.Split(countriesCSV, "\n"), func(l string) bool { return len(l) > 0 })
	fields := rdd.Map(csv, func(l string) []string { return strings.Split(l, ",") })
	countries := rdd.NewTable(rdd.Map(fields, func(l []string) microbatch.Pair[string, string] { return microbatch.KV(l[0], l[1]) }))

	job := lectureJob(10 * time.Second)
	lines := microbatch.QueueStream(job, lectureBatches())
	windowed := lines.Window(30*time.Second, 10*time.Second).Filter(func(l string) bool { return len(l) > 0 })
	pairs := microbatch.Map(windowed, func(l string) microbatch.Pair[string, int] { return microbatch.KV(strings.Split(l, " ")[1], 1) })
	counts := microbatch.ReduceByKey(pairs, func(a, b int) int { return a + b })
	top := microbatch.Transform(counts, topN[int](3))
	result := microbatch.Transform(top, func(batch []microbatch.Pair[string, int]) []microbatch.Pair[string, microbatch.Pair[int, string]] {
		return rdd.Join(batch, countries)
	})
	result.Pprint(10)
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// -------------------------------------------
	// Time: 2020-03-09 00:28:00
	// -------------------------------------------
	// ('185.28.193.95', (3, 'PT'))
	// ('120.52.73.97', (2, 'CN'))
	// ('120.52.73.98', (1, 'CN'))
	//
	// -------------------------------------------
	// Time: 2020-03-09 00:28:10
	// -------------------------------------------
	// ('120.52.73.97', (6, 'CN'))
	// ('185.28.193.95', (3, 'PT'))
	// ('120.52.73.98', (3, 'CN'))
	//
	// -------------------------------------------
	// Time: 2020-03-09 00:28:20
	// -------------------------------------------
	// ('120.52.73.97', (6, 'CN'))
	// ('185.28.193.95', (4, 'PT'))
	//
	// -------------------------------------------
	// Time: 2020-03-09 00:28:30
	// -------------------------------------------
	// ('120.52.73.97', (4, 'CN'))
	// ('120.52.73.98', (4, 'CN'))
	//
}

// The lecture's third program, literally: a 10 s window sliding every 5 s
// (so a 5 s batch interval), counts per IP, a running total per IP kept by
// updateStateByKey over the windowed counts, the top-3, joined with the
// running totals.
//
// Because the running total adds up windowed counts, and windows overlap,
// every request is counted twice (once per window it falls in): 120.52.73.97
// sent 6 requests but its total reaches 12. Counting requests exactly would
// apply updateStateByKey to the per-batch counts instead.
//
//	def updateFunction(newValues, runningCount):
//	    if runningCount is None:
//	        runningCount = 0
//	    return sum(newValues, runningCount)
//
//	result = lines.window(10,5) \
//	    .filter( lambda line : len(line) > 0 ) \
//	    .map(lambda line: (line.split(' ')[1],1)) \
//	    .reduceByKey(lambda a, b: a+b)
//	runningCounts = result.updateStateByKey(updateFunction)
//	result = result.transform( ... ) // top N
//	result = result.join(runningCounts)
//	result.pprint()
func Example_lectureRunningCounts() {
	start := time.Date(2020, 3, 9, 0, 27, 55, 0, time.UTC)
	job := microbatch.NewJob(5*time.Second,
		microbatch.WithClock(microbatch.NewVirtualClock(start)),
		microbatch.WithBatchLimit(5))
	job.Checkpoint(microbatch.NewMemoryStore()) // updateStateByKey keeps its state here

	updateFunction := func(newValues []int, runningCount int, _ bool) (int, bool) {
		for _, v := range newValues {
			runningCount += v
		}
		return runningCount, true
	}
	lines := microbatch.QueueStream(job, lectureBatches())
	windowed := lines.Window(10*time.Second, 5*time.Second).Filter(func(l string) bool { return len(l) > 0 })
	pairs := microbatch.Map(windowed, func(l string) microbatch.Pair[string, int] { return microbatch.KV(strings.Split(l, " ")[1], 1) })
	result := microbatch.ReduceByKey(pairs, func(a, b int) int { return a + b })
	runningCounts := microbatch.UpdateStateByKey(result, updateFunction)
	top := microbatch.Transform(result, topN[int](3))
	microbatch.Join(top, runningCounts).Pprint(10)
	if err := job.Run(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// -------------------------------------------
	// Time: 2020-03-09 00:28:00
	// -------------------------------------------
	// ('185.28.193.95', (3, 3))
	// ('120.52.73.97', (2, 2))
	// ('120.52.73.98', (1, 1))
	//
	// -------------------------------------------
	// Time: 2020-03-09 00:28:05
	// -------------------------------------------
	// ('120.52.73.97', (6, 8))
	// ('185.28.193.95', (3, 6))
	// ('120.52.73.98', (3, 4))
	//
	// -------------------------------------------
	// Time: 2020-03-09 00:28:10
	// -------------------------------------------
	// ('178.22.148.122', (6, 7))
	// ('120.52.73.97', (4, 12))
	// ('120.52.73.98', (2, 6))
	//
	// -------------------------------------------
	// Time: 2020-03-09 00:28:15
	// -------------------------------------------
	// ('178.22.148.122', (5, 12))
	// ('120.52.73.98', (2, 8))
	// ('185.28.193.95', (1, 8))
	//
	// -------------------------------------------
	// Time: 2020-03-09 00:28:20
	// -------------------------------------------
	// ('120.52.73.98', (2, 10))
	//
}
