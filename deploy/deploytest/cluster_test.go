package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsNode is one server of a three-node JetStream cluster run as a process.
type natsNode struct {
	name, client, monitor, conf string
	p                           *proc
}

// startCluster writes the config of three clustered nats-servers (routes,
// JetStream on each, every write fsynced) and starts them.
func startCluster(t *testing.T, natsServer, tmp string) []*natsNode {
	t.Helper()
	nodes := make([]*natsNode, 3)
	routes := make([]string, 3)
	clusterAddrs := make([]string, 3)
	for i := range nodes {
		clusterAddrs[i] = freePort(t)
		routes[i] = "nats-route://" + clusterAddrs[i]
	}
	for i := range nodes {
		n := &natsNode{name: fmt.Sprintf("n%d", i+1), client: freePort(t), monitor: freePort(t)}
		host, port, _ := strings.Cut(n.client, ":")
		mhost, mport, _ := strings.Cut(n.monitor, ":")
		chost, cport, _ := strings.Cut(clusterAddrs[i], ":")
		n.conf = filepath.Join(tmp, n.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
host: %s
port: %s
http: %s:%s
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: flowgate
  host: %s
  port: %s
  routes: [%s]
}
`, n.name, host, port, mhost, mport, filepath.Join(tmp, n.name+"-js"), chost, cport, strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	for _, n := range nodes {
		n.p = startProc(t, tmp, "nats-"+n.name, nil, natsServer, "--config", n.conf)
	}
	for _, n := range nodes {
		// JetStream is ready on a node once the meta group has a leader.
		waitHTTP(t, "http://"+n.monitor+"/healthz?js-enabled-only=true", 30*time.Second, n.p)
	}
	return nodes
}

func (n *natsNode) restart(t *testing.T, natsServer, tmp string) {
	t.Helper()
	n.p = startProc(t, tmp, "nats-"+n.name, nil, natsServer, "--config", n.conf)
	waitHTTP(t, "http://"+n.monitor+"/healthz", 60*time.Second, n.p)
}

func (n *natsNode) kill() {
	_ = n.p.cmd.Process.Signal(syscall.SIGKILL)
	<-n.p.done
	n.p.done <- nil
}

func clusterURLs(nodes []*natsNode) string {
	var u []string
	for _, n := range nodes {
		u = append(u, "nats://"+n.client)
	}
	return strings.Join(u, ",")
}

// streamLeader names the server that leads stream.
func streamLeader(t *testing.T, urls, stream string) string {
	t.Helper()
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info := s.CachedInfo()
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream %s: %d replicas (%+v), want 3: the services must create R3 streams from FLOWGATE_NATS_REPLICAS=3", stream, info.Config.Replicas, info.Cluster)
	}
	return info.Cluster.Leader
}

// clusterPipeline is ingress + orchestrator + sandbox worker on the cluster,
// with a bot whose event sends one message.
type clusterPipeline struct {
	t        *testing.T
	api      apiClient
	key      string
	services []*proc
}

func startPipeline(t *testing.T, flowgate, tmp, urls string) *clusterPipeline {
	t.Helper()
	env := []string{
		"FLOWGATE_NATS_URL=" + urls,
		"FLOWGATE_NATS_REPLICAS=3",
		"FLOWGATE_DATA_DIR=" + filepath.Join(tmp, "data"),
		"FLOWGATE_ADMIN_KEY=" + adminKey,
		"FLOWGATE_LOG_LEVEL=info",
	}
	if err := os.MkdirAll(filepath.Join(tmp, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	ingressAddr, orchAddr, chanAddr := freePort(t), freePort(t), freePort(t)
	ingress := startProc(t, tmp, "ingress", append(env, "FLOWGATE_HTTP_ADDR="+ingressAddr), flowgate, "ingress")
	waitHTTP(t, "http://"+ingressAddr+"/readyz", 60*time.Second, ingress)
	orch := startProc(t, tmp, "orchestrator", append(env, "FLOWGATE_METRICS_ADDR="+orchAddr), flowgate, "orchestrator")
	waitHTTP(t, "http://"+orchAddr+"/readyz", 60*time.Second, orch)
	sandbox := startProc(t, tmp, "channel-sandbox", append(env, "FLOWGATE_METRICS_ADDR="+chanAddr), flowgate, "channel", "sandbox")
	waitHTTP(t, "http://"+chanAddr+"/readyz", 60*time.Second, sandbox)

	api := apiClient{t: t, base: "http://" + ingressAddr}
	var created struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(api.must(http.StatusCreated, http.MethodPost, "/v1/bots", adminKey, map[string]any{"id": "ops", "name": "Ops"}), &created); err != nil {
		t.Fatal(err)
	}
	api.must(http.StatusOK, http.MethodPut, "/v1/bots/ops/flows/hello", created.APIKey, map[string]any{"steps": []any{
		map[string]any{"id": "hi", "type": "send", "text": "Hi {{ name }}"},
	}})
	if code, body := api.do(http.MethodPut, "/v1/bots/ops/events/HELLO", created.APIKey, map[string]any{"flow": "hello"}); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("PUT event: %d %s", code, body)
	}
	return &clusterPipeline{t: t, api: api, key: created.APIKey, services: []*proc{ingress, orch, sandbox}}
}

// loadResult is what a dispatch load saw.
type loadResult struct {
	accepted []string // users whose dispatch was answered 202
	// notQueued are users whose dispatch was refused with a 503 that says
	// nothing was queued: none of them may run.
	notQueued []string
	refused   int // every answer other than 202, and transport errors
	// worst is the longest time the ingress went without answering a
	// dispatch 202 while the load ran.
	worst time.Duration
}

// dispatchLoad sends one dispatch per user, from several clients, until
// stop is closed, and records every 202.
func (c *clusterPipeline) dispatchLoad(stop <-chan struct{}, prefix string) *loadResult {
	var (
		mu       sync.Mutex
		res      loadResult
		n        atomic.Int64
		last     = time.Now()
		wg       sync.WaitGroup
		client   = &http.Client{Timeout: 20 * time.Second}
		dispatch = c.api.base + "/v1/bots/ops/dispatch/HELLO"
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				user := fmt.Sprintf("%s%06d", prefix, n.Add(1))
				body := fmt.Sprintf(`{"from":%q,"name":%q}`, user, user)
				req, _ := http.NewRequest(http.MethodPost, dispatch, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+c.key)
				// The idempotency key makes a retry of an unknown outcome safe;
				// this client does not retry: every 202 must run once.
				req.Header.Set("Idempotency-Key", user)
				resp, err := client.Do(req)
				var answer struct {
					Error struct {
						Code string `json:"code"`
					} `json:"error"`
				}
				if err == nil && resp.StatusCode == http.StatusServiceUnavailable {
					_ = json.NewDecoder(resp.Body).Decode(&answer)
				}
				mu.Lock()
				if err == nil && resp.StatusCode == http.StatusServiceUnavailable && answer.Error.Code != "outcome_unknown" {
					res.notQueued = append(res.notQueued, user)
				}
				if err == nil && resp.StatusCode == http.StatusAccepted {
					res.accepted = append(res.accepted, user)
					if gap := time.Since(last); gap > res.worst {
						res.worst = gap
					}
					last = time.Now()
				} else {
					res.refused++
				}
				mu.Unlock()
				if err == nil {
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusAccepted {
					time.Sleep(50 * time.Millisecond)
				} else {
					time.Sleep(20 * time.Millisecond) // ≈ 4 × 50/s
				}
			}
		}()
	}
	<-stop
	wg.Wait()
	return &res
}

// verifyOnce waits until every accepted user has exactly one run and one
// sandbox message, and fails on a duplicate or a loss.
func (c *clusterPipeline) verifyOnce(res *loadResult, timeout time.Duration) {
	t := c.t
	t.Helper()
	accepted := res.accepted
	notQueued := map[string]bool{}
	for _, u := range res.notQueued {
		notQueued[u] = true
	}
	want := map[string]bool{}
	for _, u := range accepted {
		want[u] = true
	}
	deadline := time.Now().Add(timeout)
	var runs map[string]int
	for {
		runs = c.runsPerUser()
		missing := 0
		for u := range want {
			if runs[u] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			if missing > 0 {
				t.Fatalf("%d of %d acknowledged triggers have no run after %s", missing, len(want), timeout)
			}
			break
		}
		time.Sleep(time.Second)
	}
	var dupRuns []string
	for u, n := range runs {
		if n > 1 {
			dupRuns = append(dupRuns, fmt.Sprintf("%s×%d", u, n))
		}
		if notQueued[u] {
			t.Errorf("run for %s, whose dispatch was answered 503 \"nothing was queued\"", u)
		} else if !want[u] {
			// outcome_unknown, or no answer (the client's timeout): it may run.
			t.Logf("run for %s, whose dispatch's outcome was unknown to the client", u)
		}
	}
	sort.Strings(dupRuns)
	if len(dupRuns) > 0 {
		t.Fatalf("duplicate runs: %v", dupRuns)
	}
	// Every message sent once: each accepted user's sandbox transcript holds
	// exactly one "Hi N", once the worker has sent it.
	for u := range want {
		var msgs []struct {
			Text string `json:"text"`
		}
		for {
			_, body := c.api.do(http.MethodGet, "/v1/bots/ops/sandbox/messages?to="+url.QueryEscape(u), c.key, nil)
			var page struct {
				Messages []struct {
					Text string `json:"text"`
				} `json:"messages"`
			}
			_ = json.Unmarshal(body, &page)
			msgs = page.Messages
			if len(msgs) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if len(msgs) != 1 || msgs[0].Text != "Hi "+u {
			t.Fatalf("user %s: sandbox messages %+v, want exactly one %q", u, msgs, "Hi "+u)
		}
	}
}

// runsPerUser counts the bot's runs per contact external id.
func (c *clusterPipeline) runsPerUser() map[string]int {
	out := map[string]int{}
	cursor := ""
	for {
		path := "/v1/bots/ops/runs?limit=500"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		code, body := c.api.do(http.MethodGet, path, c.key, nil)
		if code != http.StatusOK {
			c.t.Fatalf("list runs: %d %s", code, body)
		}
		var page struct {
			Runs []struct {
				Data struct {
					Name string `json:"name"` // the dispatch's name: the user's number
				} `json:"data"`
			} `json:"runs"`
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			c.t.Fatalf("runs page: %v", err)
		}
		for _, r := range page.Runs {
			out[r.Data.Name]++
		}
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}

// TestClusterLeaderKilledUnderLoad: three nats-servers (R3 streams, every
// write fsynced), ingress + orchestrator + sandbox worker as processes; a
// steady dispatch load; the trigger stream's leader is SIGKILLed mid-load
// and restarted later. Every dispatch answered 202 runs exactly once and its
// message is sent once; the ingress stalls for at most a few seconds.
func TestClusterLeaderKilledUnderLoad(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	flowgate, natsServer := buildBinaries(t, root, tmp)
	nodes := startCluster(t, natsServer, tmp)
	urls := clusterURLs(nodes)
	c := startPipeline(t, flowgate, tmp, urls)

	stop := make(chan struct{})
	done := make(chan *loadResult)
	go func() { done <- c.dispatchLoad(stop, "+3161") }()
	time.Sleep(5 * time.Second)
	leader := streamLeader(t, urls, "FLOWGATE_TRIGGERS")
	var victim *natsNode
	for _, n := range nodes {
		if n.name == leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("leader %q is none of the nodes", leader)
	}
	killedAt := time.Now()
	victim.kill()
	t.Logf("killed %s, the leader of FLOWGATE_TRIGGERS", leader)
	time.Sleep(10 * time.Second)
	victim.restart(t, natsServer, tmp)
	t.Logf("restarted %s after %s", leader, time.Since(killedAt).Round(time.Second))
	time.Sleep(5 * time.Second)
	close(stop)
	res := <-done
	t.Logf("load: %d dispatches answered 202, %d not (%d of them 503 nothing queued); longest time without a 202: %s",
		len(res.accepted), res.refused, len(res.notQueued), res.worst.Round(time.Millisecond))
	if len(res.accepted) < 200 {
		t.Fatalf("only %d dispatches accepted: the load did not run", len(res.accepted))
	}
	if res.worst > 10*time.Second {
		t.Errorf("the ingress answered no 202 for %s around the fail-over (target ≤ 5 s)", res.worst)
	}
	c.verifyOnce(res, 2*time.Minute)
	if newLeader := streamLeader(t, urls, "FLOWGATE_TRIGGERS"); newLeader == "" {
		t.Errorf("no leader after the restart")
	}
}

// TestClusterRollingRestartUnderLoad restarts the three nodes one after
// another (SIGTERM, start, wait until healthy) under a steady dispatch load:
// every dispatch answered 202 runs exactly once.
func TestClusterRollingRestartUnderLoad(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	flowgate, natsServer := buildBinaries(t, root, tmp)
	nodes := startCluster(t, natsServer, tmp)
	urls := clusterURLs(nodes)
	c := startPipeline(t, flowgate, tmp, urls)

	stop := make(chan struct{})
	done := make(chan *loadResult)
	go func() { done <- c.dispatchLoad(stop, "+3162") }()
	time.Sleep(3 * time.Second)
	for _, n := range nodes {
		n.p.stop()
		t.Logf("stopped %s", n.name)
		time.Sleep(2 * time.Second)
		n.restart(t, natsServer, tmp)
		// The next node goes only once this one has caught up with its
		// streams (JetStream healthy), as an operator's rollout would wait.
		waitHTTP(t, "http://"+n.monitor+"/healthz", 60*time.Second, n.p)
		t.Logf("restarted %s", n.name)
		time.Sleep(3 * time.Second)
	}
	close(stop)
	res := <-done
	t.Logf("load: %d dispatches answered 202, %d not (%d of them 503 nothing queued); longest time without a 202: %s",
		len(res.accepted), res.refused, len(res.notQueued), res.worst.Round(time.Millisecond))
	if len(res.accepted) < 200 {
		t.Fatalf("only %d dispatches accepted: the load did not run", len(res.accepted))
	}
	if res.worst > 10*time.Second {
		t.Errorf("the ingress answered no 202 for %s during the rolling restart (target ≤ 5 s)", res.worst)
	}
	c.verifyOnce(res, 2*time.Minute)
}
