package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"

	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// allowEmptySandbox lists the only series that may be missing, and only
// when a per-channel panel is evaluated for the sandbox channel: the
// sandbox stores messages and has no provider behind it. The same panels
// evaluated for WhatsApp (against its double) must return data.
var allowEmptySandbox = map[string]string{
	"flowgate_channel_send_failures_total":        "the sandbox stores messages and never fails a send",
	"flowgate_channel_rate_limited_total":         "the sandbox has no provider rate limit to hit",
	"flowgate:provider_auth_failures:increase10m": "the sandbox has no provider credentials to refuse",
	"flowgate_pacer_wait_seconds_bucket":          "the sandbox is not paced (no provider limit)",
	"flowgate_pacer_rate_per_second":              "the sandbox is not paced (no provider limit)",
	"flowgate_pacer_throttles_total":              "the sandbox is not paced, so nothing throttles it",
}

// scenarioChannels are the channels the scenario drives; per-channel
// dashboard panels are evaluated for each.
var scenarioChannels = []string{"sandbox", "whatsapp"}

const (
	adminKey    = "ops-test-admin-key-0123456789abcdef"
	waPhoneID   = "100200300"
	waGoodToken = "deploytest-whatsapp-token-0123456789"
)

// TestPrometheusEndToEnd runs nats-server, `flowgate ingress`, `flowgate
// orchestrator` and `flowgate channel sandbox` as separate processes and a
// real Prometheus scraping them with the repository's rules; drives a
// scenario over HTTP (triggers, replies, waits, HTTP steps, a failing run,
// wrong keys, unknown events, a malformed bus message, a NATS outage); then
// evaluates every PromQL expression of the dashboards and rules through
// Prometheus's HTTP API, runs `promtool check metrics` on every service's
// /metrics, and checks the scraped families against docs/metrics.md.
func TestPrometheusEndToEnd(t *testing.T) {
	requireTools(t, "prometheus", "promtool")
	root := repoRoot(t)
	tmp := t.TempDir()
	start := time.Now()
	flowgate, natsServer := buildBinaries(t, root, tmp)
	t.Logf("built flowgate and nats-server in %s", time.Since(start).Round(time.Second))

	// Processes.
	natsAddr, monitorAddr := freePort(t), freePort(t)
	natsHost, natsPort, _ := strings.Cut(natsAddr, ":")
	_, monitorPort, _ := strings.Cut(monitorAddr, ":")
	natsArgs := []string{"-js", "-a", natsHost, "-p", natsPort, "-m", monitorPort, "-sd", filepath.Join(tmp, "nats")}
	natsProc := startProc(t, tmp, "nats-server", nil, natsServer, natsArgs...)
	waitNATS(t, "nats://"+natsAddr, 15*time.Second)
	// The NATS Prometheus exporter, run as docker-compose.single.yml runs
	// it, on the server's monitoring port.
	exporterAddr := freePort(t)
	exporter := startNATSExporter(t, root, tmp, exporterAddr, "http://"+monitorAddr)

	ingressAddr, orchAddr, chanAddr, promAddr := freePort(t), freePort(t), freePort(t), freePort(t)
	env := []string{
		"FLOWGATE_NATS_URL=nats://" + natsAddr,
		"FLOWGATE_DATA_DIR=" + filepath.Join(tmp, "data"),
		"FLOWGATE_ADMIN_KEY=" + adminKey,
		"FLOWGATE_HTTP_ALLOW_PRIVATE=true",
		"FLOWGATE_WEBHOOK_ALLOW_PRIVATE=true",
		"FLOWGATE_LOG_LEVEL=info",
	}
	if err := os.MkdirAll(filepath.Join(tmp, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	ingress := startProc(t, tmp, "ingress", append(env, "FLOWGATE_HTTP_ADDR="+ingressAddr), flowgate, "ingress")
	waitHTTP(t, "http://"+ingressAddr+"/readyz", 30*time.Second, ingress)
	// One at a time: the processes share the SQLite data directory, and
	// concurrent schema set-up at start can meet SQLITE_BUSY.
	orch := startProc(t, tmp, "orchestrator", append(env, "FLOWGATE_METRICS_ADDR="+orchAddr), flowgate, "orchestrator")
	waitHTTP(t, "http://"+orchAddr+"/readyz", 30*time.Second, orch)
	sandbox := startProc(t, tmp, "channel-sandbox", append(env, "FLOWGATE_METRICS_ADDR="+chanAddr), flowgate, "channel", "sandbox")
	waitHTTP(t, "http://"+chanAddr+"/readyz", 30*time.Second, sandbox)
	waAddr := freePort(t)
	wa := startProc(t, tmp, "channel-whatsapp", append(env, "FLOWGATE_METRICS_ADDR="+waAddr), flowgate, "channel", "whatsapp")
	waitHTTP(t, "http://"+waAddr+"/readyz", 30*time.Second, wa)
	services := []*proc{ingress, orch, sandbox, wa}
	targets := map[string][]string{"ingress": {ingressAddr}, "orchestrator": {orchAddr}, "channel": {chanAddr, waAddr},
		"nats": {exporterAddr}}
	// The WhatsApp Cloud API double: it knows the "wa" bot's token, allows
	// 20 requests/s per number (the worker's pacer starts at 80/s, so the
	// double answers 130429 until the pacer slows down) and accepts the
	// "promo" template.
	waDouble := whatsappdouble.New(whatsappdouble.WithAccountToken(waPhoneID, waGoodToken),
		whatsappdouble.WithRate(20, 5), whatsappdouble.WithTemplates("promo"))
	defer waDouble.Close()

	// Prometheus, scraping every second, with the repository's rules
	// evaluated every second (the expressions are unchanged).
	prom := startPrometheus(t, root, tmp, promAddr, targets)
	waitHTTP(t, "http://"+promAddr+"/-/ready", 30*time.Second, prom)
	p := promClient{base: "http://" + promAddr}
	// Prometheus discovers its targets a few seconds after it is ready:
	// the scenario starts once every service has been scraped.
	p.waitFor(t, fmt.Sprintf("count(up == 1) == %d", 5), 30*time.Second, append(services, exporter)...)

	// The scenario.
	api := apiClient{t: t, base: "http://" + ingressAddr}
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			http.Error(w, `{"error":"down"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"tier":"gold"}`)
	}))
	defer provider.Close()
	// The status webhook receiver fails the first two deliveries.
	var hooks atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hooks.Add(1) <= 2 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	sc := runScenario(t, api, provider.URL, receiver.URL, waDouble.APIBase(), "nats://"+natsAddr)
	// Prometheus sees the scenario's results before the outage.
	p.waitFor(t, fmt.Sprintf(`sum(flowgate_run_transitions_total{status="completed"}) >= %d`, sc.welcome+sc.lookup+sc.register), 60*time.Second, services...)
	p.waitFor(t, `sum(flowgate_bus_dead_lettered_total) >= 2`, 30*time.Second, services...)
	// WhatsApp: every template accepted by the double, every send of the
	// revoked token refused with 190 (before the NATS outage: the pacer's
	// state lives in NATS KV).
	p.waitFor(t, fmt.Sprintf(`sum(flowgate_channel_messages_sent_total{channel="whatsapp"}) >= %d`, sc.waSent), 90*time.Second, services...)
	p.waitFor(t, fmt.Sprintf(`sum(flowgate_channel_send_failures_total{channel="whatsapp",reason="190"}) >= %d`, sc.waRevoked), 30*time.Second, services...)

	// A NATS outage: the ingress must refuse (503), not half-accept; after
	// the restart every service reconnects and the pipeline works again.
	natsProc.stop()
	// Two waves of concurrent dispatches, a few scrapes apart: a counter
	// series' first sample shows no increase to rate(), the second does.
	refused := 0
	for wave := 0; wave < 2; wave++ {
		if wave > 0 {
			time.Sleep(3 * time.Second)
		}
		outage := make(chan int, 5)
		for i := 0; i < cap(outage); i++ {
			go func() {
				code, _ := api.dispatch(sc.key, "WELCOME", fmt.Sprintf("+15559%02d%04d", wave, i), nil)
				outage <- code
			}()
		}
		for i := 0; i < cap(outage); i++ {
			switch code := <-outage; code {
			case http.StatusServiceUnavailable:
				refused++
			case http.StatusAccepted:
				t.Errorf("dispatch answered 202 while NATS was down")
			}
		}
	}
	if refused == 0 {
		t.Errorf("no dispatch was refused with 503 during the NATS outage")
	}
	natsProc = startProc(t, tmp, "nats-server", nil, natsServer, natsArgs...)
	waitNATS(t, "nats://"+natsAddr, 15*time.Second)
	for job, addrs := range targets {
		if job == "nats" {
			continue // the exporter has no /readyz; it reads the server again by itself
		}
		for _, addr := range addrs {
			waitHTTP(t, "http://"+addr+"/readyz", 60*time.Second, services...)
		}
	}
	after := 5
	for i := 0; i < after; i++ {
		if code, body := api.dispatch(sc.key, "WELCOME", fmt.Sprintf("+1555800%04d", i), map[string]any{"name": "After", "plan": "pro"}); code != http.StatusAccepted {
			t.Fatalf("dispatch after the NATS restart: %d %s", code, body)
		}
	}
	sc.welcome += after
	// The WhatsApp worker sends again after the restart (its pacer's state
	// lived in the old server's memory).
	for i := 0; i < 5; i++ {
		if code, body := api.do(http.MethodPost, "/v1/bots/wa/dispatch/PROMO", sc.waKey, map[string]any{"from": fmt.Sprintf("+491512341%04d", i)}); code != http.StatusAccepted {
			t.Fatalf("WhatsApp dispatch after the NATS restart: %d %s", code, body)
		}
	}
	sc.waSent += 5

	// Wait for the pipeline to finish and Prometheus to have seen it.
	wantCompleted := sc.welcome + sc.lookup + sc.register
	p.waitFor(t, fmt.Sprintf(`sum(flowgate_run_transitions_total{status="completed"}) >= %d`, wantCompleted), 60*time.Second, services...)
	p.waitFor(t, fmt.Sprintf(`sum(flowgate_run_transitions_total{status="failed"}) >= %d`, sc.broken), 30*time.Second, services...)
	p.waitFor(t, `sum(flowgate_timers_fired_total) >= 1`, 30*time.Second, services...)
	// The server is back after the outage, and its exporter says so.
	p.waitFor(t, `nats:servers_up == 1`, 30*time.Second, exporter)
	p.waitFor(t, `sum(flowgate_run_webhook_deliveries_total{result="delivered"}) >= 1`, 60*time.Second, services...)
	// rate() needs two samples in its window: the dashboards' webhook panels
	// have series only once a scrape after the first delivery has come in.
	p.waitFor(t, `sum(rate(flowgate_run_webhook_deliveries_total[2m])) > 0`, 30*time.Second, services...)
	p.waitFor(t, `sum(rate(flowgate_run_webhook_delivery_duration_seconds_count[2m])) > 0`, 30*time.Second, services...)
	p.waitFor(t, fmt.Sprintf(`sum(flowgate_channel_messages_sent_total{channel="whatsapp"}) >= %d`, sc.waSent), 60*time.Second, services...)
	// Every recording rule has been evaluated on the final data.
	_, rules := loadRules(t, root)
	rules = append(rules, loadNATSRules(t, root)...)
	for _, r := range rules {
		if r.Record != "" {
			p.waitFor(t, r.Record, 30*time.Second, services...)
		}
	}

	// Every expression of the dashboards and rules.
	_, dashExprs := loadDashboards(t, root)
	exprs := append(dashExprs, rules...)
	checked, allowed := 0, 0
	for _, e := range exprs {
		channels := []string{""}
		if strings.Contains(e.Expr, "$channel") {
			channels = scenarioChannels
		}
		for _, ch := range channels {
			q := grafanaVars(e.Expr, ch)
			res, err := p.query(q)
			if err != nil {
				t.Errorf("%s: %s\n  %v", e.Where, q, err)
				continue
			}
			checked++
			if e.Alert {
				continue // a threshold: empty means "not firing"; its recorded operands are checked below
			}
			if res.empty() {
				if reason := sandboxReason(e.Expr); ch == "sandbox" && reason != "" {
					allowed++
					t.Logf("allowed empty for the sandbox (%s): %s", reason, e.Where)
					continue
				}
				t.Errorf("%s: no series after the scenario\n  %s", e.Where, q)
			}
		}
	}
	// Alerts compare recorded series: those series exist.
	for _, e := range rules {
		if !e.Alert {
			continue
		}
		for _, ref := range metricRef.FindAllString(e.Expr, -1) {
			res, err := p.query(ref)
			if err != nil {
				t.Errorf("%s: %v", e.Where, err)
			} else if res.empty() {
				t.Errorf("%s: its operand %s has no series", e.Where, ref)
			}
		}
	}
	t.Logf("evaluated %d expressions (%d dashboard targets, %d rules); %d allowed empty", checked, len(dashExprs), len(rules), allowed)

	// Rules evaluate without errors; the scenario's dead letter and 5xx
	// answers put their alerts in motion.
	p.checkRules(t)
	// Alert rules run on their own schedule: give them a few evaluations
	// to see the recorded series.
	var alerts map[string]string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		alerts = p.alerts(t)
		s := alerts["FlowgateIngressErrorRate"]
		if alerts["FlowgateDeadLetters"] == "firing" && alerts["FlowgateProviderAuthFailures"] == "firing" && (s == "pending" || s == "firing") || time.Now().After(deadline) {
			break
		}
	}
	if alerts["FlowgateDeadLetters"] != "firing" {
		for _, q := range []string{`flowgate_jetstream_stream_messages{stream="FLOWGATE_DLQ"}[10m]`, "flowgate:dead_letters:delta10m"} {
			r, err := p.query(q)
			t.Logf("%s = %s %v", q, r.Result, err)
		}
		t.Errorf("FlowgateDeadLetters is %q after a message was dead-lettered; alerts: %v", alerts["FlowgateDeadLetters"], alerts)
	}
	if alerts["FlowgateProviderAuthFailures"] != "firing" {
		t.Errorf("FlowgateProviderAuthFailures is %q after the double refused a revoked token; alerts: %v", alerts["FlowgateProviderAuthFailures"], alerts)
	}
	if s := alerts["FlowgateIngressErrorRate"]; s != "pending" && s != "firing" {
		ratio, _ := p.query("flowgate:http_error_ratio:rate5m")
		t.Errorf("FlowgateIngressErrorRate is %q after %d 503s (ratio %v); alerts: %v", s, refused, ratio, alerts)
	}

	// promtool check metrics and the catalogue, on what each service serves.
	doc, err := os.ReadFile(filepath.Join(root, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	catalogue, _ := parseTable(t, string(doc))
	for job, addrs := range targets {
		if job == "nats" {
			continue // the exporter's own metrics: its names are its own (and TestDashboards pins the ones we use)
		}
		for _, addr := range addrs {
			body := get(t, "http://"+addr+"/metrics")
			cmd := exec.Command("promtool", "check", "metrics")
			cmd.Stdin = bytes.NewReader(body)
			if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("promtool check metrics on %s: %v\n%s", job, err, out)
			}
			checkFamilies(t, job, body, catalogue)
		}
	}
	for _, s := range append(services, exporter) {
		if done, err := s.exited(); done {
			t.Errorf("%s exited during the test: %v\n%s", s.name, err, s.tail(30))
		}
	}
	t.Logf("scenario: %d welcome, %d lookup, %d register, %d broken runs; %d WhatsApp templates, %d refused tokens; %d unauthorized, %d rejected; %d dispatches refused during the NATS outage; total %s",
		sc.welcome, sc.lookup, sc.register, sc.broken, sc.waSent, sc.waRevoked, sc.unauthorized, sc.rejected, refused, time.Since(start).Round(time.Second))
}

// sandboxReason is why expr may be empty for the sandbox channel, or "".
func sandboxReason(expr string) string {
	for _, m := range metricRef.FindAllString(expr, -1) {
		if r, ok := allowEmptySandbox[m]; ok {
			return m + ": " + r
		}
	}
	return ""
}

// grafanaVars replaces Grafana's variables with values of the scenario.
func grafanaVars(expr, channel string) string {
	return strings.NewReplacer("$__rate_interval", "2m", "$__interval", "15s", "$__range", "10m", "$channel", channel,
		"$job", ".*", "$instance", ".*").Replace(expr)
}

func startPrometheus(t *testing.T, root, tmp, addr string, targets map[string][]string) *proc {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n")
	for _, name := range []string{"flowgate.yml", "nats.yml"} {
		rules, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "rules", name))
		if err != nil {
			t.Fatal(err)
		}
		fast := strings.ReplaceAll(string(rules), "interval: 15s", "interval: 1s")
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(fast), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - %s\n", filepath.Join(tmp, name))
	}
	fmt.Fprintf(&b, "scrape_configs:\n")
	jobs := make([]string, 0, len(targets))
	for j := range targets {
		jobs = append(jobs, j)
	}
	sort.Strings(jobs)
	for _, j := range jobs {
		quoted := make([]string, len(targets[j]))
		for i, a := range targets[j] {
			quoted[i] = strconv.Quote(a)
		}
		fmt.Fprintf(&b, "  - job_name: %s\n    static_configs:\n      - targets: [%s]\n", j, strings.Join(quoted, ", "))
	}
	cfg := filepath.Join(tmp, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return startProc(t, tmp, "prometheus", nil, "prometheus",
		"--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(tmp, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
}

func waitNATS(t *testing.T, u string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		nc, err := nats.Connect(u, nats.Timeout(time.Second))
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server at %s: %v", u, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func get(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
	}
	return b
}

// checkFamilies compares the flowgate_* families a service serves with the
// catalogue: every one documented, with the documented type and labels,
// and exposed by a service the catalogue names.
func checkFamilies(t *testing.T, job string, body []byte, catalogue map[string]metricDef) {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s /metrics: %v", job, err)
	}
	types := map[dto.MetricType]string{dto.MetricType_COUNTER: "counter", dto.MetricType_GAUGE: "gauge",
		dto.MetricType_HISTOGRAM: "histogram", dto.MetricType_SUMMARY: "summary", dto.MetricType_UNTYPED: "untyped"}
	seen := 0
	for name, f := range fams {
		if !strings.HasPrefix(name, "flowgate_") {
			continue
		}
		seen++
		d, ok := catalogue[name]
		if !ok {
			t.Errorf("%s serves %s, which docs/metrics.md does not list", job, name)
			continue
		}
		if got := types[f.GetType()]; got != d.Type {
			t.Errorf("%s: %s is a %s, docs say %s", job, name, got, d.Type)
		}
		// The one binary links every package, so metrics without labels
		// appear everywhere at zero; only their owner may move them.
		if d.Service != "all" && d.Service != job && !allZero(f) {
			t.Errorf("%s serves non-zero %s, which docs say only %s exposes", job, name, d.Service)
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
			if !sameLabels(labels, d.Labels) {
				t.Errorf("%s: %s has labels %v, docs say %v", job, name, labels, d.Labels)
				break
			}
		}
	}
	if seen < 5 {
		t.Errorf("%s serves only %d flowgate_ families", job, seen)
	}
}

// promClient queries Prometheus's HTTP API.
type promClient struct{ base string }

type promResult struct {
	ResultType string            `json:"resultType"`
	Result     []json.RawMessage `json:"result"`
}

func (r promResult) empty() bool { return r.ResultType == "vector" && len(r.Result) == 0 }

func (p promClient) api(path string, v url.Values, out any) error {
	u := p.base + path
	if v != nil {
		u += "?" + v.Encode()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
		Warnings  []string        `json:"warnings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s: HTTP %d: %v", path, resp.StatusCode, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, env.ErrorType, env.Error)
	}
	if len(env.Warnings) > 0 {
		return fmt.Errorf("%s: warnings %v", path, env.Warnings)
	}
	return json.Unmarshal(env.Data, out)
}

func (p promClient) query(q string) (promResult, error) {
	var r promResult
	err := p.api("/api/v1/query", url.Values{"query": {q}}, &r)
	return r, err
}

// waitFor polls until q returns a series.
func (p promClient) waitFor(t *testing.T, q string, timeout time.Duration, procs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r, err := p.query(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if !r.empty() {
			return
		}
		if time.Now().After(deadline) {
			var logs strings.Builder
			for _, pr := range procs {
				fmt.Fprintf(&logs, "--- %s\n%s\n", pr.name, pr.tail(15))
			}
			t.Fatalf("after %s, still no series for %s\n%s", timeout, q, logs.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (p promClient) checkRules(t *testing.T) {
	t.Helper()
	var data struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api("/api/v1/rules", nil, &data); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("rule %s/%s: health %q %s", g.Name, r.Name, r.Health, r.LastError)
			}
		}
	}
	if n == 0 {
		t.Error("Prometheus loaded no rules")
	}
}

// alerts returns each active alert's state by name (the worst state).
func (p promClient) alerts(t *testing.T) map[string]string {
	t.Helper()
	var data struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := p.api("/api/v1/alerts", nil, &data); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, a := range data.Alerts {
		name := a.Labels["alertname"]
		if out[name] != "firing" {
			out[name] = a.State
		}
	}
	return out
}

func allZero(f *dto.MetricFamily) bool {
	for _, m := range f.GetMetric() {
		if m.GetCounter().GetValue() != 0 || m.GetGauge().GetValue() != 0 || m.GetHistogram().GetSampleCount() != 0 ||
			m.GetSummary().GetSampleCount() != 0 || m.GetUntyped().GetValue() != 0 {
			return false
		}
	}
	return true
}

// exporterDir is the NATS Prometheus exporter's source, the version the
// compose files run (third_party/README.md says why it is kept here).
const exporterDir = "third_party/prometheus-nats-exporter"

// buildNATSExporter builds the NATS Prometheus exporter kept in
// exporterDir (a module of its own, built where it is) into dir.
func buildNATSExporter(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "prometheus-nats-exporter")
	goBuild(t, filepath.Join(root, exporterDir), bin, ".")
	return bin
}

// startNATSExporter builds the NATS Prometheus exporter and runs it with
// the arguments docker-compose.single.yml gives it, reading the NATS
// server's monitoring endpoint at monitorURL and serving on addr.
func startNATSExporter(t *testing.T, root, tmp, addr, monitorURL string) *proc {
	t.Helper()
	bin := buildNATSExporter(t, root, tmp)
	return runNATSExporter(t, tmp, "nats-exporter", bin, composeExporterArgs(t, root, "docker-compose.single.yml", "nats-exporter"), addr, monitorURL)
}

// runNATSExporter runs the exporter binary with a compose service's
// arguments (args, ending with the server's monitoring URL), reading
// monitorURL instead and serving on addr.
func runNATSExporter(t *testing.T, tmp, name, bin string, args []string, addr, monitorURL string) *proc {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	args = append(append([]string{"-a", host, "-p", port}, args[:len(args)-1]...), monitorURL)
	return startProc(t, tmp, name, nil, bin, args...)
}

// composeExporterArgs is the command of a compose file's exporter
// service: flags, then the server's monitoring URL.
func composeExporterArgs(t *testing.T, root, file, service string) []string {
	t.Helper()
	svc, ok := readCompose(t, root, file).Services[service]
	if !ok || len(svc.Command) == 0 || !strings.HasPrefix(svc.Command[len(svc.Command)-1], "http://") {
		t.Fatalf("%s: %s's command should end with the server's monitoring URL: %q", file, service, svc.Command)
	}
	return svc.Command
}
