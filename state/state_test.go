package state_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/microbatch"
	"github.com/dstream-io/dstream/state"
	"github.com/dstream-io/dstream/state/storetest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m, redistest.Options{})) }

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		ms := microbatch.NewMemoryStore()
		return func(*testing.T) microbatch.Store { return ms.Handle() }
	})
}

var jobSeq atomic.Int64

// backend is a Redis the store's tests run on.
type backend struct {
	rdb redis.UniversalClient
	// cluster is the Redis Cluster rdb talks to; nil for a single Redis.
	cluster *redistest.Cluster
}

// eachRedis runs test on a single Redis and on a Redis Cluster of three
// masters, the test binary's shared ones: the store works the same on both.
func eachRedis(t *testing.T, test func(t *testing.T, b backend)) {
	t.Run("single", func(t *testing.T) {
		rdb := redistest.Shared(t).Client()
		t.Cleanup(func() { rdb.Close() })
		test(t, backend{rdb: rdb})
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.SharedCluster(t)
		rdb := c.Client()
		t.Cleanup(func() { rdb.Close() })
		test(t, backend{rdb: rdb, cluster: c})
	})
}

// conformanceCopies is how many copies of the suite run at once on each
// Redis, every test with a job of its own.
const conformanceCopies = 3

var conformanceRuns atomic.Int64

// TestRedisConformance runs the Store suite on a single Redis and, several
// copies at once, on a Redis Cluster, where the jobs' hash tags spread over
// every master.
func TestRedisConformance(t *testing.T) {
	run := conformanceRuns.Add(1)
	eachRedis(t, func(t *testing.T, b backend) {
		var mu sync.Mutex
		var jobs []string
		t.Run("copies", func(t *testing.T) {
			for c := range conformanceCopies {
				t.Run(fmt.Sprintf("copy-%d", c), func(t *testing.T) {
					t.Parallel()
					storetest.Run(t, func(t *testing.T) storetest.Opener {
						// Named after the test, so that a cluster puts
						// every run's jobs in the same slots.
						job := fmt.Sprintf("%s-%d", t.Name(), run)
						mu.Lock()
						jobs = append(jobs, job)
						mu.Unlock()
						return func(t *testing.T) microbatch.Store {
							s, err := state.NewRedis(b.rdb, state.Config{Job: job, LeaseTTL: 500 * time.Millisecond})
							if err != nil {
								t.Fatal(err)
							}
							return s
						}
					})
				})
			}
		})
		if b.cluster == nil {
			return
		}
		perNode := make([]int, b.cluster.Len())
		for _, job := range jobs {
			i, err := b.cluster.NodeFor(context.Background(), "{dstream:"+job+"}:meta")
			if err != nil {
				t.Fatal(err)
			}
			perNode[i]++
		}
		for i, n := range perNode {
			if n == 0 {
				t.Errorf("no job of the suite on node %d (jobs per node: %v): the suite did not run on every master", i, perNode)
			}
		}
		t.Logf("%d jobs, per node: %v", len(jobs), perNode)
	})
}
