package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/stretchr/testify/require"
)

func testMessages(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	at := base()
	ms := []store.Message{
		{ID: "m2", BotID: e.bot, RunID: "r1", TriggerID: "tr1", ContactID: "c1", Channel: "whatsapp", To: "+1555", Seq: 2,
			Content: json.RawMessage(`{"text":"second"}`), CreatedAt: at},
		{ID: "m1", BotID: e.bot, RunID: "r1", TriggerID: "tr1", ContactID: "c1", Channel: "whatsapp", To: "+1555", Seq: 1,
			Content: json.RawMessage(`{"text":"first","buttons":["a","b"]}`), Lane: "bulk", CreatedAt: at},
		{ID: "m3", BotID: e.bot, RunID: "r2", ContactID: "c2", Channel: "whatsapp", To: "+1666", Seq: 1,
			Content: json.RawMessage(`{"text":"other run"}`), CreatedAt: at},
	}
	require.NoError(t, s.InsertMessages(e.ctx, ms))
	m, err := s.GetMessage(e.ctx, e.bot, "m1")
	require.NoError(t, err)
	require.Equal(t, store.MessageQueued, m.Status, "status defaults to queued")
	require.Equal(t, "r1", m.RunID)
	require.Equal(t, "tr1", m.TriggerID)
	require.Equal(t, "c1", m.ContactID)
	require.Equal(t, "whatsapp", m.Channel)
	require.Equal(t, "+1555", m.To)
	require.Equal(t, 1, m.Seq)
	require.Equal(t, "bulk", m.Lane, "the delivery lane is kept")
	jsonEq(t, ms[1].Content, m.Content)
	requireTime(t, e, at, m.CreatedAt, "created_at")

	// Redelivery: same ids, other content, plus one new message.
	again := []store.Message{ms[0], {ID: "m4", BotID: e.bot, RunID: "r1", ContactID: "c1", Channel: "whatsapp", To: "+1555", Seq: 3,
		Content: json.RawMessage(`{"text":"third"}`)}}
	again[0].Content = json.RawMessage(`{"text":"CHANGED"}`)
	require.NoError(t, s.InsertMessages(e.ctx, again))
	m, err = s.GetMessage(e.ctx, e.bot, "m2")
	require.NoError(t, err)
	require.Empty(t, m.Lane, "no lane given: none stored")
	jsonEq(t, json.RawMessage(`{"text":"second"}`), m.Content)

	list, err := s.ListRunMessages(e.ctx, e.bot, "r1")
	require.NoError(t, err)
	var ids []string
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	require.Equal(t, []string{"m1", "m2", "m4"}, ids, "a run's messages in seq order")
	none, err := s.ListRunMessages(e.ctx, e.bot, "r9")
	require.NoError(t, err)
	require.Empty(t, none)

	require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "m1", Status: store.MessageSent, ProviderMessageID: "wamid.ABC", At: base()}))
	m, err = s.FindMessageByProviderID(e.ctx, e.bot, "wamid.ABC")
	require.NoError(t, err)
	require.Equal(t, "m1", m.ID)
	require.Equal(t, store.MessageSent, m.Status)
	require.Equal(t, "wamid.ABC", m.ProviderMessageID)
	_, err = s.FindMessageByProviderID(e.ctx, e.bot, "wamid.NOPE")
	requireIs(t, err, store.ErrNotFound)
	_, err = s.FindMessageByProviderID(e.ctx, "zz"+e.bot[:min(len(e.bot), 60)], "wamid.ABC")
	requireIs(t, err, store.ErrNotFound, "provider ids are looked up per bot")

	require.NoError(t, s.InsertMessages(e.ctx, nil))
}

func testMarkSent(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkTrigger(t, s, e, "tr1")
	var ms []store.Message
	for i := range 5 {
		ms = append(ms, store.Message{ID: fmt.Sprintf("ms%d", i), BotID: e.bot, RunID: "r1", TriggerID: "tr1", ContactID: "c1",
			Channel: "whatsapp", To: "+1555", Seq: i + 1, Content: json.RawMessage(`{"text":"x"}`)})
	}
	require.NoError(t, s.InsertMessages(e.ctx, ms))
	// ms4's delivery callback came first (no provider id recorded yet).
	require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "ms4", Status: store.MessageDelivered, At: base()}))
	sent := func() int64 {
		tr, err := s.GetTrigger(e.ctx, e.bot, "tr1")
		require.NoError(t, err)
		return tr.Counters.Sent
	}
	status := func(id string) store.Message {
		m, err := s.GetMessage(e.ctx, e.bot, id)
		require.NoError(t, err)
		return m
	}
	at := base().Add(time.Minute)
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "ms0", ProviderMessageID: "wamid.0", At: at}, {ID: "ms1", ProviderMessageID: "wamid.1", At: at}}))
	require.EqualValues(t, 2, sent())
	m0 := status("ms0")
	require.Equal(t, store.MessageSent, m0.Status)
	require.Equal(t, "wamid.0", m0.ProviderMessageID)
	require.WithinDuration(t, at, m0.UpdatedAt, e.feats.TimePrecision)

	// Recorded again (a redelivered bundle) with one new: only the new one counts.
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "ms0", ProviderMessageID: "wamid.0"}, {ID: "ms1", ProviderMessageID: "wamid.1"}, {ID: "ms2", ProviderMessageID: "wamid.2"}}))
	require.EqualValues(t, 3, sent(), "a message recorded twice is counted once")

	// The same message twice in one call (a bundle and its handed-on copy):
	// counted once.
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "ms0", ProviderMessageID: "wamid.0"}, {ID: "ms0", ProviderMessageID: "wamid.0"}}))
	require.EqualValues(t, 3, sent(), "one id twice in a call, already counted: nothing new")

	// A message whose callback overtook the worker: the id is recorded, the
	// status stays, and it counts once.
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "ms4", ProviderMessageID: "wamid.4"}}))
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "ms4", ProviderMessageID: "wamid.4"}}))
	m4 := status("ms4")
	require.Equal(t, store.MessageDelivered, m4.Status, "never back")
	require.Equal(t, "wamid.4", m4.ProviderMessageID)
	require.EqualValues(t, 4, sent())

	// Unknown ids are ignored; no trigger counts nothing; an unknown trigger is ignored.
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "nope", ProviderMessageID: "x"}}))
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "", []store.SentMessage{{ID: "ms3"}}))
	require.Equal(t, store.MessageSent, status("ms3").Status)
	require.EqualValues(t, 4, sent())
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "no-such-trigger", []store.SentMessage{{ID: "ms3"}}))
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", nil))
	require.EqualValues(t, 4, sent())
	// Another bot's messages are not touched.
	other := env{ctx: e.ctx, feats: e.feats, bot: e.bot + "-x"}
	mkBot(t, s, other)
	require.NoError(t, s.InsertMessages(e.ctx, []store.Message{{ID: "mx", BotID: other.bot, RunID: "r", ContactID: "c", Channel: "whatsapp",
		To: "1", Seq: 1, Content: json.RawMessage(`{}`)}}))
	require.NoError(t, s.MarkSent(e.ctx, e.bot, "tr1", []store.SentMessage{{ID: "mx"}}))
	mx, err := s.GetMessage(e.ctx, other.bot, "mx")
	require.NoError(t, err)
	require.Equal(t, store.MessageQueued, mx.Status)
	require.EqualValues(t, 4, sent())
}

func testMessageStatus(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	cases := []struct {
		name   string
		steps  []string
		want   string
		hasErr bool
	}{
		{"forward", []string{"sent", "delivered", "read"}, "read", false},
		{"skip ahead", []string{"delivered"}, "delivered", false},
		{"read before delivered", []string{"sent", "read", "delivered"}, "read", false},
		{"never back", []string{"delivered", "sent", "queued"}, "delivered", false},
		{"fail from queued", []string{"failed"}, "failed", true},
		{"fail from sent", []string{"sent", "failed"}, "failed", true},
		{"delivered never fails", []string{"sent", "delivered", "failed"}, "delivered", false},
		{"read never fails", []string{"read", "failed"}, "read", false},
		{"failed is final", []string{"failed", "sent", "delivered", "read"}, "failed", true},
		{"repeat", []string{"sent", "sent"}, "sent", false},
	}
	var ms []store.Message
	for i := range cases {
		ms = append(ms, store.Message{ID: fmt.Sprintf("m%d", i), BotID: e.bot, RunID: "r1", ContactID: "c1", Channel: "telegram",
			To: "42", Seq: i, Content: json.RawMessage(`{"text":"x"}`)})
	}
	require.NoError(t, s.InsertMessages(e.ctx, ms))
	for i, c := range cases {
		id := fmt.Sprintf("m%d", i)
		for _, st := range c.steps {
			require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: id, Status: st, Reason: "provider said no", At: base()}), "%s: %s", c.name, st)
		}
		m, err := s.GetMessage(e.ctx, e.bot, id)
		require.NoError(t, err)
		require.Equal(t, c.want, m.Status, c.name)
		if c.hasErr {
			require.Equal(t, "provider said no", m.Error, "%s: a failure keeps its reason", c.name)
		} else {
			require.Empty(t, m.Error, c.name)
		}
	}

	// Concurrent callbacks in any order end at the furthest status.
	require.NoError(t, s.InsertMessages(e.ctx, []store.Message{{ID: "race", BotID: e.bot, RunID: "r1", ContactID: "c1", Channel: "telegram", To: "42", Seq: 99}}))
	steps := []string{"sent", "delivered", "read", "sent", "delivered", "queued", "failed", "read"}
	errs := make([]error, len(steps))
	parallel(len(steps), func(i int) {
		errs[i] = s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "race", Status: steps[i], At: base()})
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	m, err := s.GetMessage(e.ctx, e.bot, "race")
	require.NoError(t, err)
	if m.Status != store.MessageRead && m.Status != store.MessageFailed {
		t.Fatalf("after concurrent callbacks status is %q, want read (or failed if it won before sent)", m.Status)
	}
	require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "race", Status: store.MessageRead, At: base()}))

	// A zero time means "now".
	require.NoError(t, s.InsertMessages(e.ctx, []store.Message{{ID: "zero-at", BotID: e.bot, RunID: "r1", ContactID: "c1", Channel: "telegram", To: "42", Seq: 100}}))
	require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "zero-at", Status: store.MessageSent}))
	m, err = s.GetMessage(e.ctx, e.bot, "zero-at")
	require.NoError(t, err)
	require.Equal(t, store.MessageSent, m.Status)
	require.False(t, m.UpdatedAt.IsZero())

	requireIs(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "nope", Status: store.MessageSent, At: base()}), store.ErrNotFound)
	requireInvalid(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "m0", Status: "bounced", At: base()}), "status")
}
