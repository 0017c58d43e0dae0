package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
)

// RunManagement checks the management part of the port (listing, revoking
// and deleting in APIKeys, Flows, Events, Triggers, Contacts and Messages;
// Idempotency; bot deletion) and that
// DeleteContact removes a sandbox contact's transcript. Like Run, open is
// called once per subtest.
func RunManagement(t *testing.T, open func(t *testing.T) store.Store, feats Features) {
	if feats.TimePrecision <= 0 {
		feats.TimePrecision = time.Microsecond
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, s store.Store, e env)
	}{
		{"APIKeyAdmin", testAPIKeyAdmin},
		{"FlowAdmin", testFlowAdmin},
		{"EventAdmin", testEventAdmin},
		{"ListTriggers", testListTriggers},
		{"SearchContacts", testSearchContacts},
		{"ContactMessages", testContactMessages},
		{"DeleteContactTranscript", testDeleteContactTranscript},
		{"IdempotencyKeys", testIdempotencyKeys},
		{"DeleteBot", testDeleteBot},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			t.Cleanup(cancel)
			c.fn(t, s, env{ctx: ctx, feats: feats, bot: botID(t)})
		})
	}
}

func testAPIKeyAdmin(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	t0 := base()
	first := store.APIKey{ID: "k1", BotID: e.bot, Hash: e.bot + "-h1", Prefix: "fg_aaaa", CreatedAt: t0}
	crm := store.APIKey{ID: "k2", BotID: e.bot, Hash: e.bot + "-h2", Prefix: "fg_bbbb", CreatedAt: t0.Add(time.Second),
		Name: "crm", Scope: store.ScopeTrigger, Events: []string{"WELCOME", "PAID"}}
	other := store.APIKey{ID: "k3-" + e.bot, BotID: e.bot + "-x", Hash: e.bot + "-h3", Prefix: "fg_cccc", CreatedAt: t0}
	require.NoError(t, s.CreateAPIKey(e.ctx, crm))
	require.NoError(t, s.CreateAPIKey(e.ctx, first))
	require.NoError(t, s.CreateAPIKey(e.ctx, other))

	got, err := s.GetAPIKeyByHash(e.ctx, crm.Hash)
	require.NoError(t, err)
	require.Equal(t, "crm", got.Name)
	require.Equal(t, store.ScopeTrigger, got.Scope)
	require.Equal(t, []string{"WELCOME", "PAID"}, got.Events)
	require.Nil(t, got.LastUsedAt)
	got, err = s.GetAPIKeyByHash(e.ctx, first.Hash)
	require.NoError(t, err)
	require.Equal(t, "", got.Scope, "a key made without a scope reads back as before (admin)")
	require.Empty(t, got.Events)

	keys, err := s.ListAPIKeys(e.ctx, e.bot)
	require.NoError(t, err)
	require.Len(t, keys, 2, "another bot's key is not listed")
	require.Equal(t, "k1", keys[0].ID, "oldest first")
	require.Equal(t, "k2", keys[1].ID)
	requireTime(t, e, t0, keys[0].CreatedAt, "created_at")

	// Touch records the last use and never moves it back.
	used := t0.Add(time.Minute)
	require.NoError(t, s.TouchAPIKey(e.ctx, "k2", used))
	require.NoError(t, s.TouchAPIKey(e.ctx, "k2", t0.Add(30*time.Second)))
	got, err = s.GetAPIKeyByHash(e.ctx, crm.Hash)
	require.NoError(t, err)
	require.NotNil(t, got.LastUsedAt)
	requireTime(t, e, used, *got.LastUsedAt, "last_used_at")
	require.NoError(t, s.TouchAPIKey(e.ctx, "nope", used), "touching an unknown key is harmless")

	// Revoke: the key stays listed, revoked; twice is harmless and keeps
	// the first time; another bot cannot revoke it.
	requireIs(t, s.RevokeAPIKey(e.ctx, e.bot+"-x", "k2", used), store.ErrNotFound)
	revoked := t0.Add(2 * time.Minute)
	require.NoError(t, s.RevokeAPIKey(e.ctx, e.bot, "k2", revoked))
	require.NoError(t, s.RevokeAPIKey(e.ctx, e.bot, "k2", revoked.Add(time.Hour)))
	got, err = s.GetAPIKeyByHash(e.ctx, crm.Hash)
	require.NoError(t, err)
	require.True(t, got.Revoked)
	require.NotNil(t, got.RevokedAt)
	requireTime(t, e, revoked, *got.RevokedAt, "revoked_at")
	require.Equal(t, "crm", got.Name, "revoking keeps the key's other fields")
	require.NoError(t, s.RevokeAPIKey(e.ctx, e.bot, "k1", revoked), "a key made without a scope can be revoked")
	got, err = s.GetAPIKeyByHash(e.ctx, first.Hash)
	require.NoError(t, err)
	require.True(t, got.Revoked)
	requireIs(t, s.RevokeAPIKey(e.ctx, e.bot, "nope", revoked), store.ErrNotFound)
	got, err = s.GetAPIKeyByHash(e.ctx, other.Hash)
	require.NoError(t, err)
	require.False(t, got.Revoked, "another bot's key is untouched")

	// Invalid input: refused before any I/O.
	bad := crm
	bad.ID, bad.Hash, bad.Scope = "k9", "h9"+e.bot, "owner"
	requireInvalid(t, s.CreateAPIKey(e.ctx, bad), "scope")
	bad.Scope, bad.Events = store.ScopeAdmin, []string{"X"}
	requireInvalid(t, s.CreateAPIKey(e.ctx, bad), "events")
	_, err = s.ListAPIKeys(e.ctx, "Bad Bot")
	requireInvalid(t, err, "bot_id")
	requireInvalid(t, s.RevokeAPIKey(e.ctx, e.bot, "", revoked), "id")
}

func testFlowAdmin(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	for _, f := range []struct{ id, def string }{{"b", `{"v":1}`}, {"a", `{"v":1}`}, {"b", `{"v":2}`}, {"b", `{"v":3}`}} {
		_, err := s.PutFlow(e.ctx, store.Flow{BotID: e.bot, ID: f.id, Definition: json.RawMessage(f.def)})
		require.NoError(t, err)
	}
	flows, err := s.ListFlows(e.ctx, e.bot)
	require.NoError(t, err)
	require.Len(t, flows, 2)
	require.Equal(t, "a", flows[0].ID)
	require.Equal(t, 1, flows[0].Version)
	require.Equal(t, "b", flows[1].ID)
	require.Equal(t, 3, flows[1].Version, "the latest version")
	jsonEq(t, json.RawMessage(`{"v":3}`), flows[1].Definition)
	empty, err := s.ListFlows(e.ctx, e.bot+"-none")
	require.NoError(t, err)
	require.Empty(t, empty)

	requireIs(t, s.DeleteFlow(e.ctx, e.bot+"-none", "b"), store.ErrNotFound, "another bot's flow")
	require.NoError(t, s.DeleteFlow(e.ctx, e.bot, "b"))
	_, err = s.GetFlow(e.ctx, e.bot, "b", 2)
	requireIs(t, err, store.ErrNotFound, "every version is gone")
	requireIs(t, s.DeleteFlow(e.ctx, e.bot, "b"), store.ErrNotFound)
	flows, err = s.ListFlows(e.ctx, e.bot)
	require.NoError(t, err)
	require.Len(t, flows, 1)
	// A deleted flow id can be used again, from version 1.
	f, err := s.PutFlow(e.ctx, store.Flow{BotID: e.bot, ID: "b", Definition: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.Equal(t, 1, f.Version)
	requireInvalid(t, s.DeleteFlow(e.ctx, e.bot, ""), "id")
}

func testEventAdmin(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	for _, n := range []string{"PAID", "WELCOME"} {
		require.NoError(t, s.PutEvent(e.ctx, store.Event{BotID: e.bot, Name: n, FlowID: "f", TokenHash: "t-" + n}))
	}
	evs, err := s.ListEvents(e.ctx, e.bot)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	require.Equal(t, "PAID", evs[0].Name)
	require.Equal(t, "WELCOME", evs[1].Name)
	requireIs(t, s.DeleteEvent(e.ctx, e.bot+"-x", "PAID"), store.ErrNotFound)
	require.NoError(t, s.DeleteEvent(e.ctx, e.bot, "PAID"))
	requireIs(t, s.DeleteEvent(e.ctx, e.bot, "PAID"), store.ErrNotFound)
	_, err = s.GetEventByToken(e.ctx, e.bot, "t-PAID")
	requireIs(t, err, store.ErrNotFound, "the deleted event's trigger URL is gone")
	evs, err = s.ListEvents(e.ctx, e.bot)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	requireInvalid(t, s.DeleteEvent(e.ctx, "Bad Bot", "x"), "bot_id")
}

func testListTriggers(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	t0 := base()
	// Five triggers a second apart; two of event PAID; one cancelled.
	for i := range 5 {
		ev := "WELCOME"
		if i%2 == 1 {
			ev = "PAID"
		}
		_, _, err := s.CreateTrigger(e.ctx, store.Trigger{ID: "tr" + string(rune('0'+i)), BotID: e.bot, Source: "native", Event: ev,
			FlowID: "f", Channel: "sandbox", Status: store.TriggerAccepted, CreatedAt: t0.Add(time.Duration(i) * time.Second)})
		require.NoError(t, err)
	}
	tr, err := s.GetTrigger(e.ctx, e.bot, "tr2")
	require.NoError(t, err)
	tr.Status = store.TriggerCancelled
	_, err = s.UpdateTrigger(e.ctx, tr)
	require.NoError(t, err)
	_, _, err = s.CreateTrigger(e.ctx, store.Trigger{ID: "other", BotID: e.bot + "-x", Source: "native", FlowID: "f",
		Channel: "sandbox", CreatedAt: t0})
	require.NoError(t, err)

	ids := func(ts []store.Trigger) []string {
		out := []string{}
		for _, t := range ts {
			out = append(out, t.ID)
		}
		return out
	}
	all, next, err := s.ListTriggers(e.ctx, store.TriggerFilter{BotID: e.bot})
	require.NoError(t, err)
	require.Equal(t, []string{"tr4", "tr3", "tr2", "tr1", "tr0"}, ids(all), "newest first, this bot only")
	require.Empty(t, next)

	// Pages of two follow one another without gaps or repeats.
	var paged []string
	cursor := ""
	for range 5 {
		page, n, err := s.ListTriggers(e.ctx, store.TriggerFilter{BotID: e.bot, Limit: 2, Cursor: cursor})
		require.NoError(t, err)
		paged = append(paged, ids(page)...)
		if n == "" {
			break
		}
		cursor = n
	}
	require.Equal(t, ids(all), paged)

	got, _, err := s.ListTriggers(e.ctx, store.TriggerFilter{BotID: e.bot, Event: "PAID"})
	require.NoError(t, err)
	require.Equal(t, []string{"tr3", "tr1"}, ids(got))
	got, _, err = s.ListTriggers(e.ctx, store.TriggerFilter{BotID: e.bot, Status: store.TriggerCancelled})
	require.NoError(t, err)
	require.Equal(t, []string{"tr2"}, ids(got))
	got, _, err = s.ListTriggers(e.ctx, store.TriggerFilter{BotID: e.bot, Since: t0.Add(3 * time.Second)})
	require.NoError(t, err)
	require.Equal(t, []string{"tr4", "tr3"}, ids(got), "since is inclusive")

	_, _, err = s.ListTriggers(e.ctx, store.TriggerFilter{BotID: e.bot, Status: "paused-ish"})
	requireInvalid(t, err, "status")
	_, _, err = s.ListTriggers(e.ctx, store.TriggerFilter{BotID: e.bot, Cursor: "!!"})
	requireInvalid(t, err, "cursor")
	_, _, err = s.ListTriggers(e.ctx, store.TriggerFilter{BotID: e.bot, Limit: -1})
	requireInvalid(t, err, "limit")
}

func testSearchContacts(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	up := func(id, ch, ext, name string, attrs map[string]any) {
		_, _, err := s.UpsertContact(e.ctx, store.ContactUpsert{BotID: e.bot, Channel: ch, ExternalID: ext, Name: name,
			Attributes: attrs, NewID: id, Now: base()})
		require.NoError(t, err)
	}
	up("c1", "whatsapp", "+31612345678", "Ann de Vries", map[string]any{"plan": "Premium", "age": 30.0, "vip": true})
	up("c2", "whatsapp", "+31687654321", "Bob", map[string]any{"plan": "Basic", "age": "30"})
	up("c3", "telegram", "3161", "ANNA", map[string]any{"plan": "Premium"})
	up("c4", "sandbox", "100%_x", "Zed", nil)
	_, _, err := s.UpsertContact(e.ctx, store.ContactUpsert{BotID: e.bot + "-x", Channel: "whatsapp", ExternalID: "+31612345678",
		Name: "Ann", NewID: "other", Now: base()})
	require.NoError(t, err)

	ids := func(q store.ContactSearch) []string {
		t.Helper()
		q.BotID = e.bot
		cs, _, err := s.SearchContacts(e.ctx, q)
		require.NoError(t, err)
		out := []string{}
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	require.Equal(t, []string{"c1", "c2", "c3", "c4"}, ids(store.ContactSearch{}), "id order, this bot only")
	require.Equal(t, []string{"c1", "c2"}, ids(store.ContactSearch{ExternalIDPrefix: "+316"}))
	require.Equal(t, []string{"c1"}, ids(store.ContactSearch{ExternalIDPrefix: "+3161"}))
	require.Equal(t, []string{"c4"}, ids(store.ContactSearch{ExternalIDPrefix: "100%_"}), "% and _ are plain characters")
	require.Empty(t, ids(store.ContactSearch{ExternalIDPrefix: "100%a"}))
	require.Equal(t, []string{"c1", "c3"}, ids(store.ContactSearch{Name: "ann"}), "name contains, ignoring case")
	require.Equal(t, []string{"c1", "c3"}, ids(store.ContactSearch{Attribute: "plan", Value: "Premium"}))
	require.Equal(t, []string{"c1", "c2"}, ids(store.ContactSearch{Attribute: "age", Value: "30"}), "number 30 and string \"30\"")
	require.Equal(t, []string{"c1"}, ids(store.ContactSearch{Attribute: "vip", Value: "true"}))
	require.Equal(t, []string{"c3"}, ids(store.ContactSearch{Attribute: "plan", Value: "Premium", Channel: "telegram"}))
	require.Equal(t, []string{"c1"}, ids(store.ContactSearch{Attribute: "plan", Value: "Premium", Name: "vries"}), "filters combine")
	require.Empty(t, ids(store.ContactSearch{Attribute: "plan", Value: "premium"}), "values match exactly")

	// Paging.
	page, next, err := s.SearchContacts(e.ctx, store.ContactSearch{BotID: e.bot, Limit: 3})
	require.NoError(t, err)
	require.Len(t, page, 3)
	require.NotEmpty(t, next)
	page, next, err = s.SearchContacts(e.ctx, store.ContactSearch{BotID: e.bot, Limit: 3, Cursor: next})
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, "c4", page[0].ID)
	require.Empty(t, next)

	_, _, err = s.SearchContacts(e.ctx, store.ContactSearch{BotID: e.bot, Value: "x"})
	requireInvalid(t, err, "value")
	_, _, err = s.SearchContacts(e.ctx, store.ContactSearch{BotID: e.bot, Cursor: "%%%"})
	requireInvalid(t, err, "cursor")
	_, _, err = s.SearchContacts(e.ctx, store.ContactSearch{BotID: "Bad Bot"})
	requireInvalid(t, err, "bot_id")
}

func testContactMessages(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkContact(t, s, e, "c1", "sandbox", "a")
	mkContact(t, s, e, "c2", "sandbox", "b")
	mkRun(t, s, e, "r1", "", "c1")
	mkRun(t, s, e, "r2", "", "c1")
	mkRun(t, s, e, "r3", "", "c2")
	t0 := base()
	msg := func(id, run, contact string, at time.Time) store.Message {
		return store.Message{ID: id, BotID: e.bot, RunID: run, ContactID: contact, Channel: "sandbox", Seq: 1,
			Content: json.RawMessage(`{"text":"hi"}`), Status: store.MessageQueued, CreatedAt: at}
	}
	require.NoError(t, s.InsertMessages(e.ctx, []store.Message{
		msg("m1", "r1", "c1", t0), msg("m2", "r2", "c1", t0.Add(time.Second)), msg("m3", "r3", "c2", t0.Add(2*time.Second)),
	}))
	require.NoError(t, s.UpdateMessageStatus(e.ctx, store.StatusUpdate{BotID: e.bot, MessageID: "m1", Status: store.MessageFailed, Reason: "131026: undeliverable", At: t0.Add(time.Minute)}))
	ms, err := s.ListContactMessages(e.ctx, e.bot, "c1", 0)
	require.NoError(t, err)
	require.Len(t, ms, 2)
	require.Equal(t, "m2", ms[0].ID, "newest first")
	require.Equal(t, "m1", ms[1].ID)
	require.Equal(t, store.MessageFailed, ms[1].Status)
	require.Contains(t, ms[1].Error, "131026")
	ms, err = s.ListContactMessages(e.ctx, e.bot, "c1", 1)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	ms, err = s.ListContactMessages(e.ctx, e.bot+"-x", "c1", 0)
	require.NoError(t, err)
	require.Empty(t, ms, "another bot sees none")
	_, err = s.ListContactMessages(e.ctx, e.bot, "", 0)
	requireInvalid(t, err, "contact_id")
}

func testDeleteContactTranscript(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkContact(t, s, e, "c1", "sandbox", "alice")
	mkContact(t, s, e, "c2", "sandbox", "bob")
	mkRun(t, s, e, "r1", "", "c1")
	mkRun(t, s, e, "r2", "", "c2")
	require.NoError(t, s.AppendSandbox(e.ctx,
		store.SandboxMessage{MessageID: e.bot + "-s1", BotID: e.bot, RunID: "r1", To: "alice", Content: json.RawMessage(`{"text":"a"}`)},
		store.SandboxMessage{MessageID: e.bot + "-s2", BotID: e.bot, RunID: "r2", To: "bob", Content: json.RawMessage(`{"text":"b"}`)},
		store.SandboxMessage{MessageID: e.bot + "-s3", BotID: e.bot, RunID: "r1", To: "alice", Content: json.RawMessage(`{"text":"c"}`)},
	))
	require.NoError(t, s.DeleteContact(e.ctx, e.bot, "c1"))
	left, err := s.ListSandbox(e.ctx, e.bot, "", 0, 0)
	require.NoError(t, err)
	require.Len(t, left, 1, "alice's transcript is gone")
	require.Equal(t, "bob", left[0].To)
	_, err = s.GetRun(e.ctx, e.bot, "r1")
	requireIs(t, err, store.ErrNotFound)
}

func testIdempotencyKeys(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	at := base()
	got, err := s.ClaimIdempotencyKey(e.ctx, e.bot, "order-1", "hash-a", at)
	require.NoError(t, err)
	require.Equal(t, "hash-a", got, "first use stores the hash")
	got, err = s.ClaimIdempotencyKey(e.ctx, e.bot, "order-1", "hash-a", at)
	require.NoError(t, err)
	require.Equal(t, "hash-a", got, "a retry finds its own hash")
	got, err = s.ClaimIdempotencyKey(e.ctx, e.bot, "order-1", "hash-b", at)
	require.NoError(t, err)
	require.Equal(t, "hash-a", got, "reuse with another request finds the first hash")
	got, err = s.ClaimIdempotencyKey(e.ctx, e.bot+"-x", "order-1", "hash-b", at)
	require.NoError(t, err)
	require.Equal(t, "hash-b", got, "keys are per bot")

	// Concurrent first claims: every caller sees the one winner.
	res := make([]string, 8)
	parallel(8, func(i int) {
		res[i], _ = s.ClaimIdempotencyKey(e.ctx, e.bot, "race", "h"+string(rune('0'+i)), at)
	})
	for _, r := range res {
		require.Equal(t, res[0], r)
		require.NotEmpty(t, r)
	}
	_, err = s.ClaimIdempotencyKey(e.ctx, e.bot, "", "h", at)
	requireInvalid(t, err, "key")
}

func testDeleteBot(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	other := env{ctx: e.ctx, feats: e.feats, bot: e.bot + "-keep"}
	mkBot(t, s, other)
	for _, b := range []env{e, other} {
		mkContact(t, s, b, b.bot+"-c1", "sandbox", "alice")
		mkContact(t, s, b, b.bot+"-c2", "sandbox", "bob")
		mkTrigger(t, s, b, b.bot+"-tr")
		mkRun(t, s, b, b.bot+"-r1", b.bot+"-tr", b.bot+"-c1")
		mkRun(t, s, b, b.bot+"-r2", "", b.bot+"-c2")
		require.NoError(t, s.InsertMessages(b.ctx, []store.Message{{ID: b.bot + "-m1", BotID: b.bot, RunID: b.bot + "-r1",
			ContactID: b.bot + "-c1", Channel: "sandbox", To: "alice", Seq: 1, Content: json.RawMessage(`{}`)}}))
		require.NoError(t, s.AppendSandbox(b.ctx, store.SandboxMessage{MessageID: b.bot + "-s1", BotID: b.bot, RunID: b.bot + "-r1",
			To: "alice", Content: json.RawMessage(`{}`)}))
		_, err := s.PutFlow(b.ctx, store.Flow{BotID: b.bot, ID: "f", Definition: json.RawMessage(`{}`)})
		require.NoError(t, err)
		require.NoError(t, s.PutEvent(b.ctx, store.Event{BotID: b.bot, Name: "E", FlowID: "f", TokenHash: b.bot + "-tok"}))
		require.NoError(t, s.CreateAPIKey(b.ctx, store.APIKey{ID: b.bot + "-k", BotID: b.bot, Hash: b.bot + "-hash", Prefix: "fg_x",
			Scope: store.ScopeTrigger, Events: []string{"E"}}))
		require.NoError(t, s.CreateSubscription(b.ctx, store.Subscription{ID: b.bot + "-wh", BotID: b.bot, URL: "https://e.x/h",
			Secret: "0123456789abcdef", EventTypes: []string{"run.status"}}))
		_, err = s.ClaimIdempotencyKey(b.ctx, b.bot, "k", "h", time.Time{})
		require.NoError(t, err)
	}

	at := base()
	requireIs(t, s.MarkBotDeleting(e.ctx, "no-such-bot", at), store.ErrNotFound)
	require.NoError(t, s.MarkBotDeleting(e.ctx, e.bot, at))
	require.NoError(t, s.MarkBotDeleting(e.ctx, e.bot, at.Add(time.Hour)), "marking twice is harmless")
	ds, err := s.BotDeletions(e.ctx)
	require.NoError(t, err)
	var mine *store.BotDeletion
	for i := range ds {
		if ds[i].BotID == e.bot {
			mine = &ds[i]
		}
	}
	require.NotNil(t, mine, "the deletion is listed")
	requireTime(t, e, at, mine.RequestedAt, "requested_at (the first request)")

	// Small chunks: several rounds, then done.
	rounds := 0
	for done := false; !done; rounds++ {
		require.Less(t, rounds, 20, "DeleteBotData never finished")
		done, err = s.DeleteBotData(e.ctx, e.bot, 1)
		require.NoError(t, err)
	}
	done, err := s.DeleteBotData(e.ctx, e.bot, 1)
	require.NoError(t, err)
	require.True(t, done, "again after done: done")

	_, err = s.GetBot(e.ctx, e.bot)
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetContact(e.ctx, e.bot, e.bot+"-c1")
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetRun(e.ctx, e.bot, e.bot+"-r2")
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetMessage(e.ctx, e.bot, e.bot+"-m1")
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetTrigger(e.ctx, e.bot, e.bot+"-tr")
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetEvent(e.ctx, e.bot, "E")
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetFlow(e.ctx, e.bot, "f", 0)
	requireIs(t, err, store.ErrNotFound)
	_, err = s.GetAPIKeyByHash(e.ctx, e.bot+"-hash")
	requireIs(t, err, store.ErrNotFound)
	sb, err := s.ListSandbox(e.ctx, e.bot, "", 0, 0)
	require.NoError(t, err)
	require.Empty(t, sb)
	subs, err := s.ListSubscriptions(e.ctx, e.bot)
	require.NoError(t, err)
	require.Empty(t, subs)
	got, err := s.ClaimIdempotencyKey(e.ctx, e.bot, "k", "h2", time.Time{})
	require.NoError(t, err)
	require.Equal(t, "h2", got, "the bot's idempotency keys are gone")
	ds, err = s.BotDeletions(e.ctx)
	require.NoError(t, err)
	for _, d := range ds {
		require.NotEqual(t, e.bot, d.BotID, "a finished deletion is no longer listed")
	}
	// A late second request (a DELETE that looked the bot up just before
	// the deletion finished) leaves no marker behind.
	requireIs(t, s.MarkBotDeleting(e.ctx, e.bot, at), store.ErrNotFound)
	ds, err = s.BotDeletions(e.ctx)
	require.NoError(t, err)
	for _, d := range ds {
		require.NotEqual(t, e.bot, d.BotID, "a request after the end leaves no marker")
	}

	// The other bot is untouched.
	_, err = s.GetBot(e.ctx, other.bot)
	require.NoError(t, err)
	_, err = s.GetRun(e.ctx, other.bot, other.bot+"-r1")
	require.NoError(t, err)
	_, err = s.GetMessage(e.ctx, other.bot, other.bot+"-m1")
	require.NoError(t, err)
	sb, err = s.ListSandbox(e.ctx, other.bot, "", 0, 0)
	require.NoError(t, err)
	require.Len(t, sb, 1)
	_, err = s.GetAPIKeyByHash(e.ctx, other.bot+"-hash")
	require.NoError(t, err)
	_, err = s.DeleteBotData(e.ctx, "Bad Bot", 1)
	requireInvalid(t, err, "bot_id")
}
