package deploytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

// dispatchResult is one answer the load client recorded.
type dispatchResult struct {
	user string
	code int // 0: no answer (transport error)
	// errCode is error.code of a refusal ("unavailable": nothing was
	// queued; "outcome_unknown": it may have been).
	errCode string
	at      time.Time
}

// dispatchAnswer is the ingress's answer to one dispatch.
type dispatchAnswer struct {
	code       int
	errCode    string // error.code of a refusal
	retryAfter string // its Retry-After header
}

// postDispatch sends bot ops's HELLO from user with that name, with an
// Idempotency-Key when key is not empty.
func (c *deployedCluster) postDispatch(client *http.Client, user, name, key string) (dispatchAnswer, error) {
	body, _ := json.Marshal(map[string]any{"from": user, "name": name})
	req, _ := http.NewRequest(http.MethodPost, c.api.base+"/v1/bots/ops/dispatch/HELLO", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.key)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return dispatchAnswer{}, err
	}
	defer resp.Body.Close()
	a := dispatchAnswer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if a.code != http.StatusAccepted {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		a.errCode = e.Error.Code
	}
	return a, nil
}

// dispatchLoad runs workers closed-loop clients dispatching HELLO, each to
// a new user, until stop is closed; every answer is recorded.
func dispatchLoad(c *deployedCluster, workers int, stop <-chan struct{}) <-chan []dispatchResult {
	out := make(chan []dispatchResult, 1)
	var mu sync.Mutex
	var all []dispatchResult
	var seq atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				user := fmt.Sprintf("+1556%07d", seq.Add(1))
				r := dispatchResult{user: user}
				if a, err := c.postDispatch(client, user, user, ""); err == nil {
					r.code, r.errCode = a.code, a.errCode
				}
				r.at = time.Now()
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
				if r.code != http.StatusAccepted {
					time.Sleep(50 * time.Millisecond) // a refused client retries a little later
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		out <- all
	}()
	return out
}

// streamLeader is the index in c.nats of the node leading stream, and its
// name; -1 when no node leads it.
func (c *deployedCluster) streamLeader(ctx context.Context, stream string) (int, string) {
	c.t.Helper()
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.node(s.CachedInfo().Cluster)
}

// newLeaderAfter watches stream from now until a server other than old
// leads it, and then says how long that took (or that it did not happen
// within 30 s): the election a fault test's figures depend on.
func (c *deployedCluster) newLeaderAfter(stream, old string) <-chan string {
	out := make(chan string, 1)
	start := time.Now()
	go func() {
		for time.Since(start) < 30*time.Second {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s, err := c.js.Stream(ctx, stream)
			cancel()
			if err == nil {
				if ci := s.CachedInfo().Cluster; ci != nil && ci.Leader != "" && ci.Leader != old {
					out <- fmt.Sprintf("%s leads it %s after the watch began", ci.Leader, time.Since(start).Round(10*time.Millisecond))
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		out <- "no new leader within 30 s"
	}()
	return out
}

// node is the index in c.nats of the leader a cluster info names, and its
// name; -1 when none of c's nodes is it.
func (c *deployedCluster) node(ci *jetstream.ClusterInfo) (int, string) {
	if ci == nil {
		return -1, ""
	}
	for i := range c.nats {
		if c.nats[i].name == ci.Leader {
			return i, ci.Leader
		}
	}
	return -1, ci.Leader
}

// waitForMessages waits (up to 3 minutes) until every accepted user has a
// sandbox message and returns the counts per user.
func waitForMessages(t *testing.T, c *deployedCluster, accepted map[string]bool) map[string]int {
	t.Helper()
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	for {
		counts, err := sandboxCounts(c)
		if err != nil {
			t.Fatal(err)
		}
		missing := 0
		for u := range accepted {
			if counts[u] == 0 {
				missing++
			}
		}
		if missing == 0 {
			t.Logf("every accepted dispatch had its message %s after the load stopped (polled every second)", time.Since(start).Round(time.Second))
			return counts
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d accepted dispatches have no message after 3 minutes", missing, len(accepted))
		}
		time.Sleep(time.Second)
	}
}

// sandboxCounts is how many sandbox messages each user received.
func sandboxCounts(c *deployedCluster) (map[string]int, error) {
	counts := map[string]int{}
	err := eachSandboxMessage(c, func(to, _ string) {
		if strings.HasPrefix(to, "+1556") {
			counts[to]++
		}
	})
	return counts, err
}

// eachSandboxMessage calls f with every message the sandbox transcript
// holds, oldest first.
func eachSandboxMessage(c *deployedCluster, f func(to, text string)) error {
	return eachSandboxMessageAt(c, func(to, text string, _ time.Time) { f(to, text) })
}

// eachSandboxMessageAt is eachSandboxMessage with the time each message was
// sent.
func eachSandboxMessageAt(c *deployedCluster, f func(to, text string, sentAt time.Time)) error {
	after := int64(0)
	for {
		code, body := c.api.do(http.MethodGet, "/v1/bots/ops/sandbox/messages?limit=10000&after="+strconv.FormatInt(after, 10), c.key, nil)
		if code != http.StatusOK {
			return fmt.Errorf("sandbox messages: %d %s", code, body)
		}
		var page struct {
			Messages []struct {
				Seq    int64     `json:"seq"`
				To     string    `json:"to"`
				Text   string    `json:"text"`
				SentAt time.Time `json:"sent_at"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			return err
		}
		if len(page.Messages) == 0 {
			return nil
		}
		for _, m := range page.Messages {
			f(m.To, m.Text, m.SentAt)
			after = max(after, m.Seq)
		}
	}
}

// TestClusterStreamLeaderKilledUnderLoad: under steady dispatch load the
// NATS server leading the triggers stream is SIGKILLed, and restarted on
// its own store later. Every dispatch answered 202 gets exactly one run and
// one message, nothing is sent twice, and the ingress's longest stretch
// without a 202 is at most 5 s: the node's triggers go to the standby
// stream, led by another node, after at most bus.DefaultStandbyAfter
// (1 s), instead of waiting out the 4–9 s election of a new leader.
func TestClusterStreamLeaderKilledUnderLoad(t *testing.T) {
	c, stop, results := startUnderLoad(t)
	ctx := context.Background()

	victim, standby := c.triggerLeadersApart(t, stop, results)
	// Who leads the other streams: those the victim led take nothing until
	// a new leader is elected (they have no standby), which the message
	// delays logged below show.
	var others []string
	for _, s := range []string{"FLOWGATE_OUTBOUND", "FLOWGATE_EVENTS", "FLOWGATE_RUNS"} {
		if _, l := c.streamLeader(ctx, s); l != "" {
			others = append(others, s+" by "+l)
		}
	}
	all := killUnderLoad(t, c, victim, fmt.Sprintf("the leader of FLOWGATE_TRIGGERS (FLOWGATE_TRIGGERS_STANDBY led by %s; led: %s)",
		standby, strings.Join(others, ", ")), stop, results)

	checkLoadOutcome(t, c, all)
	// The stretch was short because the triggers went to the standby
	// stream while the triggers stream had no leader.
	took := standbyPublishes(t, c.scrapeServices())
	t.Logf("triggers the standby stream took, by reason: %v", took)
	if took["no_responders"]+took["no_ack"] == 0 {
		t.Errorf("no trigger went to the standby stream while FLOWGATE_TRIGGERS had no leader: %v", took)
	}
	c.checkServices()
}

// TestClusterOutboundLeaderKilledUnderLoad: under steady dispatch load the
// NATS server leading FLOWGATE_OUTBOUND is SIGKILLed and restarted 8 s
// later. The outbound stream has no standby: the orchestrator's publishes
// of new runs' messages fail until a new leader is elected (a random 4–9 s
// after the heartbeats stopped), its steps are retried on their backoff,
// and the runs accepted meanwhile queue behind them. The same invariants
// as for the triggers stream's leader: every 202 gets exactly one message
// (within waitForMessages's 3 minutes after the load), nothing is sent
// twice; how long users waited for their message is logged.
func TestClusterOutboundLeaderKilledUnderLoad(t *testing.T) {
	c, stop, results := startUnderLoad(t)
	ctx := context.Background()
	// Whichever node dies, one of the triggers streams keeps its leader.
	c.triggerLeadersApart(t, stop, results)
	victim, leader := c.streamLeader(ctx, "FLOWGATE_OUTBOUND")
	if victim < 0 {
		close(stop)
		<-results
		t.Fatalf("FLOWGATE_OUTBOUND has no leader among the servers (%q)", leader)
	}
	_, triggers := c.streamLeader(ctx, "FLOWGATE_TRIGGERS")
	_, standby := c.streamLeader(ctx, "FLOWGATE_TRIGGERS_STANDBY")
	elected := c.newLeaderAfter(bus.StreamOutbound, leader)
	all := killUnderLoad(t, c, victim, fmt.Sprintf("the leader of FLOWGATE_OUTBOUND (FLOWGATE_TRIGGERS led by %s, FLOWGATE_TRIGGERS_STANDBY by %s)",
		triggers, standby), stop, results)
	t.Logf("FLOWGATE_OUTBOUND: %s", <-elected)

	checkLoadOutcome(t, c, all)
	c.checkServices()
}

// TestClusterConsumerLeaderKilledUnderLoad: under steady dispatch load the
// NATS server leading the sandbox worker's consumer (but not
// FLOWGATE_OUTBOUND itself) is SIGKILLed and restarted 8 s later. The
// worker's pull requests were held by that server and are never answered;
// the worker notices by the missing heartbeats and pulls again from the
// consumer's new leader. Sending must not stop for more than 20 s: with
// nats.go's default heartbeat (15 s, two missed before pulling again) it
// stopped for 30 s, long after the election (bus.pullHeartbeat). The same
// invariants as the other kill tests hold.
func TestClusterConsumerLeaderKilledUnderLoad(t *testing.T) {
	c, stop, results := startUnderLoad(t)
	ctx := context.Background()
	c.triggerLeadersApart(t, stop, results)
	// The dispatches' lane of the worker's consumer, led away from the
	// stream's leader (so that its process may well be connected to a
	// server that survives).
	consumer := bus.OutboundLaneConsumer(events.OutboundSubject(events.ChannelSandbox, "ops", events.LaneHigh), 0).Durable
	var victim int
	var stream, leader string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		_, stream = c.streamLeader(ctx, bus.StreamOutbound)
		victim, leader = c.consumerLeader(ctx, bus.StreamOutbound, consumer)
		if victim >= 0 && stream != "" && leader != stream {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			<-results
			t.Fatalf("after 30 s the consumer %s is led by %q and its stream by %q; want two servers", consumer, leader, stream)
		}
		if leader != "" && leader == stream {
			// Ask for another leader (a random other peer).
			_, _ = c.js.Conn().Request("$JS.API.CONSUMER.LEADER.STEPDOWN."+bus.StreamOutbound+"."+consumer, nil, 5*time.Second)
		}
	}
	all := killUnderLoad(t, c, victim, fmt.Sprintf("the leader of consumer %s (FLOWGATE_OUTBOUND led by %s)", consumer, stream), stop, results)

	sent := checkLoadOutcome(t, c, all)
	if gap := longestSendingGap(t, sent); gap > 20*time.Second {
		t.Errorf("the sandbox sent nothing for %s; want at most 20 s", gap.Round(time.Millisecond))
	}
	c.checkServices()
}

// consumerLeader is the index in c.nats of the node leading a stream's
// consumer, and its name (-1 and "" while it has none).
func (c *deployedCluster) consumerLeader(ctx context.Context, stream, consumer string) (int, string) {
	cons, err := c.js.Consumer(ctx, stream, consumer)
	if err != nil {
		return -1, "" // not yet created, or the API busy with an election
	}
	return c.node(cons.CachedInfo().Cluster)
}

// consumersLedBy lists the consumers of Flowgate's streams that the
// server named leads (their in-flight acknowledgements may be lost with
// it, and their messages then delivered again).
func (c *deployedCluster) consumersLedBy(server string) string {
	ctx := context.Background()
	var led []string
	for _, stream := range []string{bus.StreamTriggers, bus.StreamTriggersStandby, bus.StreamOutbound, bus.StreamEvents, bus.StreamRuns} {
		s, err := c.js.Stream(ctx, stream)
		if err != nil {
			continue
		}
		for info := range s.ListConsumers(ctx).Info() {
			if info.Cluster != nil && info.Cluster.Leader == server {
				led = append(led, stream+"/"+info.Name)
			}
		}
	}
	if len(led) == 0 {
		return "none"
	}
	return strings.Join(led, ", ")
}

// longestSendingGap is the longest time between two messages the sandbox
// sent to the load's users (sent: the time of each recipient's message, as
// checkLoadOutcome returns it), and logs it.
func longestSendingGap(t *testing.T, sent map[string]time.Time) time.Duration {
	t.Helper()
	var at []time.Time
	for to, when := range sent {
		if strings.HasPrefix(to, "+1556") {
			at = append(at, when)
		}
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	longest, when := time.Duration(0), time.Duration(0)
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d > longest {
			longest, when = d, at[i-1].Sub(at[0])
		}
	}
	t.Logf("longest stretch without a message sent: %s, from %s after the first", longest.Round(time.Millisecond), when.Round(time.Millisecond))
	return longest
}

// startUnderLoad starts the deployed cluster and the load of the kill
// tests (8 closed-loop dispatch clients), and lets it run 5 s.
func startUnderLoad(t *testing.T) (*deployedCluster, chan struct{}, <-chan []dispatchResult) {
	t.Helper()
	c := startDeployedCluster(t)
	stop := make(chan struct{})
	results := dispatchLoad(c, 8, stop)
	time.Sleep(5 * time.Second)
	return c, stop, results
}

// triggerLeadersApart waits (up to 20 s) until the two triggers streams
// are led by different nodes, as the ingress keeps them
// (bus.KeepTriggerLeadersApart, every 5 s), and returns the index of the
// node leading FLOWGATE_TRIGGERS and the name of the one leading the
// standby. Failing, it stops the load first.
func (c *deployedCluster) triggerLeadersApart(t *testing.T, stop chan struct{}, results <-chan []dispatchResult) (int, string) {
	t.Helper()
	ctx := context.Background()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		i, leader := c.streamLeader(ctx, "FLOWGATE_TRIGGERS")
		_, standby := c.streamLeader(ctx, "FLOWGATE_TRIGGERS_STANDBY")
		if i >= 0 && standby != "" && standby != leader {
			return i, standby
		}
		if time.Now().After(deadline) {
			close(stop)
			<-results
			t.Fatalf("after 20 s the triggers streams are led by %q and %q; want two nodes", leader, standby)
		}
	}
}

// killUnderLoad SIGKILLs NATS server victim (no shutdown, no flush),
// restarts it on its own store 8 s later, lets the load run 8 s more, then
// stops it and returns every answer.
func killUnderLoad(t *testing.T, c *deployedCluster, victim int, what string, stop chan struct{}, results <-chan []dispatchResult) []dispatchResult {
	t.Helper()
	name := c.nats[victim].name
	led := c.consumersLedBy(name)
	killedAt := time.Now()
	c.nats[victim].kill()
	t.Logf("killed %s, %s; it led the consumers %s", name, what, led)
	time.Sleep(8 * time.Second)
	c.startNATS(victim)
	t.Logf("restarted %s after %s", name, time.Since(killedAt).Round(time.Millisecond))
	time.Sleep(8 * time.Second)
	close(stop)
	return <-results
}

// standbyPublishes reads flowgate_bus_trigger_standby_publishes_total by
// reason from a /metrics page.
func standbyPublishes(t *testing.T, page []byte) map[string]float64 {
	t.Helper()
	out := countersBy(t, page, "flowgate_bus_trigger_standby_publishes_total", "reason")
	if len(out) == 0 {
		t.Fatal("the ingress's /metrics has no flowgate_bus_trigger_standby_publishes_total")
	}
	return out
}

// logRefusalCauses logs why the ingress refused triggers: its "trigger
// outcome unknown" and "trigger not queued" warnings carry the bus's error
// (what each try of the publish met), which the 503 answers do not.
func logRefusalCauses(t *testing.T, c *deployedCluster) {
	t.Helper()
	logServiceLines(t, c, "ingress", `msg="trigger `, 10)
}

// logServiceLines logs the first max lines of a service's log that
// contain what.
func logServiceLines(t *testing.T, c *deployedCluster, service, what string, max int) {
	t.Helper()
	for _, p := range c.services {
		if p.name != service {
			continue
		}
		b, _ := os.ReadFile(p.log)
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, what) && n < max {
				t.Logf("%s: %s", service, line)
				n++
			}
		}
	}
}

// checkLoadOutcome: every dispatch was answered 202 or 503; every 202 got
// exactly one message, a 503 at most one; the longest stretch without a 202
// is reported and at most 5 s (issue #16's target); how long the 202s
// waited for their messages is logged (logMessageDelays). It returns when
// each recipient's message was sent.
func checkLoadOutcome(t *testing.T, c *deployedCluster, all []dispatchResult) map[string]time.Time {
	t.Helper()
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	accepted := map[string]bool{}
	refused := 0
	refusals := map[string]int{} // by error.code
	var lastOK time.Time
	longest := time.Duration(0)
	for _, r := range all {
		if r.code == http.StatusAccepted {
			accepted[r.user] = true
			if !lastOK.IsZero() && r.at.Sub(lastOK) > longest {
				longest = r.at.Sub(lastOK)
			}
			lastOK = r.at
			continue
		}
		refused++
		refusals[fmt.Sprintf("%d %s", r.code, r.errCode)]++
		if r.code != http.StatusServiceUnavailable {
			t.Errorf("dispatch %s answered %d; want 202 or 503", r.user, r.code)
		}
	}
	t.Logf("dispatches: %d answered 202, %d refused %v; longest stretch without a 202: %s (target 5 s)",
		len(accepted), refused, refusals, longest.Round(time.Millisecond))
	if refused > 0 {
		logRefusalCauses(t, c)
	}
	if len(accepted) == 0 {
		t.Fatal("nothing was accepted")
	}
	if longest > 5*time.Second {
		t.Errorf("the ingress accepted nothing for %s; want at most 5 s", longest)
	}

	// Every accepted dispatch gets its message, exactly once; a refused one
	// at most once (a 503 may follow a publish whose outcome was unknown).
	counts := waitForMessages(t, c, accepted)
	for u, n := range counts {
		if n > 1 {
			t.Errorf("%s received %d messages, want 1", u, n)
		}
	}
	return logMessageDelays(t, c, all)
}

// logMessageDelays logs how long after its 202 each accepted dispatch's
// message was sent: what a user waited through the fault. The processes
// share this machine's clock. Nothing is asserted beyond waitForMessages's
// bound: the wait depends on the election's random length and on how fast
// the pipeline catches up while the load goes on (docs/deploy.md). It
// returns when each recipient's (first) message was sent.
// delay is how long the message of a 202 given at at waited (d).
type delay struct {
	d  time.Duration
	at time.Time
}

func logMessageDelays(t *testing.T, c *deployedCluster, all []dispatchResult) map[string]time.Time {
	t.Helper()
	sent := map[string]time.Time{}
	if err := eachSandboxMessageAt(c, func(to, _ string, at time.Time) {
		if _, ok := sent[to]; !ok {
			sent[to] = at
		}
	}); err != nil {
		t.Fatal(err)
	}
	var ds []delay
	for _, r := range all {
		if at, ok := sent[r.user]; ok && r.code == http.StatusAccepted {
			ds = append(ds, delay{at.Sub(r.at), r.at})
		}
	}
	if len(ds) == 0 {
		return sent
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].d < ds[j].d })
	start := all[0].at
	worst := ds[len(ds)-1]
	over := 0
	for _, d := range ds {
		if d.d > time.Second {
			over++
		}
	}
	t.Logf("message sent after its 202: median %s, p99 %s, max %s (202 given %s into the load); %d of %d after more than 1 s",
		ds[len(ds)/2].d.Round(time.Millisecond), ds[len(ds)*99/100].d.Round(time.Millisecond), worst.d.Round(time.Millisecond),
		worst.at.Sub(start).Round(time.Millisecond), over, len(ds))
	logDelaysOverTime(t, start, ds)
	logRedeliveries(t, c)
	return sent
}

// logDelaysOverTime logs, for the 202s given in each 2 s of the load, the
// median and the longest wait for their messages: when a fault's waits
// began and how long the pipeline took to catch up.
func logDelaysOverTime(t *testing.T, start time.Time, ds []delay) {
	t.Helper()
	const window = 2 * time.Second
	buckets := map[int][]time.Duration{}
	last := 0
	for _, d := range ds {
		i := int(d.at.Sub(start) / window)
		buckets[i] = append(buckets[i], d.d)
		last = max(last, i)
	}
	var parts []string
	for i := 0; i <= last; i++ {
		b := buckets[i]
		if len(b) == 0 {
			parts = append(parts, fmt.Sprintf("%ds: none", i*2))
			continue
		}
		slices.Sort(b)
		parts = append(parts, fmt.Sprintf("%ds: %s/%s", i*2, b[len(b)/2].Round(10*time.Millisecond), b[len(b)-1].Round(10*time.Millisecond)))
	}
	t.Logf("wait for the message by when its 202 was given (median/max, per 2 s of the load): %s", strings.Join(parts, ", "))
}

// logRedeliveries logs the messages each service received again
// (flowgate_bus_redelivered_total, by consumer): a message a lost server
// held comes back only when its AckWait runs out (5 s on the sandbox's
// lanes, 20 s on WhatsApp's and Telegram's): a long wait for a message
// with redeliveries beside it is that.
func logRedeliveries(t *testing.T, c *deployedCluster) {
	t.Helper()
	logServiceCounters(t, c, "messages received again", "flowgate_bus_redelivered_total", "consumer")
	logServiceCounters(t, c, "publishes tried again", "flowgate_bus_publish_retries_total", "reason")
	logServiceCounters(t, c, "acknowledgements sent again", "flowgate_bus_ack_retries_total", "consumer")
	// Why the orchestrator's handlers failed (what its redeliveries are).
	logServiceLines(t, c, "orchestrator", "handler failed", 5)
	// Acknowledgements lost (the message comes again).
	logServiceLines(t, c, "orchestrator", "ack failed", 5)
	logServiceLines(t, c, "channel-sandbox", "ack failed", 5)
}

// logServiceCounters logs a counter of every service's /metrics, by one
// of its labels, leaving out zeros.
func logServiceCounters(t *testing.T, c *deployedCluster, what, counter, label string) {
	t.Helper()
	var parts []string
	for _, p := range c.services {
		if p.metrics == "" {
			continue
		}
		by := countersBy(t, get(t, p.metrics), counter, label)
		keys := make([]string, 0, len(by))
		for k := range by {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if by[k] > 0 {
				parts = append(parts, fmt.Sprintf("%s %s: %.0f", p.name, k, by[k]))
			}
		}
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	t.Logf("%s (%s): %s", what, counter, strings.Join(parts, ", "))
}

// TestClusterRollingRestartUnderLoad: under steady dispatch load every NATS
// server is restarted in turn (SIGTERM, then started again on its own
// store), as an upgrade would; the same invariants hold, and no dispatch
// is answered 503 unavailable.
func TestClusterRollingRestartUnderLoad(t *testing.T) {
	rollingRestart(t, func(p *proc) { p.stop() })
}

// TestClusterRollingRestartInLameDuckUnderLoad: the same rolling restart,
// each server stopped in lame duck mode (SIGUSR2, compose's stop_signal):
// it hands its leaderships over before it goes.
func TestClusterRollingRestartInLameDuckUnderLoad(t *testing.T) {
	rollingRestart(t, func(p *proc) {
		start := time.Now()
		p.lameDuck(60 * time.Second)
		t.Logf("%s left lame duck mode after %s", p.name, time.Since(start).Round(time.Millisecond))
	})
}

// rollingRestart restarts every NATS server in turn under steady dispatch
// load, stopping each with stopNode, and checks the load's outcome.
func rollingRestart(t *testing.T, stopNode func(*proc)) {
	c := startDeployedCluster(t)
	stop := make(chan struct{})
	results := dispatchLoad(c, 8, stop)
	time.Sleep(4 * time.Second)
	for i := range c.nats {
		stopNode(c.nats[i])
		time.Sleep(2 * time.Second)
		c.startNATS(i)
		// The next node goes only once this one has rejoined and caught up
		// (its /healthz answers 200 once its JetStream assets are current):
		// with two nodes down at once R3 streams stop accepting.
		waitHTTP(t, "http://"+c.monitors[i]+"/healthz", 120*time.Second, c.nats[i])
		t.Logf("restarted %s", c.nats[i].name)
	}
	time.Sleep(4 * time.Second)
	close(stop)
	all := <-results
	checkLoadOutcome(t, c, all)
	// A server stopped on purpose leaves the ingress no reason to refuse a
	// trigger: a publish its stop interrupted is published again once the
	// client has reconnected, and JetStream's "duplicate message id is in
	// process" (the interrupted try still being stored) is waited out
	// (bus.Publish). Before the first, 1-12 dispatches of about 10,000
	// were answered 503 unavailable here (2026-12-07), besides 5-10
	// outcome_unknown; before the second, 3 outcome_unknown per run in a
	// CI run and 7 in one of four loaded runs here, each a try after the
	// reconnect answered 10158. checkLoadOutcome logs the ingress's
	// account of any refusal.
	refused := 0
	for _, r := range all {
		if r.code != http.StatusAccepted {
			refused++
		}
	}
	if refused > 0 {
		t.Errorf("%d dispatches refused during the rolling restart; want none", refused)
	}
	c.checkServices()
}
