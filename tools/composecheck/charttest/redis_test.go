package charttest

import (
	"strings"
	"testing"
)

// TestRedisClusterAddr: redis.addr takes a Redis Cluster's nodes as a list,
// which reaches dstream as it is; the schema refuses a list with a node that
// is not host:port.
func TestRedisClusterAddr(t *testing.T) {
	const nodes = "redis-0.redis:6379,redis-1.redis:6379,redis-2.redis:6379"
	m := render(t, "--set", "kafka.brokers=kafka:9092", "--set", "redis.addr="+strings.ReplaceAll(nodes, ",", `\,`))
	if got := m.env(t)["DSTREAM_REDIS_ADDR"]; got != nodes {
		t.Errorf("DSTREAM_REDIS_ADDR = %q, want %q", got, nodes)
	}
	for _, addr := range []string{"redis", `redis-0:6379\,redis-1`, `redis-0:6379\,`, `redis-0:6379\, redis-1:6379`} {
		_, err := tryRender(t, "--set", "kafka.brokers=kafka:9092", "--set", "redis.addr="+addr)
		if err == nil || !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), "/redis/addr") {
			t.Errorf("redis.addr=%s: err = %v, want a schema error about /redis/addr", addr, err)
		}
	}
}
