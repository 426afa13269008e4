// Package charttest holds the tests of the Helm chart in charts/dstream. They run the real helm binary (helm lint
// --strict, helm template) offline and assert on the rendered objects: pod security, probes, grace period,
// secrets kept out of ConfigMaps, ServiceMonitor and PrometheusRule gating, readiness and rollout settings, the
// PodDisruptionBudget at several replica counts, the dashboard ConfigMap, the HPA example, NOTES.txt, and the
// values schema. The rendered alert rules go through `promtool check rules` and `promtool test rules` with
// testdata/alerts_test.yaml.
//
// Once cmd/dstream exists they also build it and run it with the environment the chart (and docker-compose.yml)
// give it: `dstream config` must accept every value set, and a demo-mode dstream on a loopback port must answer
// the Deployment's probe paths and stop on SIGTERM within terminationGracePeriodSeconds.
//
// helm and promtool come from .tools/bin (installed by .ci/install-tools), $HELM / $PROMTOOL, or PATH. Without
// them the tests that need them skip, unless DSTREAM_REQUIRE_IT=1, which turns the skip into a failure.
package charttest
