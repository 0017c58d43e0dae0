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

// TestNATSClusterWithServiceUsers runs the deployment's NATS as compose
// does — three nats-server processes from deploy/nats/cluster.conf with the
// users of auth.conf — and the Flowgate services as separate processes,
// each with its own user from deploy/env and FLOWGATE_NATS_REPLICAS=3. A
// trigger goes through to the sandbox; the streams and the pacer's bucket
// are R3; anonymous clients and a service publishing outside its subjects
// are refused.
func TestNATSClusterWithServiceUsers(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	flowgate, natsServer := buildBinaries(t, root, tmp)

	clients, monitors, routes := make([]string, 3), make([]string, 3), make([]string, 3)
	for i := range 3 {
		clients[i], monitors[i], routes[i] = freePort(t), freePort(t), freePort(t)
	}
	env := natsEnv(t, root)
	var urls []string
	for i := range 3 {
		conf := renderNATSConf(t, root, filepath.Join(tmp, fmt.Sprintf("nats-%d", i+1)), "cluster.conf", clients[i], monitors[i], routes[i], routes)
		p := startProc(t, tmp, fmt.Sprintf("nats-%d", i+1), append(env, fmt.Sprintf("NATS_SERVER_NAME=nats-%d", i+1)), natsServer, "-c", conf)
		urls = append(urls, "nats://"+clients[i])
		defer func() {
			if t.Failed() {
				t.Logf("%s:\n%s", p.name, p.tail(20))
			}
		}()
	}
	for i, m := range monitors {
		waitHTTP(t, "http://"+m+"/varz", 60*time.Second)
		_ = i
	}
	natsURL := strings.Join(urls, ",")
	passwords := readEnv(t, filepath.Join(root, "deploy", "env", "nats.env.example"))

	// The cluster answers JetStream requests once it has a meta leader.
	admin := connectNATS(t, natsURL, nats.UserInfo("admin", passwords["NATS_ADMIN_PASSWORD"]))
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the NATS cluster has no JetStream leader: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// No anonymous access.
	if nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("an anonymous client connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("anonymous connect: %v, want an authorization error", err)
	}

	// The services, each as its own NATS user.
	dataDir := filepath.Join(tmp, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	base := []string{
		"FLOWGATE_NATS_URL=" + natsURL,
		"FLOWGATE_NATS_REPLICAS=3",
		"FLOWGATE_DATA_DIR=" + dataDir,
		"FLOWGATE_ADMIN_KEY=" + adminKey,
		"FLOWGATE_MONGODB_URI=", // SQLite: this test is about NATS
	}
	serviceEnv := func(name string) []string {
		vars := readEnv(t, filepath.Join(root, "deploy", "env", name+".env.example"))
		return append(append([]string{}, base...), "FLOWGATE_NATS_USER="+vars["FLOWGATE_NATS_USER"], "FLOWGATE_NATS_PASSWORD="+vars["FLOWGATE_NATS_PASSWORD"])
	}
	ingressAddr := freePort(t)
	var procs []*proc
	ingress := startProc(t, tmp, "ingress", append(serviceEnv("ingress"), "FLOWGATE_HTTP_ADDR="+ingressAddr), flowgate, "ingress")
	procs = append(procs, ingress)
	waitHTTP(t, "http://"+ingressAddr+"/readyz", 60*time.Second, procs...)
	// One at a time: the processes share the SQLite data directory.
	for _, svc := range [][]string{{"orchestrator"}, {"channel", "sandbox"}, {"channel", "whatsapp"}} {
		name := strings.Join(svc, "-")
		addr := freePort(t)
		p := startProc(t, tmp, name, append(serviceEnv(name), "FLOWGATE_METRICS_ADDR="+addr), flowgate, svc...)
		procs = append(procs, p)
		waitHTTP(t, "http://"+addr+"/readyz", 60*time.Second, procs...)
	}

	// A trigger through the pipeline.
	api := apiClient{t: t, base: "http://" + ingressAddr}
	var created struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(api.must(http.StatusCreated, http.MethodPost, "/v1/bots", adminKey, map[string]any{"id": "ops", "name": "Ops"}), &created); err != nil {
		t.Fatal(err)
	}
	key := created.APIKey
	for _, put := range []struct {
		path string
		body any
	}{
		{"/v1/bots/ops/flows/hello", map[string]any{"steps": []any{map[string]any{"id": "hi", "type": "send", "text": "Hello {{ name }}"}}}},
		{"/v1/bots/ops/events/HELLO", map[string]any{"flow": "hello"}},
	} {
		if code, out := api.do(http.MethodPut, put.path, key, put.body); code != http.StatusOK && code != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", put.path, code, out)
		}
	}
	if code, body := api.dispatch(key, "HELLO", "+15550001111", map[string]any{"name": "Cluster"}); code != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", code, body)
	}
	waitSandbox(t, api, key, "+15550001111", "Hello Cluster")

	// Every stream, and the pacer's bucket (created by the WhatsApp
	// worker), has three replicas.
	ctx := context.Background()
	names := js.StreamNames(ctx)
	n := 0
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		n++
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
	if n < 7 {
		t.Errorf("%d streams, want Flowgate's six and KV_FLOWGATE_PACER", n)
	}

	// A service's user is confined to its subjects: the ingress may not
	// publish outbound messages (only the orchestrator does).
	ing := readEnv(t, filepath.Join(root, "deploy", "env", "ingress.env.example"))
	violation := make(chan error, 1)
	nc := connectNATS(t, natsURL, nats.UserInfo(ing["FLOWGATE_NATS_USER"], ing["FLOWGATE_NATS_PASSWORD"]),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case violation <- err:
			default:
			}
		}))
	if err := nc.Publish("flowgate.outbound.sandbox.ops", []byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	select {
	case err := <-violation:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("ingress publishing outbound: %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the ingress user published to flowgate.outbound without a permissions violation")
	}
	for _, p := range procs {
		if done, err := p.exited(); done {
			t.Errorf("%s exited: %v\n%s", p.name, err, p.tail(30))
		}
		// A subject missing from a user's permissions shows in its log
		// even when the service works around it (metrics, retries).
		log, _ := os.ReadFile(p.log)
		if strings.Contains(strings.ToLower(string(log)), "permissions violation") {
			t.Errorf("%s met a permissions violation:\n%s", p.name, p.tail(30))
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
