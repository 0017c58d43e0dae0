package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	tgdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
	"github.com/flowgate/flowgate/shared/store"
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
	d, c := startDev(t, t.TempDir(), nil)
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
