package state_test

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

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

func TestRedisConformance(t *testing.T) {
	srv := redistest.Shared(t)
	rdb := srv.Client()
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		job := fmt.Sprintf("conformance-%d", jobSeq.Add(1))
		return func(t *testing.T) microbatch.Store {
			s, err := state.NewRedis(rdb, state.Config{Job: job, LeaseTTL: 500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}
