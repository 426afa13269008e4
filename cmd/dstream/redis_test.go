package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/dstream-io/dstream/internal/redistest"
	"github.com/dstream-io/dstream/state"
)

// TestRedisAddr checks the forms DSTREAM_REDIS_ADDR takes: one address or a
// URL is a single Redis, as it always was; a list of host:port is a Redis
// Cluster's nodes, which get DSTREAM_REDIS_USER, _PASSWORD and _TLS.
func TestRedisAddr(t *testing.T) {
	for _, test := range []struct {
		name        string
		env         map[string]string
		wantAddr    string   // a single Redis's
		wantCluster []string // or a cluster's nodes
		wantUser    string
		wantTLS     bool
	}{
		{name: "host:port", env: map[string]string{"DSTREAM_REDIS_ADDR": "redis:6379"}, wantAddr: "redis:6379"},
		{name: "url", env: map[string]string{"DSTREAM_REDIS_ADDR": "rediss://u:pw@redis:6380/1"}, wantAddr: "redis:6380", wantUser: "u", wantTLS: true},
		{name: "settings", env: map[string]string{"DSTREAM_REDIS_ADDR": "redis:6379", "DSTREAM_REDIS_USER": "u", "DSTREAM_REDIS_PASSWORD": "pw", "DSTREAM_REDIS_TLS": "true"},
			wantAddr: "redis:6379", wantUser: "u", wantTLS: true},
		{name: "cluster", env: map[string]string{"DSTREAM_REDIS_ADDR": "redis-0:6379,redis-1:6379,redis-2:6379"},
			wantCluster: []string{"redis-0:6379", "redis-1:6379", "redis-2:6379"}},
		{name: "cluster with spaces", env: map[string]string{"DSTREAM_REDIS_ADDR": " redis-0:6379 , redis-1:6379 "},
			wantCluster: []string{"redis-0:6379", "redis-1:6379"}},
		{name: "cluster over ipv6", env: map[string]string{"DSTREAM_REDIS_ADDR": "[::1]:7000,[::1]:7001"}, wantCluster: []string{"[::1]:7000", "[::1]:7001"}},
		{name: "cluster with credentials and tls", env: map[string]string{"DSTREAM_REDIS_ADDR": "redis-0:6379,redis-1:6379",
			"DSTREAM_REDIS_USER": "u", "DSTREAM_REDIS_PASSWORD": "pw", "DSTREAM_REDIS_TLS": "true"},
			wantCluster: []string{"redis-0:6379", "redis-1:6379"}, wantUser: "u", wantTLS: true},
	} {
		t.Run(test.name, func(t *testing.T) {
			env := map[string]string{"DSTREAM_KAFKA_BROKERS": "k:9092"}
			for k, v := range test.env {
				env[k] = v
			}
			cfg := configFrom(t, env)
			rdb, err := redisClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			switch c := rdb.(type) {
			case *redis.Client:
				o := c.Options()
				if test.wantCluster != nil || o.Addr != test.wantAddr || o.Username != test.wantUser || (o.TLSConfig != nil) != test.wantTLS {
					t.Errorf("a single Redis at %s, user %q, TLS %v; want %q %v, user %q, TLS %v",
						o.Addr, o.Username, o.TLSConfig != nil, test.wantAddr, test.wantCluster, test.wantUser, test.wantTLS)
				}
				if got := cfg.redisHost(); got != test.wantAddr {
					t.Errorf("redisHost = %q, want %q", got, test.wantAddr)
				}
			case clusterConn:
				o := c.Options()
				if !slices.Equal(o.Addrs, test.wantCluster) || o.Username != test.wantUser || o.Password != test.env["DSTREAM_REDIS_PASSWORD"] || (o.TLSConfig != nil) != test.wantTLS {
					t.Errorf("a Redis Cluster at %v, user %q, TLS %v; want %q %v, user %q, TLS %v",
						o.Addrs, o.Username, o.TLSConfig != nil, test.wantAddr, test.wantCluster, test.wantUser, test.wantTLS)
				}
				if got, want := cfg.redisHost(), strings.Join(test.wantCluster, ","); got != want {
					t.Errorf("redisHost = %q, want %q", got, want)
				}
			default:
				t.Fatalf("redisClient made a %T", rdb)
			}
		})
	}
}

// TestMaskRedisAddr: no form of DSTREAM_REDIS_ADDR, good or bad, shows a
// password in dstream config or in an error.
func TestMaskRedisAddr(t *testing.T) {
	for _, test := range []struct{ addr, want string }{
		{"redis:6379", "redis:6379"},
		{"redis-0:6379,redis-1:6379", "redis-0:6379,redis-1:6379"},
		{"redis://redis:6379", "redis://redis:6379"},
		{"redis://u@redis:6379", "redis://u@redis:6379"},
		{"redis://u:s3cret@redis:6379/1", "redis://u:********@redis:6379/1"},
		{"redis://:s3cret@redis:6379", "redis://:********@redis:6379"},
		{"rediss://u:s3cret@", "rediss://u:********@"},
		{"redis://u:s3,cret@redis:6379", "redis://********@redis:6379"},
		{"redis://u:s3%zzcret@redis:6379", "redis://********@redis:6379"},
		{"redis://u:s3cret@redis-0:6379,redis://u:s3cret@redis-1:6379", "redis://********@redis-1:6379"},
		{"u:s3cret@redis-0:6379,redis-1:6379", "********@redis-0:6379,redis-1:6379"},
		{"u:s3cret@redis:6379", "********@redis:6379"},
	} {
		got := maskRedisAddr(test.addr)
		if got != test.want || strings.Contains(got, "s3") {
			t.Errorf("maskRedisAddr(%q) = %q, want %q", test.addr, got, test.want)
		}
	}
}

// TestConfigShowsClusterNodes: dstream config prints the list of nodes as
// it is, and the password of the cluster masked.
func TestConfigShowsClusterNodes(t *testing.T) {
	clearEnv(t)
	t.Setenv("DSTREAM_KAFKA_BROKERS", "k:9092")
	t.Setenv("DSTREAM_REDIS_ADDR", "redis-0:6379,redis-1:6379,redis-2:6379")
	t.Setenv("DSTREAM_REDIS_PASSWORD", "cluster-Pa55")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"config"}, &stdout, &stderr); code != 0 {
		t.Fatalf("dstream config: exit %d\n%s", code, stderr.String())
	}
	for _, want := range []string{"DSTREAM_REDIS_ADDR=redis-0:6379,redis-1:6379,redis-2:6379\n", "DSTREAM_REDIS_PASSWORD=********\n"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("dstream config lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String()+stderr.String(), "cluster-Pa55") {
		t.Error("dstream config shows the password")
	}
}

// TestRedisClusterClient connects as dstream does to a real Redis Cluster
// whose nodes take an ACL user: the store works through the client, Check
// finds nothing to warn about, a wrong password stops dstream at start
// naming the settings to check, and while a master is down Ping fails
// naming it, for readiness, though the other masters answer.
func TestRedisClusterClient(t *testing.T) {
	c := redistest.RequireCluster(t, 3, redistest.Options{User: &redistest.User{Name: "dstream", Password: "cluster-Pa55"}})
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	connect := func(password string) (Config, redisConn) {
		t.Helper()
		cfg := configFrom(t, map[string]string{
			"DSTREAM_KAFKA_BROKERS": strings.Join(kc.ListenAddrs(), ","), "DSTREAM_REDIS_ADDR": strings.Join(c.Addrs(), ","),
			"DSTREAM_REDIS_USER": "dstream", "DSTREAM_REDIS_PASSWORD": password,
		})
		rdb, err := redisClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		return cfg, rdb
	}

	cfg, rdb := connect("cluster-Pa55")
	if err := preflight(ctx, cfg, cl, rdb, zerolog.Nop()); err != nil {
		t.Fatalf("preflight: %v", err)
	}
	store, err := state.NewRedis(rdb, state.Config{Job: "cluster-client", LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := store.Acquire(ctx); err != nil || m.Epoch != 1 {
		t.Fatalf("Acquire through the cluster client: %+v, %v", m, err)
	}
	if w := store.Check(ctx); len(w) != 0 {
		t.Errorf("Check warns on a cluster of AOF and noeviction: %q", w)
	}

	wrongCfg, wrong := connect("wrong")
	err = preflight(ctx, wrongCfg, cl, wrong, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), `Redis refused user "dstream": check DSTREAM_REDIS_USER and DSTREAM_REDIS_PASSWORD`) {
		t.Errorf("preflight with a wrong password: %v, want a refusal naming the settings", err)
	}

	if err := c.KillNode(1); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "cluster node "+c.Node(1).Addr()) {
		t.Errorf("Ping with master 1 down: %v, want an error naming it", err)
	}
	if err := c.RestartNode(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Errorf("Ping after the restart: %v", err)
	}
}
