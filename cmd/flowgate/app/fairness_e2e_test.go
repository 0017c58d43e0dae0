package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	wadouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
)

type triggerResource struct {
	Status   string `json:"status"`
	Counters struct {
		Targeted    int64 `json:"targeted"`
		RunsCreated int64 `json:"runs_created"`
		Sent        int64 `json:"sent"`
		Failed      int64 `json:"failed"`
	} `json:"counters"`
	Delivery struct {
		Lane              string     `json:"lane"`
		Queued            int64      `json:"queued"`
		Sent              int64      `json:"sent"`
		Remaining         *int64     `json:"remaining"`
		AccountRate       float64    `json:"account_rate"`
		EstimatedFinishAt *time.Time `json:"estimated_finish_at"`
	} `json:"delivery"`
}

// getTrigger reads the trigger resource; a trigger not taken by the
// orchestrator yet (404) reads as the zero resource. It is called from
// require.Eventually's goroutine: it reports, never stops the test.
func getTrigger(t *testing.T, c client, bot, key, id string) triggerResource {
	t.Helper()
	code, body := c.call("GET", "/v1/bots/"+bot+"/triggers/"+id, key, "")
	var out struct {
		Trigger triggerResource `json:"trigger"`
	}
	switch {
	case code == 404:
	case code != 200:
		t.Errorf("GET trigger: %d %s", code, body)
	default:
		if err := json.Unmarshal(body, &out); err != nil {
			t.Errorf("GET trigger: %v", err)
		}
	}
	return out.Trigger
}

// A broadcast through a WhatsApp number paced at 100/s, held to one batch
// (100 contacts) queued at a time by the back-pressure: paused while it
// runs, it stops creating runs; resumed, it completes. The counters are
// exact, every contact got its template once, the lane is bulk, the
// trigger resource shows rate and estimated finish while it runs, and the
// outbound stream never held more than the bound.
func TestBroadcastPauseResumeWithBackPressure(t *testing.T) {
	wa := wadouble.New()
	defer wa.Close()
	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), BroadcastQueue: time.Second, FanOutBatch: 100})
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "camp", map[string]any{"default_channel": "whatsapp",
		"whatsapp": map[string]any{"phone_number_id": waPhoneID, "access_token": wadouble.DefaultToken,
			"app_secret": waAppSecret, "verify_token": "vt", "api_base": wa.APIBase(), "rate_per_second": 100}})
	c.must("PUT", "/v1/bots/camp/flows/promo", key, `{"steps":[{"id":"t","type":"template","template":"promo","language":"en"}]}`, 200)
	const n = 1200
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf(`"+3162%07d"`, i)
	}
	resp := c.must("POST", "/v1/bots/camp/triggers", key,
		`{"flow":"promo","channel":"whatsapp","audience":{"users":[`+strings.Join(users, ",")+`]}}`, 202)
	id := resp["trigger_id"].(string)

	// Sample the bulk lane while the broadcast runs.
	maxQueued := uint64(0)
	subject := events.OutboundSubject(events.ChannelWhatsApp, "camp", events.LaneBulk)
	sample := func() {
		if q, err := d.Bus.Queued(context.Background(), bus.StreamOutbound, subject); err == nil {
			maxQueued = max(maxQueued, q)
		}
	}
	var running triggerResource
	require.Eventually(t, func() bool {
		sample()
		running = getTrigger(t, c, "camp", key, id)
		return running.Counters.Sent >= 250
	}, 60*time.Second, 20*time.Millisecond)
	require.Equal(t, events.LaneBulk, running.Delivery.Lane)
	require.Equal(t, 100.0, running.Delivery.AccountRate)
	require.NotNil(t, running.Delivery.EstimatedFinishAt, "a running broadcast has an estimated finish")
	require.NotNil(t, running.Delivery.Remaining)

	paused := c.must("POST", "/v1/bots/camp/triggers/"+id+"/pause", key, "", 200)["trigger"].(map[string]any)
	require.Equal(t, "paused", paused["status"])
	// The fan-out stops (at most the batches under way finish) and what
	// was queued drains.
	var held triggerResource
	require.Eventually(t, func() bool {
		sample()
		a := getTrigger(t, c, "camp", key, id)
		time.Sleep(700 * time.Millisecond)
		b := getTrigger(t, c, "camp", key, id)
		held = b
		return a.Counters == b.Counters && b.Counters.Sent+b.Counters.Failed == b.Counters.RunsCreated
	}, 60*time.Second, 10*time.Millisecond)
	require.Equal(t, "paused", held.Status)
	require.Less(t, held.Counters.RunsCreated, int64(n), "paused before every run was created")
	require.Nil(t, held.Delivery.EstimatedFinishAt, "no finish while paused")
	require.Equal(t, int(held.Counters.Sent), len(wa.Accepted()))
	t.Logf("paused at %d runs created, %d sent", held.Counters.RunsCreated, held.Counters.Sent)
	// Resumed, it goes on from its checkpoint and completes.
	c.must("POST", "/v1/bots/camp/triggers/"+id+"/resume", key, "", 200)
	var done triggerResource
	require.Eventually(t, func() bool {
		sample()
		done = getTrigger(t, c, "camp", key, id)
		return done.Status == "done" && done.Counters.Sent == n
	}, 90*time.Second, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond) // nothing more arrives
	require.Equal(t, int64(n), done.Counters.Targeted)
	require.Equal(t, int64(n), done.Counters.RunsCreated)
	require.Equal(t, int64(n), done.Counters.Sent)
	require.Zero(t, done.Counters.Failed)
	require.Zero(t, done.Delivery.Queued)
	require.Nil(t, done.Delivery.EstimatedFinishAt)
	seen := map[string]int{}
	for _, a := range wa.Accepted() {
		seen[a.To]++
	}
	require.Len(t, seen, n, "every contact got the template")
	for to, k := range seen {
		require.Equal(t, 1, k, "%s got it once", to)
	}
	// Bound: 1 s at 100/s, at least a batch (100). A batch starts only
	// while the lane, with the batches under way counted, has room for it:
	// the lane never holds more than the bound.
	t.Logf("bulk lane held at most %d bundles (bound 100, batch 100)", maxQueued)
	require.LessOrEqual(t, maxQueued, uint64(100))
	// Pause and resume are refused when they mean nothing.
	c.must("POST", "/v1/bots/camp/triggers/"+id+"/pause", key, "", 409)
	c.must("POST", "/v1/bots/camp/triggers/"+id+"/resume", key, "", 409)
}
