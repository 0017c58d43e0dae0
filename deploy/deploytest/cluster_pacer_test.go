package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"testing"
	"time"

	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
)

// TestClusterPacerLimitAcrossFailOver: two WhatsApp worker replicas share
// one sender account paced at 20/s through the pacer's R3 KV bucket. While
// a broadcast is being sent, the NATS server leading that bucket is
// SIGKILLed and restarted. Every message still reaches the provider exactly
// once, and the provider never sees more than the account's rate (over
// five seconds; a one-second window may hold a request or two of arrival
// jitter, see below): neither the fail-over nor two replicas racing for
// slots make the pacer hand out the same slot twice.
func TestClusterPacerLimitAcrossFailOver(t *testing.T) {
	const (
		rate    = 20
		users   = 500
		phoneID = "109876543210001"
		token   = "wa-pacer-token-0123456789"
	)
	double := whatsappdouble.New(whatsappdouble.WithAccountToken(phoneID, token), whatsappdouble.WithTemplates("promo"))
	t.Cleanup(double.Close)

	c := startDeployedCluster(t)
	// A second WhatsApp worker replica, as a scaled deployment runs it.
	worker := c.service("channel-whatsapp")
	addr := freePort(t)
	// The first replica's environment (its NATS user included), its own
	// metrics address: the last value of a repeated variable wins.
	env := append(append([]string{}, worker.cmd.Env...), "FLOWGATE_METRICS_ADDR="+addr)
	second := startProc(t, c.tmp, "channel-whatsapp-2", env, worker.cmd.Path, "channel", "whatsapp")
	c.services = append(c.services, second)
	waitHTTP(t, "http://"+addr+"/readyz", 60*time.Second, c.services...)

	key := c.templateBot("paced", "PROMO", "promo", map[string]any{"phone_number_id": phoneID, "access_token": token,
		"api_base": double.APIBase(), "rate_per_second": rate})

	list := make([]string, users)
	for i := range list {
		list[i] = fmt.Sprintf("+4915223%06d", i)
	}
	c.api.must(http.StatusAccepted, http.MethodPost, "/v1/bots/paced/triggers", key,
		map[string]any{"event": "PROMO", "audience": map[string]any{"users": list}})

	// Kill the bucket's leader once sending is well under way.
	waitFor(t, 120*time.Second, func() bool { return len(double.Accepted()) >= rate*5 })
	ctx := context.Background()
	victim, leader := c.streamLeader(ctx, "KV_FLOWGATE_PACER")
	if victim < 0 {
		t.Fatalf("no leader among the nodes for KV_FLOWGATE_PACER: %q", leader)
	}
	killedAt := time.Now()
	c.nats[victim].kill()
	t.Logf("killed %s, the leader of the pacer's bucket, after %d sends", leader, len(double.Accepted()))
	time.Sleep(6 * time.Second)
	c.startNATS(victim)

	waitFor(t, 240*time.Second, func() bool { return len(double.Accepted()) >= users })
	time.Sleep(3 * time.Second) // anything sent twice arrives by now
	acc := double.Accepted()

	perUser := map[string]int{}
	times := make([]time.Time, 0, len(acc))
	for _, m := range acc {
		if m.PhoneNumberID != phoneID {
			continue
		}
		perUser[m.To]++
		times = append(times, m.Received)
	}
	for u, n := range perUser {
		if n != 1 {
			t.Errorf("%s received %d messages, want 1", u, n)
		}
	}
	if len(perUser) != users {
		t.Errorf("%d users reached, want %d", len(perUser), users)
	}

	// The most requests the provider saw in any window of w, over the
	// whole broadcast and around the fail-over.
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	busiestIn := func(w time.Duration) (int, time.Time) {
		most, at := 0, time.Time{}
		for i, j := 0, 0; j < len(times); j++ {
			for times[j].Sub(times[i]) >= w {
				i++
			}
			if n := j - i + 1; n > most {
				most, at = n, times[i]
			}
		}
		return most, at
	}
	busiest, busiestAt := busiestIn(time.Second)
	busiest5, busiest5At := busiestIn(5 * time.Second)
	gap, gapAt := time.Duration(0), time.Time{}
	for i := 1; i < len(times); i++ {
		if d := times[i].Sub(times[i-1]); d > gap {
			gap, gapAt = d, times[i-1]
		}
	}
	elapsed := times[len(times)-1].Sub(times[0])
	t.Logf("%d sends in %s (%.1f/s, limit %d/s); busiest one-second window: %d sends, %s after the kill; "+
		"busiest five-second window: %d sends, %s after the kill; longest pause between two sends: %s, from %s after the kill; stats %+v",
		len(times), elapsed.Round(time.Millisecond), float64(len(times)-1)/elapsed.Seconds(), rate,
		busiest, busiestAt.Sub(killedAt).Round(time.Millisecond), busiest5, busiest5At.Sub(killedAt).Round(time.Millisecond),
		gap.Round(time.Millisecond), gapAt.Sub(killedAt).Round(time.Millisecond), double.Stats())
	// The pacer spaces the sends at the senders (2 % headroom). Where they
	// arrive, a request delayed on its way (a busy machine deschedules a
	// process between its slot and its write) lands in the next window:
	// a one-second window at the provider may hold a request or two more
	// (22 of 20 was seen under the -race suite). The limit held is what a
	// five-second window shows: a pacer that lost its state in the fail-over
	// (or two replicas taking the same slots) sends up to twice the rate
	// there, far above the 5 x rate + 2 allowed for jitter at both ends.
	if busiest5 > 5*rate+2 {
		t.Errorf("the provider saw %d requests within five seconds; the account's limit is %d/s", busiest5, rate)
	}
	if busiest > rate+rate/4 {
		t.Errorf("the provider saw %d requests within one second; the account's limit is %d/s", busiest, rate)
	}
	if rejected := double.Stats().Rejected; len(rejected) > 0 {
		t.Errorf("the double refused requests: %v", rejected)
	}
	c.checkServices()
}

// service is the deployment's process named name (the test fails
// without one).
func (c *deployedCluster) service(name string) *proc {
	c.t.Helper()
	for _, p := range c.services {
		if p.name == name {
			return p
		}
	}
	c.t.Fatalf("the deployment runs no %s", name)
	return nil
}

// templateBot creates a bot on WhatsApp (wa: the account's settings, a
// double's api_base among them; the app secret and verify token are
// added) whose event starts a flow of one template message, and returns
// the bot's API key.
func (c *deployedCluster) templateBot(id, event, template string, wa map[string]any) string {
	t := c.t
	t.Helper()
	account := map[string]any{"app_secret": "wa-app-secret-0123456789", "verify_token": "wa-verify-token"}
	for k, v := range wa {
		account[k] = v
	}
	var created struct {
		APIKey string `json:"api_key"`
	}
	out := c.api.must(http.StatusCreated, http.MethodPost, "/v1/bots", adminKey, map[string]any{"id": id, "name": id,
		"channels": map[string]any{"default_channel": "whatsapp", "whatsapp": account}})
	if err := json.Unmarshal(out, &created); err != nil || created.APIKey == "" {
		t.Fatalf("create bot: %s", out)
	}
	flow := map[string]any{"steps": []any{map[string]any{"id": template, "type": "template", "template": template, "language": "en_US"}}}
	for _, put := range []struct {
		path string
		body any
	}{{"/v1/bots/" + id + "/flows/" + template, flow}, {"/v1/bots/" + id + "/events/" + event, map[string]any{"flow": template}}} {
		if code, out := c.api.do(http.MethodPut, put.path, created.APIKey, put.body); code != http.StatusOK && code != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", put.path, code, out)
		}
	}
	return created.APIKey
}

// waitFor polls cond every 100 ms until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
