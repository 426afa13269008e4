// Package charttest holds the tests of the Helm chart in charts/dstream. They run the real helm binary (helm lint
// --strict, helm template) offline and assert on the rendered objects: pod security, probes, grace period,
// secrets kept out of ConfigMaps, ServiceMonitor gating, hot-standby settings, and the values schema.
//
// Once cmd/dstream exists they also build it and run it with the environment the chart (and docker-compose.yml)
// give it: `dstream config` must accept every value set, and a demo-mode dstream on a loopback port must answer
// the Deployment's probe paths and stop on SIGTERM within terminationGracePeriodSeconds.
//
// helm comes from .tools/bin (installed by .ci/install-tools), $HELM, or PATH. Without it the tests skip, unless
// DSTREAM_REQUIRE_IT=1, which turns the skip into a failure.
package charttest
