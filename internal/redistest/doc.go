// Package redistest runs a real redis-server for integration tests.
//
// Start runs redis-server (Debian's package, which .ci/install installs) as a
// child process in its own process group, bound to 127.0.0.1 on a free port,
// with a temporary directory of its own for its config, data and log, and
// returns once it answers PING. RDB snapshots are off (save ""); Options turn
// on the append-only file with appendfsync always, so every acknowledged
// write is on disk, set a password for the default user or an ACL user, and
// set maxmemory and its policy.
//
// Stop (SIGTERM, then SIGKILL after a timeout) and Kill (SIGKILL, a crash)
// keep the directory, and Restart brings the server back on the same port
// with the same data, so that with AOF on what was written survives. Close
// stops it and removes the directory. If the test binary dies, the kernel
// kills the server with it.
//
// Tests get a server in one of two ways:
//
//   - Require(t, opts) starts one for the test alone and closes it at the end
//     of the test: for tests that stop, kill or restart it, or need options
//     of their own.
//   - Shared(t) returns one server for the whole test binary, started on
//     first use and closed when TestMain's call to Main returns.
//
// Both skip the test, saying to run .ci/install, when redis-server is
// missing, and fail it instead when DSTREAM_REQUIRE_IT=1 (for CI). The binary
// is Options.Binary, else $DSTREAM_REDIS_SERVER, else redis-server on PATH.
//
// Clusters. StartCluster (RequireCluster for a test) runs a real Redis
// Cluster of n masters without replicas: n such servers with cluster mode,
// AOF and noeviction, each with a cluster bus port of its own, joined with
// redis-cli --cluster create (redis-cli is Options.CLI, else
// $DSTREAM_REDIS_CLI, else the one beside redis-server, else on PATH). It
// returns once every node reports the cluster ok. KillNode crashes a master;
// RestartNode brings it back from its AOF and nodes.conf and waits until the
// cluster is ok again. NodeFor says which node serves a key's slot, so a
// test can kill the node that holds a job. SharedCluster is the test binary's
// cluster of three masters, started on first use and closed by Main, as
// Shared is for a server.
package redistest
