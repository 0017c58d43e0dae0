package deploytest

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store/sqlite"
)

// TestProviderOutageWithServiceUsers: a WhatsApp outage outlasts the
// deliveries JetStream allows a bundle, on the deployment's NATS with its
// service users (deploy/nats/auth.conf). The worker keeps retrying by
// re-publishing the bundle on its outbound subject with a fresh delivery
// count (from the 10th delivery of every copy on, half the outbound
// consumers' MaxDeliver of 20) — which its NATS user must be allowed to
// publish: without that, the bundle was dead-lettered after its 20th
// delivery. Once the provider answers again the message is sent, once, and
// nothing was dead-lettered. FLOWGATE_RETRY_MAX_BACKOFF=200ms shortens the
// retry's backoff (1 min by default), so that three copies take seconds
// rather than minutes.
func TestProviderOutageWithServiceUsers(t *testing.T) {
	const (
		phoneID = "109876543210002"
		token   = "wa-outage-token-0123456789"
		user    = "+4915224000001"
		// Three copies' worth of deliveries fail.
		failures = 3 * 10
	)
	double := whatsappdouble.New(whatsappdouble.WithAccountToken(phoneID, token), whatsappdouble.WithTemplates("shipped"))
	t.Cleanup(double.Close)
	c := startDeployedOpts(t, deployOpts{nodes: 1, orchestrators: 1, env: []string{"FLOWGATE_RETRY_MAX_BACKOFF=200ms"}})
	worker := c.service("channel-whatsapp")
	key := c.templateBot("outage", "SHIPPED", "shipped", map[string]any{"phone_number_id": phoneID, "access_token": token,
		"api_base": double.APIBase()})
	// WhatsApp answers 500 (code 131000, "Something went wrong": transient)
	// for every send to the user until the test clears it.
	double.FailRecipient(user, 131000)
	c.api.must(http.StatusAccepted, http.MethodPost, "/v1/bots/outage/triggers", key,
		map[string]any{"event": "SHIPPED", "audience": map[string]any{"users": []string{user}}})
	// (A dead letter ends the wait: the test then fails below.)
	waitFor(t, 120*time.Second, func() bool {
		return double.Stats().Rejected[131000] >= failures || c.streamMessages(bus.StreamDLQ) > 0
	})
	republished := counter(t, worker.metrics, "flowgate_bus_retry_republished_total")
	t.Logf("%d sends refused, the bundle re-published %v times; %d dead letters", double.Stats().Rejected[131000],
		republished, c.streamMessages(bus.StreamDLQ))
	if republished < 2 {
		t.Errorf("the bundle was re-published %v times after %d refused sends, want at least 2", republished, failures)
	}
	if n := c.streamMessages(bus.StreamDLQ); n != 0 {
		t.Fatalf("%d messages dead-lettered during the outage", n)
	}
	double.ClearFailures()

	waitFor(t, 60*time.Second, func() bool { return len(double.Accepted()) >= 1 })
	time.Sleep(2 * time.Second) // a second send, were there one, arrives by now
	if acc := double.Accepted(); len(acc) != 1 || acc[0].To != user[1:] && acc[0].To != user {
		t.Errorf("accepted after the outage: %+v, want one message to %s", acc, user)
	}
	if n := c.streamMessages(bus.StreamDLQ); n != 0 {
		t.Errorf("%d messages dead-lettered", n)
	}
	c.checkServices()
}

// TestStoreLockedWithServiceUsers: the store refuses every write for longer
// than the orchestrator's first five deliveries of a trigger (another
// process holds SQLite's write lock: every write waits out busy_timeout,
// 5 s, and fails "database is locked", a transient error), on the
// deployment's NATS with its service users. The orchestrator keeps
// retrying by re-publishing the trigger on its own subject with a fresh
// delivery count (from the 5th delivery, half its consumers' MaxDeliver of
// 10) — which its NATS user must be allowed to publish: without that, the
// trigger was dead-lettered after its 10th delivery. Once the lock is
// released the run starts and its message is sent, once each, and nothing
// was dead-lettered.
func TestStoreLockedWithServiceUsers(t *testing.T) {
	const user = "+15550002222"
	c := startDeployedOpts(t, deployOpts{nodes: 1, orchestrators: 1, env: []string{"FLOWGATE_RETRY_MAX_BACKOFF=200ms"}})
	orch := c.service("orchestrator")

	db, err := sql.Open("sqlite", filepath.Join(c.tmp, "data", sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	lock, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			if _, err := lock.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Errorf("release the write lock: %v", err)
			}
			lock.Close()
		}
	}
	t.Cleanup(unlock)
	lockedAt := time.Now()

	if code, body := c.api.dispatch(c.key, "HELLO", user, map[string]any{"name": "Locked"}); code != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", code, body)
	}
	waitFor(t, 180*time.Second, func() bool {
		return counter(t, orch.metrics, "flowgate_bus_retry_republished_total") >= 1 || c.streamMessages(bus.StreamDLQ) > 0
	})
	t.Logf("the trigger re-published %s after the store was locked; %d dead letters",
		time.Since(lockedAt).Round(time.Second), c.streamMessages(bus.StreamDLQ))
	if n := c.streamMessages(bus.StreamDLQ); n != 0 {
		t.Fatalf("%d messages dead-lettered while the store was locked", n)
	}
	unlock()

	waitSandbox(t, c.api, c.key, user, "Hello Locked")
	time.Sleep(2 * time.Second) // a second message, were there one, is stored by now
	body := c.api.must(http.StatusOK, http.MethodGet, "/v1/bots/ops/sandbox/messages?to="+url.QueryEscape(user), c.key, nil)
	var got struct {
		Messages []struct {
			Text string `json:"text"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &got); err != nil || len(got.Messages) != 1 || got.Messages[0].Text != "Hello Locked" {
		t.Errorf("sandbox of %s: %v, want one message \"Hello Locked\": %s", user, err, body)
	}
	if n := c.streamMessages(bus.StreamDLQ); n != 0 {
		t.Errorf("%d messages dead-lettered", n)
	}
	c.checkServices()
}
