package main

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/dstream-io/dstream/state"
)

// redisConn is what dstream uses of Redis: the store's calls, the
// history's, a ping for readiness, and Close. *redis.Client (one Redis) and
// *redis.ClusterClient (a Redis Cluster) satisfy it.
type redisConn interface {
	state.Client
	state.HistoryClient
	Ping(ctx context.Context) *redis.StatusCmd
	Close() error
}

var (
	_ redisConn = (*redis.Client)(nil)
	_ redisConn = clusterConn{}
)

// redisClient connects to the Redis of DSTREAM_REDIS_ADDR: a single Redis,
// or, for a list of nodes, a Redis Cluster, which takes the same user,
// password and TLS settings. Every key of a job shares its hash tag, so a
// job lives on one master, and jobs spread over the masters.
func redisClient(cfg Config) (redisConn, error) {
	single, cluster, err := cfg.redisOptions()
	if err != nil {
		return nil, err
	}
	if cluster != nil {
		if cfg.RedisTLS {
			tc, err := tlsConfig(cfg.RedisTLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("redis tls: %w", err)
			}
			cluster.TLSConfig = tc
		}
		return clusterConn{redis.NewClusterClient(cluster)}, nil
	}
	if cfg.RedisTLS || single.TLSConfig != nil {
		tc, err := tlsConfig(cfg.RedisTLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("redis tls: %w", err)
		}
		single.TLSConfig = tc
	}
	return redis.NewClient(single), nil
}

// clusterConn is a Redis Cluster client whose Ping asks every master, for
// readiness and the check at start: a job's keys live on the masters of
// their hash tags, so the cluster serves it only while they answer, while
// go-redis sends a PING to any one node.
type clusterConn struct{ *redis.ClusterClient }

// Ping pings every master and fails with the first that does not answer,
// naming it.
func (c clusterConn) Ping(ctx context.Context) *redis.StatusCmd {
	cmd := redis.NewStatusCmd(ctx, "ping")
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		if err := node.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("cluster node %s: %w", node.Options().Addr, err)
		}
		return nil
	})
	if err != nil {
		cmd.SetErr(err)
	} else {
		cmd.SetVal("PONG")
	}
	return cmd
}
