package deploytest

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/bus"
)

// TestNATSClusterMonitoring: on the deployed three-node cluster, the NATS
// Prometheus exporters run as docker-compose.yml runs them (one per server,
// with its arguments) and a real Prometheus scrapes them with the rules of
// nats.yml. Every expression of the NATS dashboard and of nats.yml on the
// exporters' metrics returns series; Prometheus sees the three servers
// (up, JetStream storage per server); and each of Flowgate's streams and
// consumers is reported by exactly one leader, as the panels that read
// leaders only (is_stream_leader, is_consumer_leader) assume, while every
// server reports its replica of each R3 stream. A consumer 10,001 messages
// behind puts NATSConsumerLagHigh in motion, and a server SIGKILLed while
// its exporter goes on answering puts NATSServerDown in motion.
func TestNATSClusterMonitoring(t *testing.T) {
	requireTools(t, "prometheus", "promtool")
	root := repoRoot(t)
	c := startDeployedCluster(t)
	// Messages in the streams, and the consumers that took them.
	for i := range 5 {
		if code, body := c.api.dispatch(c.key, "HELLO", fmt.Sprintf("+1555000%04d", i), map[string]any{"name": "Monitored"}); code != http.StatusAccepted {
			t.Fatalf("dispatch: %d %s", code, body)
		}
	}

	bin := buildNATSExporter(t, root, c.tmp)
	var addrs []string
	var procs []*proc
	for i, m := range c.monitors {
		name := fmt.Sprintf("nats-exporter-%d", i+1)
		addr := freePort(t)
		procs = append(procs, runNATSExporter(t, c.tmp, name, bin, composeExporterArgs(t, root, "docker-compose.yml", name), addr, "http://"+m))
		addrs = append(addrs, addr)
	}
	promAddr := freePort(t)
	prom := startPrometheus(t, root, c.tmp, promAddr, map[string][]string{"nats": addrs})
	procs = append(procs, prom)
	waitHTTP(t, "http://"+promAddr+"/-/ready", 30*time.Second, prom)
	p := promClient{base: "http://" + promAddr}

	p.waitFor(t, `sum(up{job="nats"}) == 3`, 30*time.Second, procs...)
	p.waitFor(t, `nats:servers_up == 3`, 30*time.Second, procs...)
	p.waitFor(t, `count(nats:jetstream_storage_ratio) == 3`, 30*time.Second, procs...)
	streams := []string{bus.StreamTriggers, bus.StreamTriggersStandby, bus.StreamOutbound, bus.StreamEvents, bus.StreamRuns, bus.StreamDLQ}
	for _, s := range streams {
		p.waitFor(t, fmt.Sprintf(`count(jetstream_stream_total_messages{stream_name=%q}) == 3`, s), 30*time.Second, procs...)
		p.waitFor(t, fmt.Sprintf(`count(jetstream_stream_total_messages{stream_name=%q, is_stream_leader="true"}) == 1`, s), 30*time.Second, procs...)
	}
	p.waitFor(t, `count(nats:consumer_pending) > 0`, 30*time.Second, procs...)
	// Each consumer once: the recorded lag reads its leader only.
	p.waitFor(t, `count(jetstream_consumer_num_pending{is_consumer_leader="true"}) == count(count by (stream_name, consumer_name) (jetstream_consumer_num_pending))`, 30*time.Second, procs...)
	for _, q := range []string{
		`count by (stream_name) (jetstream_stream_total_messages{is_stream_leader="true"}) > 1`,
		`count by (stream_name, consumer_name) (jetstream_consumer_num_pending{is_consumer_leader="true"}) > 1`,
	} {
		if r, err := p.query(q); err != nil || !r.empty() {
			t.Errorf("more than one leader reported: %s = %v %v", q, r.Result, err)
		}
	}

	// Every expression on the exporters' metrics, of the dashboards and of
	// nats.yml, after the recording rules ran.
	rules := loadNATSRules(t, root)
	for _, r := range rules {
		if r.Record != "" {
			p.waitFor(t, r.Record, 30*time.Second, procs...)
		}
	}
	_, dash := loadDashboards(t, root)
	checked := 0
	for _, e := range append(dash, rules...) {
		if !exporterRef.MatchString(e.Expr) && !strings.Contains(e.Expr, `job="nats"`) {
			continue // Flowgate's own metrics: TestPrometheusEndToEnd
		}
		q := grafanaVars(e.Expr, "")
		r, err := p.query(q)
		if err != nil {
			t.Errorf("%s: %s\n  %v", e.Where, q, err)
			continue
		}
		checked++
		if !e.Alert && r.empty() {
			t.Errorf("%s: no series on the cluster\n  %s", e.Where, q)
		}
	}
	if checked == 0 {
		t.Fatal("no expression on the NATS exporters' metrics was found")
	}
	p.checkRules(t)
	t.Logf("evaluated %d expressions on the exporters' metrics of the three servers (%s)", checked, filepath.Base(bin))

	// A consumer 10,001 messages behind (a stream of the test's own, R3,
	// with a consumer that takes nothing): NATSConsumerLagHigh must be on
	// its way (pending for its 10 minutes).
	ctx := context.Background()
	_, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: "LAG_PROBE", Subjects: []string{"lagprobe.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.js.CreateOrUpdateConsumer(ctx, "LAG_PROBE", jetstream.ConsumerConfig{Durable: "behind", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	const behind = 10_001
	for i := range behind {
		if _, err := c.js.PublishAsync("lagprobe.x", []byte("x")); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	select {
	case <-c.js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("the lag probe's publishes were not acknowledged within 60 s")
	}
	p.waitFor(t, fmt.Sprintf(`nats:consumer_pending{stream_name="LAG_PROBE", consumer_name="behind"} == %d`, behind), 30*time.Second, procs...)
	waitAlert(t, p, "NATSConsumerLagHigh", 20*time.Second)

	// A server lost while its exporter goes on answering (it leaves out
	// what it cannot read): Prometheus must see the server down, not only
	// a dead exporter, and NATSServerDown must be on its way (pending for
	// its 2 minutes).
	lost := c.nats[2]
	lost.kill()
	p.waitFor(t, `nats:servers_up == 2`, 30*time.Second, procs...)
	p.waitFor(t, fmt.Sprintf(`nats:server_healthy{instance=%q} == 0`, addrs[2]), 30*time.Second, procs...)
	p.waitFor(t, `up{job="nats"} == 1`, 5*time.Second, procs...)
	waitAlert(t, p, "NATSServerDown", 20*time.Second)
}

// waitAlert waits until the alert name is pending or firing.
func waitAlert(t *testing.T, p promClient, name string, timeout time.Duration) {
	t.Helper()
	var alerts map[string]string
	for deadline := time.Now().Add(timeout); ; time.Sleep(500 * time.Millisecond) {
		alerts = p.alerts(t)
		if s := alerts[name]; s == "pending" || s == "firing" || time.Now().After(deadline) {
			break
		}
	}
	if s := alerts[name]; s != "pending" && s != "firing" {
		t.Errorf("%s is %q after %s; alerts: %v", name, s, timeout, alerts)
	}
}
