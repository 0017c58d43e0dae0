// Package deploytest checks Flowgate's operations artefacts against the code
// and against the real tools: the metrics catalogue (docs/metrics.md) against
// the metric definitions in the source, the Prometheus rules with promtool,
// docker-compose.yml with docker-compose and a structural check, and every
// PromQL expression of the dashboards and alert rules against a real
// Prometheus scraping Flowgate services run as separate processes.
//
// External tools come from Debian's packages; install them with
// deploy/scripts/install-test-deps.sh (the test command runs it). Setting
// FLOWGATE_SKIP_PROMETHEUS=1 skips the checks that need them, loudly.
package deploytest
