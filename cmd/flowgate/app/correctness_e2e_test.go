package app_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/events"
	tgdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
	wadouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/testlog"
)

// triggerRuns lists every run of a trigger from the store.
func triggerRuns(t *testing.T, st store.Store, bot, trigger string) []store.Run {
	t.Helper()
	var out []store.Run
	cursor := ""
	for {
		page, next, err := st.ListRuns(context.Background(), store.RunFilter{BotID: bot, TriggerID: trigger, Limit: 1000, Cursor: cursor})
		require.NoError(t, err)
		out = append(out, page...)
		if next == "" {
			return out
		}
		cursor = next
	}
}

// A trigger that names no channel uses the bot's default channel, for
// everyone and for a filter as for a users list: contacts on the bot's
// other channels are not messaged. Only an explicit platform "any" reaches
// every channel.
func TestEveryoneAndFilterWithoutChannelUseDefaultChannel(t *testing.T) {
	tg := tgdouble.Start(t, tgdouble.WithUnlimited())
	const token = "123456:ABC-DEF"
	tg.AddBot(token)
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "mixed", map[string]any{"default_channel": "sandbox",
		"telegram": map[string]any{"bot_token": token, "webhook_secret": "s3cret", "api_base": tg.URL}})
	c.must("PUT", "/v1/bots/mixed/flows/hello", key, `{"steps":[{"id":"s","type":"send","text":"Hello {{ name }}"}]}`, 200)
	c.must("PUT", "/v1/bots/mixed/events/HELLO", key, `{"flow":"hello"}`, 201)
	ctx := context.Background()
	_, _, err := d.Store.ImportContacts(ctx, []store.ContactUpsert{
		{BotID: "mixed", Channel: "sandbox", ExternalID: "sb-1", Name: "Sam", Attributes: map[string]any{"plan": "pro"}, NewID: store.NewContactID()},
		{BotID: "mixed", Channel: "sandbox", ExternalID: "sb-2", Name: "Sue", Attributes: map[string]any{"plan": "free"}, NewID: store.NewContactID()},
		{BotID: "mixed", Channel: "telegram", ExternalID: "111", Name: "Tom", Attributes: map[string]any{"plan": "pro"}, NewID: store.NewContactID()},
		{BotID: "mixed", Channel: "telegram", ExternalID: "222", Name: "Tia", Attributes: map[string]any{"plan": "free"}, NewID: store.NewContactID()},
	})
	require.NoError(t, err)

	done := func(id string) store.Trigger {
		var tr store.Trigger
		require.Eventually(t, func() bool {
			tr, err = d.Store.GetTrigger(ctx, "mixed", id)
			return err == nil && tr.Status == store.TriggerDone
		}, 30*time.Second, 20*time.Millisecond)
		return tr
	}
	channels := func(id string) map[string]int {
		out := map[string]int{}
		for _, r := range triggerRuns(t, d.Store, "mixed", id) {
			out[r.Channel]++
		}
		return out
	}
	cases := []struct {
		name, body string
		want       map[string]int
	}{
		{"native everyone", `{"flow":"hello","audience":{"everyone":true}}`, map[string]int{"sandbox": 2}},
		{"native users everyone", `{"flow":"hello","audience":{"users":"everyone"}}`, map[string]int{"sandbox": 2}},
		{"native filter", `{"flow":"hello","audience":{"filter":"plan == \"pro\""}}`, map[string]int{"sandbox": 1}},
		{"native everyone on telegram", `{"flow":"hello","channel":"telegram","audience":{"everyone":true}}`, map[string]int{"telegram": 2}},
		{"native platform any", `{"flow":"hello","audience":{"everyone":true,"platform":"any"}}`, map[string]int{"sandbox": 2, "telegram": 2}},
	}
	for _, tc := range cases {
		id := c.must("POST", "/v1/bots/mixed/triggers", key, tc.body, 202)["trigger_id"].(string)
		tr := done(id)
		require.Equal(t, tc.want, channels(id), tc.name)
		total := 0
		for _, n := range tc.want {
			total += n
		}
		require.EqualValues(t, total, tr.Counters.RunsCreated, tc.name)
	}

	// Botmother without platform: "everyone" is the default channel's.
	rotated := c.must("PUT", "/v1/bots/mixed/events/HELLO?rotate_token=true", key, `{"flow":"hello"}`, 200)["event"].(map[string]any)
	url := rotated["trigger_url"].(string)
	id := c.must("POST", url, "", `{"users":"everyone","data":{}}`, 202)["trigger_id"].(string)
	done(id)
	require.Equal(t, map[string]int{"sandbox": 2}, channels(id), "botmother without platform")
	id = c.must("POST", url, "", `{"platform":"any","users":"everyone","data":{}}`, 202)["trigger_id"].(string)
	done(id)
	require.Equal(t, map[string]int{"sandbox": 2, "telegram": 2}, channels(id), "botmother platform any")
}

// A message that fails after its run completed fails the run, with the
// provider's reason: the run lookup and the status webhook say failed.
// WhatsApp refuses the send with 131026 (undeliverable); a one-message flow
// has completed by then.
func TestDeliveryFailureFailsCompletedRun(t *testing.T) {
	wa := wadouble.New()
	defer wa.Close()
	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), Webhooks: fastWebhooks})
	defer func() { require.NoError(t, d.Stop()) }()
	key := waBot(c, wa, "notify")
	// The contact wrote first, so a free-form text may go.
	const gone = "+4915100000009"
	waWebhook(t, c, "notify", wadouble.NewNotification(waPhoneID).
		AddMessage("Gone", wadouble.TextMessage(gone, wadouble.MessageID(), "hi", time.Now())))
	require.Eventually(t, func() bool {
		_, err := d.Store.GetContactByExternalID(context.Background(), "notify", events.ChannelWhatsApp, gone)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	c.must("PUT", "/v1/bots/notify/flows/ship", key, `{"steps":[{"id":"s","type":"send","text":"Your order has shipped"}]}`, 200)
	c.must("PUT", "/v1/bots/notify/events/SHIPPED", key, `{"flow":"ship"}`, 201)
	const secret = "whsec-0123456789abcdef"
	hooks := newHookReceiver(t, secret, 0)
	c.must("POST", "/v1/bots/notify/webhooks", key, `{"url":"`+hooks.srv.URL+`","secret":"`+secret+`","events":["run.status"]}`, 201)

	wa.FailRecipient(gone, 131026)
	trig := c.must("POST", "/v1/bots/notify/dispatch/SHIPPED", key, `{"from":"`+gone+`"}`, 202)["trigger_id"].(string)
	var runID string
	require.Eventually(t, func() bool {
		runs := c.must("GET", "/v1/bots/notify/runs?trigger="+trig, key, "", 200)["runs"].([]any)
		if len(runs) == 1 {
			runID = runs[0].(map[string]any)["id"].(string)
		}
		return runID != ""
	}, 10*time.Second, 20*time.Millisecond)
	var run map[string]any
	require.Eventually(t, func() bool {
		run = c.must("GET", "/v1/bots/notify/runs/"+runID, key, "", 200)["run"].(map[string]any)
		return run["status"] == "failed"
	}, 20*time.Second, 20*time.Millisecond, "the run completed, then its message failed: %v", run)
	require.Contains(t, run["error"], "131026")

	statuses := func() []string {
		var out []string
		for _, e := range hooks.run(runID) {
			out = append(out, e.Data.Status)
		}
		return out
	}
	require.Eventually(t, func() bool {
		s := statuses()
		return len(s) > 0 && s[len(s)-1] == "failed"
	}, 20*time.Second, 20*time.Millisecond, "status webhook: %v", statuses())
	require.Equal(t, []string{"created", "completed", "failed"}, statuses())
	last := hooks.run(runID)[2]
	require.Equal(t, "dev.flowgate.run.failed", last.Type)
	require.Contains(t, last.Data.Error, "131026")
	require.Equal(t, "completed", last.Data.Previous)
}

// A generated admin key is shown once on the terminal and never written to
// the structured log, in JSON or text, at any level.
func TestDevAdminKeyNeverLogged(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var logs, term testlog.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			logger := slog.New(slog.NewJSONHandler(&logs, opts))
			if format == "text" {
				logger = slog.New(slog.NewTextHandler(&logs, opts))
			}
			dir := t.TempDir()
			d, err := app.StartDev(context.Background(), app.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Logger: logger, Terminal: &term})
			require.NoError(t, err)
			c := client{t: t, base: "http://" + d.Addr}
			// Some traffic, so that request logs exist too.
			c.must("POST", "/v1/bots", d.AdminKey, `{"id":"acme"}`, 201)
			code, _ := c.call("POST", "/v1/bots", "wrong-admin-key-0123456789", `{"id":"acme2"}`)
			require.Equal(t, 401, code)
			require.NoError(t, d.Stop())

			key, err := os.ReadFile(filepath.Join(dir, "admin.key"))
			require.NoError(t, err)
			require.Equal(t, d.AdminKey, strings.TrimSpace(string(key)))
			require.Len(t, d.AdminKey, len(strings.TrimSpace(string(key))))
			require.NotEmpty(t, logs.String())
			require.NotContains(t, logs.String(), d.AdminKey, "the admin key is not in the log")
			require.NotContains(t, logs.String(), d.AdminKey[4:20], "nor a part of it")
			require.Contains(t, logs.String(), "admin.key", "the log says where the key is")
			require.Equal(t, 1, strings.Count(term.String(), d.AdminKey), "shown once on the terminal")

			// A second start reads the key from the file: nothing is shown.
			term.Reset()
			d, err = app.StartDev(context.Background(), app.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", Logger: logger, Terminal: &term})
			require.NoError(t, err)
			require.NoError(t, d.Stop())
			require.Empty(t, term.String())
			require.NotContains(t, logs.String(), d.AdminKey)
		})
	}
}

// last_request is readable in flows ({{ last_request.plan }}, and in
// expressions), and one rule sets it whatever selects the contacts: a
// request that carries data replaces it ({} included), one that carries
// none leaves it.
func TestLastRequestInFlowsAndOneRule(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "lr", nil)
	c.must("PUT", "/v1/bots/lr/flows/plan", key, `{"steps":[
	  {"id":"s","type":"send","text":"Plan: {{ last_request.plan }}|{{ data.plan }}"},
	  {"id":"v","type":"send","text":"VIP","if":"last_request.plan == \"pro\""}]}`, 200)
	url := c.must("PUT", "/v1/bots/lr/events/PLAN", key, `{"flow":"plan"}`, 201)["event"].(map[string]any)["trigger_url"].(string)
	ctx := context.Background()
	lastRequest := func(ext string) map[string]any {
		ct, err := d.Store.GetContactByExternalID(ctx, "lr", "sandbox", ext)
		require.NoError(t, err)
		return ct.LastRequest
	}
	texts := func(ext string) []string { return texts(c.sandbox("lr", key, ext)) }
	waitTexts := func(ext string, n int) []string {
		require.Eventually(t, func() bool { return len(texts(ext)) == n }, 15*time.Second, 20*time.Millisecond, "%s: %v", ext, texts(ext))
		return texts(ext)
	}
	done := func(id string) {
		require.Eventually(t, func() bool {
			tr, err := d.Store.GetTrigger(ctx, "lr", id)
			return err == nil && tr.Status == store.TriggerDone
		}, 15*time.Second, 20*time.Millisecond)
	}

	// Botmother users with data: last_request is the data, and the flow reads it.
	c.must("POST", url, "", `{"platform":"sandbox","users":["a","b"],"data":{"plan":"pro"}}`, 202)
	require.Equal(t, []string{"Plan: pro|pro", "VIP"}, waitTexts("a", 2))
	waitTexts("b", 2)
	require.Equal(t, map[string]any{"plan": "pro"}, lastRequest("a"))

	// No data: last_request stays, and the flow still reads it.
	id := c.must("POST", url, "", `{"platform":"sandbox","users":["a"]}`, 202)["trigger_id"].(string)
	done(id)
	require.Equal(t, []string{"Plan: pro|", "VIP"}, waitTexts("a", 4)[2:])
	require.Equal(t, map[string]any{"plan": "pro"}, lastRequest("a"))
	id = c.must("POST", url, "", `{"platform":"sandbox","users":"everyone"}`, 202)["trigger_id"].(string)
	done(id)
	waitTexts("b", 4)
	require.Equal(t, map[string]any{"plan": "pro"}, lastRequest("b"), "everyone without data keeps it")

	// data {} replaces it, by users list and by everyone alike.
	id = c.must("POST", url, "", `{"platform":"sandbox","users":["a"],"data":{}}`, 202)["trigger_id"].(string)
	done(id)
	require.Equal(t, map[string]any{}, lastRequest("a"), "users list with data {}")
	require.Equal(t, map[string]any{"plan": "pro"}, lastRequest("b"))
	id = c.must("POST", url, "", `{"platform":"sandbox","users":"everyone","data":{}}`, 202)["trigger_id"].(string)
	done(id)
	require.Equal(t, map[string]any{}, lastRequest("b"), "everyone with data {}")
	require.Equal(t, "Plan: |", waitTexts("b", 5)[4], "the run read the replaced last_request")

	// The native API and a filter follow the same rule.
	id = c.must("POST", "/v1/bots/lr/triggers", key, `{"flow":"plan","audience":{"filter":"external_id == \"a\""},"data":{"plan":"team"}}`, 202)["trigger_id"].(string)
	done(id)
	require.Equal(t, map[string]any{"plan": "team"}, lastRequest("a"))
	require.Equal(t, map[string]any{}, lastRequest("b"))
}
