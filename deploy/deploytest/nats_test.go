package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/events"
)

// natsEnv is the NATS servers' environment from deploy/env/nats.env.example.
func natsEnv(t *testing.T, root string) []string {
	t.Helper()
	var env []string
	for k, v := range readEnv(t, filepath.Join(root, "deploy", "env", "nats.env.example")) {
		env = append(env, k+"="+v)
	}
	return env
}

// TestNATSConfigs has nats-server, built from the module's own version
// (the one compose runs), check deploy/nats/nats.conf and cluster.conf
// (`nats-server -c FILE -t`) with the users' passwords from nats.env, and
// refuse them without (no password has a default).
func TestNATSConfigs(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	natsServer := filepath.Join(tmp, "nats-server")
	goBuild(t, root, natsServer, "github.com/nats-io/nats-server/v2")
	env := append(natsEnv(t, root), "NATS_SERVER_NAME=nats-1")
	for _, f := range []string{"nats.conf", "cluster.conf"} {
		cmd := exec.Command(natsServer, "-c", f, "-t")
		cmd.Dir = filepath.Join(root, "deploy", "nats")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "is valid") {
			t.Errorf("nats-server -c %s -t: %v\n%s", f, err, out)
		}
		bare := exec.Command(natsServer, "-c", f, "-t")
		bare.Dir = cmd.Dir
		bare.Env = []string{"PATH=" + os.Getenv("PATH")}
		if out, err := bare.CombinedOutput(); err == nil || !strings.Contains(string(out), "NATS_") {
			t.Errorf("%s is valid without the passwords in the environment: %v\n%s", f, err, out)
		}
	}
}

// renderNATSConf copies deploy/nats into dir with the container's paths and
// host names replaced by this machine's: client, monitoring and route ports
// on loopback, the store in dir. Every replacement must apply, so a config
// that changes shape fails here rather than running half-rendered.
func renderNATSConf(t *testing.T, root, dir, file string, client, monitor, route string, routes []string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	auth, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "nats", file))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	repl := [][2]string{
		{"listen: 0.0.0.0:4222", "listen: " + client},
		{"http: 0.0.0.0:8222", "http: " + monitor},
		{"store_dir: /data/jetstream", "store_dir: " + filepath.Join(dir, "jetstream")},
	}
	if route != "" {
		repl = append(repl, [2]string{"listen: 0.0.0.0:6222", "listen: " + route})
		for i, r := range routes {
			repl = append(repl, [2]string{fmt.Sprintf("nats-route://nats-%d:6222", i+1), "nats-route://" + r})
		}
	}
	for _, r := range repl {
		if !strings.Contains(conf, r[0]) {
			t.Fatalf("%s no longer has %q", file, r[0])
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// deployedCluster is the deployment's NATS run as compose runs it — three
// nats-server processes from deploy/nats/cluster.conf with the users of
// auth.conf — and the Flowgate services as separate processes, each with
// its own user from deploy/env and FLOWGATE_NATS_REPLICAS=3, with a bot
// "ops" whose event HELLO sends "Hello {{ name }}" on the sandbox.
type deployedCluster struct {
	t          *testing.T
	tmp        string
	natsServer string
	env        []string
	confs      []string
	monitors   []string
	nats       []*proc
	urls       string
	js         jetstream.JetStream
	services   []*proc
	api        apiClient
	key        string
	// flowgate is the binary; serviceEnv a service's environment.
	flowgate      string
	serviceEnv    func(name string) []string
	orchestrators int
}

func startDeployedCluster(t *testing.T) *deployedCluster { return startDeployed(t, 3) }

// startDeployedSingle is the small install's shape (docker-compose.single.yml):
// one nats-server from deploy/nats/nats.conf (fsync on every write), R1.
func startDeployedSingle(t *testing.T) *deployedCluster { return startDeployed(t, 1) }

func startDeployed(t *testing.T, nodes int) *deployedCluster { return startDeployedWith(t, nodes, 1) }

// startDeployedWith is startDeployed with that many orchestrators.
func startDeployedWith(t *testing.T, nodes, orchestrators int) *deployedCluster {
	t.Helper()
	return startDeployedOpts(t, deployOpts{nodes: nodes, orchestrators: orchestrators})
}

// deployOpts shapes a deployment under test.
type deployOpts struct {
	nodes, orchestrators int
	// conf, when set, edits each rendered NATS config (replaceAll).
	conf func(string) string
	// env is added to every Flowgate service's environment.
	env []string
	// ingressOnly starts the ingress alone; startConsumers starts the
	// orchestrators and channel workers later.
	ingressOnly bool
}

func startDeployedOpts(t *testing.T, o deployOpts) *deployedCluster {
	t.Helper()
	nodes := o.nodes
	root := repoRoot(t)
	tmp := t.TempDir()
	flowgate, natsServer := buildBinaries(t, root, tmp)
	c := &deployedCluster{t: t, tmp: tmp, natsServer: natsServer, env: natsEnv(t, root)}

	clients, monitors, routes := make([]string, nodes), make([]string, nodes), make([]string, nodes)
	for i := range nodes {
		clients[i], monitors[i], routes[i] = freePort(t), freePort(t), freePort(t)
	}
	var urls []string
	for i := range nodes {
		if nodes == 1 {
			c.confs = append(c.confs, renderNATSConf(t, root, filepath.Join(tmp, "nats-1"), "nats.conf", clients[i], monitors[i], "", nil))
		} else {
			c.confs = append(c.confs, renderNATSConf(t, root, filepath.Join(tmp, fmt.Sprintf("nats-%d", i+1)), "cluster.conf", clients[i], monitors[i], routes[i], routes))
		}
		if o.conf != nil {
			editFile(t, c.confs[i], o.conf)
		}
		c.nats = append(c.nats, nil)
		c.startNATS(i)
		urls = append(urls, "nats://"+clients[i])
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append(c.nats, c.services...) {
				t.Logf("%s:\n%s", p.name, p.tail(20))
			}
		}
	})
	for _, m := range monitors {
		waitHTTP(t, "http://"+m+"/varz", 60*time.Second)
	}
	c.monitors = monitors
	c.urls = strings.Join(urls, ",")
	passwords := readEnv(t, filepath.Join(root, "deploy", "env", "nats.env.example"))

	// The cluster answers JetStream requests once it has a meta leader.
	admin := connectNATS(t, c.urls, nats.UserInfo("admin", passwords["NATS_ADMIN_PASSWORD"]), nats.MaxReconnects(-1))
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	c.js = js
	bustest.WaitForJetStream(t, js, 60*time.Second)

	// The services, each as its own NATS user.
	dataDir := filepath.Join(tmp, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	base := []string{
		"FLOWGATE_NATS_URL=" + c.urls,
		fmt.Sprintf("FLOWGATE_NATS_REPLICAS=%d", nodes),
		"FLOWGATE_DATA_DIR=" + dataDir,
		"FLOWGATE_ADMIN_KEY=" + adminKey,
		"FLOWGATE_MONGODB_URI=", // SQLite: these tests are about NATS
	}
	base = append(base, o.env...)
	c.serviceEnv = func(name string) []string {
		vars := readEnv(t, filepath.Join(root, "deploy", "env", name+".env.example"))
		return append(append([]string{}, base...), "FLOWGATE_NATS_USER="+vars["FLOWGATE_NATS_USER"], "FLOWGATE_NATS_PASSWORD="+vars["FLOWGATE_NATS_PASSWORD"])
	}
	c.flowgate = flowgate
	ingressAddr := freePort(t)
	ingress := startProc(t, tmp, "ingress", append(c.serviceEnv("ingress"), "FLOWGATE_HTTP_ADDR="+ingressAddr), flowgate, "ingress")
	c.services = append(c.services, ingress)
	waitHTTP(t, "http://"+ingressAddr+"/readyz", 60*time.Second, c.services...)
	c.orchestrators = o.orchestrators
	if !o.ingressOnly {
		c.startConsumers()
	}

	c.api = apiClient{t: t, base: "http://" + ingressAddr}
	var created struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(c.api.must(http.StatusCreated, http.MethodPost, "/v1/bots", adminKey, map[string]any{"id": "ops", "name": "Ops"}), &created); err != nil {
		t.Fatal(err)
	}
	c.key = created.APIKey
	for _, put := range []struct {
		path string
		body any
	}{
		{"/v1/bots/ops/flows/hello", map[string]any{"steps": []any{map[string]any{"id": "hi", "type": "send", "text": "Hello {{ name }}"}}}},
		{"/v1/bots/ops/events/HELLO", map[string]any{"flow": "hello"}},
	} {
		if code, out := c.api.do(http.MethodPut, put.path, c.key, put.body); code != http.StatusOK && code != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", put.path, code, out)
		}
	}
	return c
}

// startConsumers starts the orchestrators and the channel workers, one
// at a time: the processes share the SQLite data directory.
func (c *deployedCluster) startConsumers() {
	c.t.Helper()
	svcs := [][]string{{"channel", "sandbox"}, {"channel", "whatsapp"}}
	for range c.orchestrators {
		svcs = append([][]string{{"orchestrator"}}, svcs...)
	}
	for i, svc := range svcs {
		name := strings.Join(svc, "-")
		addr := freePort(c.t)
		procName := name
		if i > 0 && name == "orchestrator" {
			procName = fmt.Sprintf("%s-%d", name, i+1)
		}
		p := startProc(c.t, c.tmp, procName, append(c.serviceEnv(name), "FLOWGATE_METRICS_ADDR="+addr), c.flowgate, svc...)
		p.metrics = "http://" + addr + "/metrics"
		c.services = append(c.services, p)
		waitHTTP(c.t, "http://"+addr+"/readyz", 60*time.Second, c.services...)
	}
}

// editFile rewrites the file at path with edit.
func editFile(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(edit(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceAll is an edit replacing each pair's first string by its second;
// a pair that matches nothing fails the test (a config that changed shape
// must not run half edited).
func replaceAll(t *testing.T, pairs ...[2]string) func(string) string {
	return func(s string) string {
		for _, p := range pairs {
			if !strings.Contains(s, p[0]) {
				t.Fatalf("no %q to replace", p[0])
			}
			s = strings.ReplaceAll(s, p[0], p[1])
		}
		return s
	}
}

// startNATS starts (or restarts, on its own store) node i.
func (c *deployedCluster) startNATS(i int) {
	name := fmt.Sprintf("nats-%d", i+1)
	c.nats[i] = startProc(c.t, c.tmp, name, append(c.env, "NATS_SERVER_NAME="+name), c.natsServer, "-c", c.confs[i])
}

// TestNATSClusterWithServiceUsers: on the deployed cluster a trigger goes
// through to the sandbox; the streams and the pacer's bucket are R3;
// anonymous clients and a service publishing outside its subjects are
// refused; no service meets a permissions violation.
func TestNATSClusterWithServiceUsers(t *testing.T) {
	root := repoRoot(t)
	c := startDeployedCluster(t)

	// No anonymous access.
	if nc, err := nats.Connect(c.urls, nats.Timeout(2*time.Second), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("an anonymous client connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("anonymous connect: %v, want an authorization error", err)
	}

	if code, body := c.api.dispatch(c.key, "HELLO", "+15550001111", map[string]any{"name": "Cluster"}); code != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", code, body)
	}
	waitSandbox(t, c.api, c.key, "+15550001111", "Hello Cluster")

	// Every stream, and the pacer's bucket (created by the WhatsApp
	// worker), has three replicas.
	ctx := context.Background()
	names := c.js.StreamNames(ctx)
	n := 0
	for name := range names.Name() {
		s, err := c.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
	if n < 8 {
		t.Errorf("%d streams, want Flowgate's seven and KV_FLOWGATE_PACER", n)
	}

	c.deadLettersThroughTheIngress()
	// Every service's /metrics reads JetStream (consumer lag) with its own
	// user; checkServices below finds any permissions violation.
	c.scrapeServices()

	// A service's user is confined to its subjects: the ingress may not
	// dead-letter (it consumes nothing).
	ing := readEnv(t, filepath.Join(root, "deploy", "env", "ingress.env.example"))
	violation := make(chan error, 1)
	nc := connectNATS(t, c.urls, nats.UserInfo(ing["FLOWGATE_NATS_USER"], ing["FLOWGATE_NATS_PASSWORD"]),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case violation <- err:
			default:
			}
		}))
	if err := nc.Publish("flowgate.dlq.sandbox.ops", []byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	select {
	case err := <-violation:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("ingress publishing a dead letter: %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the ingress user published to flowgate.dlq without a permissions violation")
	}
	c.orchestratorPublishesWhatItConsumes()
	c.channelsPublishWhatTheyConsume()
	c.checkServices()
}

// channelsPublishWhatTheyConsume: each channel worker's user may publish
// on its own channel's outbound subjects, as it must to keep retrying a
// bundle whose provider fails transiently (bus.republish); without that
// such a bundle was dead-lettered after its twentieth delivery in the
// authenticated deployment. Each publish must be acknowledged (the copy is
// not a valid bundle: a running worker dead-letters it).
func (c *deployedCluster) channelsPublishWhatTheyConsume() {
	t := c.t
	t.Helper()
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ch := range []string{"sandbox", "whatsapp", "telegram", "rcs"} {
		env := readEnv(t, filepath.Join(root, "deploy", "env", "channel-"+ch+".env.example"))
		nc := connectNATS(t, c.urls, nats.UserInfo(env["FLOWGATE_NATS_USER"], env["FLOWGATE_NATS_PASSWORD"]))
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		subject := events.SubjectOutbound + "." + ch + ".ops." + events.LaneBulk
		if _, err := js.Publish(ctx, subject, []byte("deploytest: not a bundle"), jetstream.WithMsgID("deploytest-channel-"+ch)); err != nil {
			t.Errorf("the %s worker's user publishing on %s (a subject it consumes): %v", ch, subject, err)
		}
	}
}

// orchestratorPublishesWhatItConsumes: the orchestrator's user may publish
// on every subject it consumes, as it must to keep retrying a message
// that fails transiently (bus.republish puts a copy on the same subject)
// and to split a failing trigger off its batch (on the trigger's bot's
// subject, or flowgate.trigger._bots). Without that, a trigger or reply
// waiting out a store outage was dead-lettered in the authenticated
// deployment ("re-publication failed"). A trigger batch published with
// its user on flowgate.trigger._bots is acknowledged and reaches the
// sandbox; a copy on each other subject it consumes is acknowledged (it
// is not a valid event: the consumer dead-letters it).
func (c *deployedCluster) orchestratorPublishesWhatItConsumes() {
	t := c.t
	t.Helper()
	root := repoRoot(t)
	orch := readEnv(t, filepath.Join(root, "deploy", "env", "orchestrator.env.example"))
	nc := connectNATS(t, c.urls, nats.UserInfo(orch["FLOWGATE_NATS_USER"], orch["FLOWGATE_NATS_PASSWORD"]))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	trig, err := json.Marshal(events.Trigger{ID: "deploytest-orchestrator-batch", BotID: "ops", Source: "dispatch", Event: "HELLO",
		FlowID: "hello", Channel: events.ChannelSandbox, Audience: events.Audience{Users: []string{"+15550002222"}},
		Data: map[string]any{"name": "Republished"}})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := bus.NewEvent("batch:deploytest-orchestrator-batch", events.TypeTriggerBatch, "", events.TriggerBatch{Triggers: []json.RawMessage{trig}})
	if err != nil {
		t.Fatal(err)
	}
	ev.SetSource("deploytest")
	if _, err := js.PublishMsg(ctx, bus.ToMsg(events.SubjectTriggerBots, ev), jetstream.WithMsgID("deploytest-orchestrator-batch")); err != nil {
		t.Fatalf("the orchestrator's user publishing a trigger batch on %s: %v", events.SubjectTriggerBots, err)
	}
	waitSandbox(t, c.api, c.key, "+15550002222", "Hello Republished")
	for _, subject := range []string{
		events.TriggerSubject("ops"), events.SubjectTriggerStandby + ".ops",
		events.SubjectInbound + ".ops.sandbox", events.SubjectDelivery + ".ops.sandbox", events.SubjectControl + ".ops",
		events.SubjectReplay + ".webhooks-fanout." + events.SubjectRunStatus + ".ops",
	} {
		if _, err := js.Publish(ctx, subject, []byte("deploytest: not an event"), jetstream.WithMsgID("deploytest-orchestrator-"+subject)); err != nil {
			t.Errorf("the orchestrator's user publishing on %s (a subject it consumes): %v", subject, err)
		}
	}
}

// scrapeServices reads every Flowgate service's /metrics once (the
// ingress's on its HTTP port), as Prometheus does: the JetStream collector
// then lists and reads consumers with the service's NATS user. It returns
// the ingress's page.
func (c *deployedCluster) scrapeServices() []byte {
	c.t.Helper()
	for _, p := range c.services {
		if p.metrics != "" {
			get(c.t, p.metrics)
		}
	}
	return get(c.t, c.api.base+"/metrics")
}

// deadLettersThroughTheIngress: the admin dead-letter routes work with the
// ingress's NATS user. A bundle the sandbox worker cannot read is
// dead-lettered (by the worker's user), listed, shown and replayed through
// the ingress (which publishes it on flowgate.outbound again, where the
// worker dead-letters it anew), then purged.
func (c *deployedCluster) deadLettersThroughTheIngress() {
	t := c.t
	t.Helper()
	ctx := context.Background()
	if _, err := c.js.PublishMsg(ctx, &nats.Msg{Subject: "flowgate.outbound.sandbox.ops.high", Data: []byte("not an event")},
		jetstream.WithMsgID("deploytest-poison")); err != nil {
		t.Fatal(err)
	}
	type list struct {
		DeadLetters []struct {
			Seq     uint64 `json:"seq"`
			Subject string `json:"subject"`
		} `json:"dead_letters"`
	}
	waitList := func(notSeq uint64) list {
		deadline := time.Now().Add(60 * time.Second)
		for {
			var l list
			code, body := c.api.do(http.MethodGet, "/v1/admin/dlq", adminKey, nil)
			if code != http.StatusOK {
				t.Fatalf("GET /v1/admin/dlq: %d %s", code, body)
			}
			if err := json.Unmarshal(body, &l); err != nil {
				t.Fatal(err)
			}
			if len(l.DeadLetters) == 1 && l.DeadLetters[0].Seq != notSeq {
				return l
			}
			if time.Now().After(deadline) {
				t.Fatalf("dead letters: %s", body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	first := waitList(0).DeadLetters[0]
	if first.Subject != "flowgate.outbound.sandbox.ops.high" {
		t.Errorf("dead letter subject %q", first.Subject)
	}
	c.api.must(http.StatusOK, http.MethodGet, fmt.Sprintf("/v1/admin/dlq/%d", first.Seq), adminKey, nil)
	c.api.must(http.StatusOK, http.MethodPost, fmt.Sprintf("/v1/admin/dlq/%d/replay", first.Seq), adminKey, nil)
	again := waitList(first.Seq).DeadLetters[0] // the worker gave up on it again
	if again.Subject != first.Subject {
		t.Errorf("replayed dead letter subject %q, want %q", again.Subject, first.Subject)
	}
	c.api.must(http.StatusOK, http.MethodDelete, "/v1/admin/dlq?all=true", adminKey, nil)
}

// checkServices fails the test when a service exited or met a permissions
// violation (a subject missing from its user shows in its log even when
// the service works around it).
func (c *deployedCluster) checkServices() {
	c.t.Helper()
	for _, p := range c.services {
		if done, err := p.exited(); done {
			c.t.Errorf("%s exited: %v\n%s", p.name, err, p.tail(30))
		}
		log, _ := os.ReadFile(p.log)
		if strings.Contains(strings.ToLower(string(log)), "permissions violation") {
			c.t.Errorf("%s met a permissions violation:\n%s", p.name, p.tail(30))
		}
	}
}

func connectNATS(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
