package deploytest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// promExpr is one PromQL expression of a dashboard or rule file.
type promExpr struct {
	Where  string // file and panel/rule
	Expr   string
	Record string // for recording rules: the series it writes
	Alert  bool
}

func loadRules(t *testing.T, root string) (ruleFile, []promExpr) {
	t.Helper()
	return loadRuleFile(t, root, "flowgate.yml")
}

// loadNATSRules reads the rules on the NATS exporters' metrics.
func loadNATSRules(t *testing.T, root string) []promExpr {
	t.Helper()
	_, out := loadRuleFile(t, root, "nats.yml")
	return out
}

func loadRuleFile(t *testing.T, root, name string) (ruleFile, []promExpr) {
	t.Helper()
	path := filepath.Join(root, "deploy", "prometheus", "rules", name)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []promExpr
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			name := r.Record
			if r.Alert != "" {
				name = "alert " + r.Alert
			}
			out = append(out, promExpr{Where: "rules/" + filepath.Base(path) + " " + name, Expr: strings.TrimSpace(r.Expr), Record: r.Record, Alert: r.Alert != ""})
		}
	}
	return rf, out
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			Query    any    `json:"query"`
			AllValue string `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboards(t *testing.T, root string) ([]dashboard, []promExpr) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "deploy", "grafana", "dashboards", "*.json"))
	if len(files) < 2 {
		t.Fatalf("want at least two dashboards (overview and per channel), found %v", files)
	}
	var ds []dashboard
	var out []promExpr
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		ds = append(ds, d)
		var walk func(ps []panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				for _, tg := range p.Targets {
					out = append(out, promExpr{Where: filepath.Base(f) + " panel " + p.Title + " " + tg.RefID, Expr: tg.Expr})
				}
			}
		}
		walk(d.Panels)
		for _, v := range d.Templating.List {
			if q, ok := v.Query.(map[string]any); ok {
				if s, ok := q["query"].(string); ok {
					// label_values(metric, label) is Grafana's, not PromQL: check its metric.
					if m := regexp.MustCompile(`^label_values\((\w+),\s*\w+\)$`).FindStringSubmatch(s); m != nil {
						out = append(out, promExpr{Where: filepath.Base(f) + " variable " + v.Name, Expr: m[1]})
					}
				}
			}
		}
	}
	return ds, out
}

// metricRef finds metric and recording-rule names in an expression.
var metricRef = regexp.MustCompile(`\b(flowgate[a-z0-9_:]*)`)

// exporterRef finds the NATS Prometheus exporter's metrics and the
// recording rules of deploy/prometheus/rules/nats.yml.
var exporterRef = regexp.MustCompile(`\b(jetstream_[a-z_]+|gnatsd_[a-z_]+|nats:[a-z_:]+)`)

// exporterMetrics are the exporter's metrics the NATS dashboard and rules
// may use (prometheus-nats-exporter: -jsz=all, -varz, -healthz).
var exporterMetrics = map[string]bool{
	"jetstream_server_jetstream_disabled": true, "jetstream_server_total_message_bytes": true,
	"jetstream_server_max_storage": true, "jetstream_stream_total_bytes": true, "jetstream_stream_total_messages": true,
	"jetstream_consumer_num_pending": true, "jetstream_consumer_num_ack_pending": true,
	"jetstream_consumer_num_redelivered": true, "gnatsd_varz_connections": true,
	"gnatsd_healthz_status_value": true, // -healthz: 1 "ok", 0 unreachable or unhealthy
}

// rawSelector finds a Flowgate metric with its label matchers.
var rawSelector = regexp.MustCompile(`\bflowgate_[a-z0-9_]+(\{[^}]*\})?`)

// TestDashboards checks the dashboards' structure and that every metric
// they name is in the catalogue or is a recording rule.
func TestDashboards(t *testing.T) {
	root := repoRoot(t)
	ds, exprs := loadDashboards(t, root)
	rf, _ := loadRules(t, root)
	known := map[string]bool{}
	for _, d := range scanMetrics(t, root) {
		known[d.Name] = true
		if docType(d) == "histogram" {
			known[d.Name+"_bucket"], known[d.Name+"_sum"], known[d.Name+"_count"] = true, true, true
		}
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				known[r.Record] = true
			}
		}
	}
	natsRules := loadNATSRules(t, root)
	for _, r := range natsRules {
		if r.Record != "" {
			known[r.Record] = true
		}
	}
	uids := map[string]bool{}
	titles := []string{}
	for _, d := range ds {
		if d.UID == "" || uids[d.UID] {
			t.Errorf("dashboard %q: missing or duplicate uid", d.Title)
		}
		uids[d.UID] = true
		titles = append(titles, d.Title)
		// Importable anywhere: the data source, job and instance are
		// variables, with "all" for the last two.
		vars := map[string]string{}
		for _, v := range d.Templating.List {
			vars[v.Name] = v.Type
			if (v.Name == "job" || v.Name == "instance") && v.AllValue != ".*" {
				t.Errorf("%s: variable %s needs allValue \".*\"", d.Title, v.Name)
			}
		}
		if vars["datasource"] != "datasource" || vars["job"] != "query" || vars["instance"] != "query" {
			t.Errorf("%s: want the variables datasource (data source), job and instance, have %v", d.Title, vars)
		}
		ids := map[int]bool{}
		var walk func(ps []panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				if ids[p.ID] {
					t.Errorf("%s: duplicate panel id %d", d.Title, p.ID)
				}
				ids[p.ID] = true
				if strings.TrimSpace(p.Description) == "" {
					t.Errorf("%s / %s: no description", d.Title, p.Title)
				}
				if p.Type == "row" {
					continue
				}
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
					t.Errorf("%s / %s: datasource must be the variable ${datasource}, not a fixed uid", d.Title, p.Title)
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s / %s: no query", d.Title, p.Title)
				}
				if p.GridPos.W == 0 || p.GridPos.H == 0 {
					t.Errorf("%s / %s: no size", d.Title, p.Title)
				}
				for _, tg := range p.Targets {
					for _, sel := range rawSelector.FindAllString(tg.Expr, -1) {
						if !strings.Contains(sel, `job=~"$job"`) || !strings.Contains(sel, `instance=~"$instance"`) {
							t.Errorf("%s / %s: %s does not follow the job and instance variables", d.Title, p.Title, sel)
						}
					}
				}
			}
		}
		walk(d.Panels)
	}
	for _, want := range []string{"Flowgate overview", "Flowgate channel", "Flowgate NATS"} {
		if !slices.Contains(titles, want) {
			t.Errorf("want the dashboard %q, have %v", want, titles)
		}
	}
	for _, e := range exprs {
		refs := metricRef.FindAllString(e.Expr, -1)
		exp := exporterRef.FindAllString(e.Expr, -1)
		if len(refs) == 0 && len(exp) == 0 && !strings.Contains(e.Expr, "up{") && e.Expr != "up" {
			t.Errorf("%s: %q names no Flowgate or NATS metric", e.Where, e.Expr)
		}
		for _, m := range refs {
			if !known[m] {
				t.Errorf("%s: %s is neither in the metrics catalogue nor a recording rule", e.Where, m)
			}
		}
		for _, m := range exp {
			if !exporterMetrics[m] && !known[m] {
				t.Errorf("%s: %s is neither a known NATS exporter metric nor a rule of nats.yml", e.Where, m)
			}
		}
	}
	for _, r := range natsRules {
		for _, m := range exporterRef.FindAllString(r.Expr, -1) {
			if !exporterMetrics[m] && !known[m] {
				t.Errorf("%s: %s is neither a known NATS exporter metric nor a rule of nats.yml", r.Where, m)
			}
		}
	}
	// The provisioning points Grafana at the datasource uid the panels use
	// and at the folder the dashboards are mounted in.
	var dsProv struct {
		Datasources []struct {
			UID string `yaml:"uid"`
			URL string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(root, "deploy", "grafana", "provisioning", "datasources", "prometheus.yml"), &dsProv)
	if len(dsProv.Datasources) != 1 || dsProv.Datasources[0].UID != "prometheus" || dsProv.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("datasource provisioning: %+v", dsProv)
	}
	var dbProv struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(root, "deploy", "grafana", "provisioning", "dashboards", "flowgate.yml"), &dbProv)
	if len(dbProv.Providers) != 1 || dbProv.Providers[0].Options.Path != "/var/lib/grafana/dashboards" {
		t.Errorf("dashboard provisioning: %+v", dbProv)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestRulesAndConfig runs promtool over the rules and the scrape config,
// and checks that every alert has a severity and a summary and compares a
// recorded series (so that its data can be checked and graphed).
func TestRulesAndConfig(t *testing.T) {
	requireTools(t, "promtool")
	root := repoRoot(t)
	out := run(t, root, "promtool", "check", "rules", "deploy/prometheus/rules/flowgate.yml", "deploy/prometheus/rules/nats.yml")
	if strings.Count(out, "SUCCESS") != 2 {
		t.Fatalf("promtool check rules: %s", out)
	}
	// The compose config names rule files by their path in the container;
	// check it with the repository's rules in their place.
	cfg, err := os.ReadFile(filepath.Join(root, "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	local := strings.Replace(string(cfg), "/etc/prometheus/rules/*.yml", filepath.Join(root, "deploy", "prometheus", "rules", "*.yml"), 1)
	if local == string(cfg) {
		t.Fatal("prometheus.yml no longer loads /etc/prometheus/rules/*.yml (the compose mount)")
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	out = run(t, dir, "promtool", "check", "config", "prometheus.yml")
	if !strings.Contains(out, "SUCCESS: 17 rules found") && !strings.Contains(out, "rules found") {
		t.Fatalf("promtool check config did not load the rules: %s", out)
	}
	var sc struct {
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(root, "deploy", "prometheus", "prometheus.yml"), &sc)
	jobs := []string{}
	for _, s := range sc.ScrapeConfigs {
		jobs = append(jobs, s.JobName)
	}
	for _, j := range []string{"ingress", "orchestrator", "channel", "nats"} {
		if !slices.Contains(jobs, j) {
			t.Errorf("prometheus.yml scrapes no %s job (have %v)", j, jobs)
		}
	}

	rf, _ := loadRules(t, root)
	nrf, _ := loadRuleFile(t, root, "nats.yml")
	rf.Groups = append(rf.Groups, nrf.Groups...)
	records := map[string]bool{}
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				records[r.Record] = true
				continue
			}
			alerts[r.Alert] = true
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s: needs a severity label and a summary annotation", r.Alert)
			}
		}
	}
	for _, a := range []string{"FlowgateIngressErrorRate", "FlowgateConsumerBacklogRising", "FlowgateDeadLetters", "FlowgateProviderAuthFailures", "FlowgateRunFailureRatio",
		"NATSServerDown", "NATSJetStreamStorageHigh", "NATSConsumerLagHigh"} {
		if !alerts[a] {
			t.Errorf("the alert %s is missing", a)
		}
	}
}
