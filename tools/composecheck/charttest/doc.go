// Package charttest holds the tests of the Helm chart in charts/dstream. They run the real helm binary (helm lint
// --strict, helm template) offline and assert on the rendered objects: pod security, probes, grace period,
// secrets kept out of ConfigMaps, ServiceMonitor gating, hot-standby settings, and the values schema.
//
// helm comes from .tools/bin (installed by .ci/install-tools), $HELM, or PATH. Without it the tests skip, unless
// DSTREAM_REQUIRE_IT=1, which turns the skip into a failure.
package charttest
