package storetest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/stretchr/testify/require"
)

func testSandbox(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	tos := []string{"+1", "+2", "+1", "+1", "+2"}
	for i, to := range tos {
		require.NoError(t, s.AppendSandbox(e.ctx, store.SandboxMessage{
			MessageID: fmt.Sprintf("m%d", i), BotID: e.bot, RunID: "r1", To: to,
			Content: json.RawMessage(fmt.Sprintf(`{"text":"msg %d"}`, i)), CreatedAt: base(),
		}))
	}
	require.NoError(t, s.AppendSandbox(e.ctx, store.SandboxMessage{MessageID: "m1", BotID: e.bot, RunID: "r1", To: "+2",
		Content: json.RawMessage(`{"text":"duplicate"}`)}), "a redelivered message is ignored")

	all, err := s.ListSandbox(e.ctx, e.bot, "", 0, 100)
	require.NoError(t, err)
	require.Len(t, all, 5)
	for i, m := range all {
		require.Equal(t, fmt.Sprintf("m%d", i), m.MessageID, "oldest first")
		require.Equal(t, tos[i], m.To)
		require.Equal(t, e.bot, m.BotID)
		require.Equal(t, "r1", m.RunID)
		jsonEq(t, json.RawMessage(fmt.Sprintf(`{"text":"msg %d"}`, i)), m.Content)
		if i > 0 {
			require.Greater(t, m.Seq, all[i-1].Seq, "seq grows")
		}
	}
	one, err := s.ListSandbox(e.ctx, e.bot, "+1", 0, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"m0", "m2", "m3"}, sandboxIDs(one))
	after, err := s.ListSandbox(e.ctx, e.bot, "+1", one[0].Seq, 1)
	require.NoError(t, err)
	require.Equal(t, []string{"m2"}, sandboxIDs(after), "after seq, limited")
	after, err = s.ListSandbox(e.ctx, e.bot, "", all[4].Seq, 100)
	require.NoError(t, err)
	require.Empty(t, after)

	// Concurrent appends get distinct, increasing seqs.
	n := e.feats.Concurrency * 2
	errs := make([]error, n)
	parallel(n, func(i int) {
		errs[i] = s.AppendSandbox(e.ctx, store.SandboxMessage{MessageID: fmt.Sprintf("p%d", i), BotID: e.bot, RunID: "r2", To: "+3",
			Content: json.RawMessage(`{}`)})
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	par, err := s.ListSandbox(e.ctx, e.bot, "+3", 0, 1000)
	require.NoError(t, err)
	require.Len(t, par, n)
	for i := 1; i < len(par); i++ {
		require.Greater(t, par[i].Seq, par[i-1].Seq)
	}
	require.Greater(t, par[0].Seq, all[4].Seq)

	// Several messages in one call: in order, a repeated one ignored.
	mk := func(id string) store.SandboxMessage {
		return store.SandboxMessage{MessageID: id, BotID: e.bot, RunID: "r3", To: "+4", Content: json.RawMessage(`{"text":"` + id + `"}`)}
	}
	require.NoError(t, s.AppendSandbox(e.ctx, mk("b1"), mk("b2"), mk("b3")))
	require.NoError(t, s.AppendSandbox(e.ctx, mk("b2"), mk("b4")), "b2 again is ignored, b4 appended")
	require.NoError(t, s.AppendSandbox(e.ctx))
	bundle, err := s.ListSandbox(e.ctx, e.bot, "+4", 0, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"b1", "b2", "b3", "b4"}, sandboxIDs(bundle))
	bad := mk("b5")
	bad.MessageID = ""
	requireInvalid(t, s.AppendSandbox(e.ctx, mk("b6"), bad), "message_id")
	bundle, err = s.ListSandbox(e.ctx, e.bot, "+4", 0, 100)
	require.NoError(t, err)
	require.Len(t, bundle, 4, "an invalid message in the call writes nothing")
}

func sandboxIDs(ms []store.SandboxMessage) []string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.MessageID)
	}
	return ids
}

// testDeliverSandbox: the sandbox channel's delivery appends to the
// transcript and records the messages as sent (provider id sandbox-<id>),
// counting each once on its trigger however often it is delivered; bad
// input writes nothing.
func testDeliverSandbox(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkTrigger(t, s, e, "tr1")
	var ms []store.Message
	for i := range 3 {
		ms = append(ms, store.Message{ID: fmt.Sprintf("d%d", i), BotID: e.bot, RunID: "r1", TriggerID: "tr1", ContactID: "c1",
			Channel: "sandbox", To: "+5", Seq: i + 1, Content: json.RawMessage(`{"text":"x"}`)})
	}
	require.NoError(t, s.InsertMessages(e.ctx, ms))
	at := base().Add(time.Minute)
	mk := func(id string) store.SandboxMessage {
		return store.SandboxMessage{MessageID: id, BotID: e.bot, RunID: "r1", To: "+5", Content: json.RawMessage(`{"text":"` + id + `"}`), CreatedAt: at}
	}
	sent := func() int64 {
		tr, err := s.GetTrigger(e.ctx, e.bot, "tr1")
		require.NoError(t, err)
		return tr.Counters.Sent
	}
	require.NoError(t, s.DeliverSandbox(e.ctx, "tr1", []store.SandboxMessage{mk("d0"), mk("d1")}))
	require.EqualValues(t, 2, sent())
	m, err := s.GetMessage(e.ctx, e.bot, "d0")
	require.NoError(t, err)
	require.Equal(t, store.MessageSent, m.Status)
	require.Equal(t, "sandbox-d0", m.ProviderMessageID)
	require.WithinDuration(t, at, m.UpdatedAt, e.feats.TimePrecision)

	// A redelivered bundle: nothing appended or counted twice.
	require.NoError(t, s.DeliverSandbox(e.ctx, "tr1", []store.SandboxMessage{mk("d0"), mk("d1"), mk("d2")}))
	require.EqualValues(t, 3, sent())
	got, err := s.ListSandbox(e.ctx, e.bot, "+5", 0, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"d0", "d1", "d2"}, sandboxIDs(got))
	require.NoError(t, s.DeliverSandbox(e.ctx, "tr1", nil))

	// Bad input writes nothing: an invalid message, or messages of two bots.
	bad := mk("d9")
	bad.MessageID = ""
	requireInvalid(t, s.DeliverSandbox(e.ctx, "tr1", []store.SandboxMessage{mk("d8"), bad}), "message_id")
	other := mk("d7")
	other.BotID = e.bot + "-x"
	requireInvalid(t, s.DeliverSandbox(e.ctx, "tr1", []store.SandboxMessage{mk("d8"), other}), "messages")
	got, err = s.ListSandbox(e.ctx, e.bot, "+5", 0, 100)
	require.NoError(t, err)
	require.Len(t, got, 3, "bad input appends nothing")
	require.EqualValues(t, 3, sent())
}

// testDeliverSandboxMany: several bundles of two triggers delivered
// together count for their own triggers, a redelivery of all of them
// appends and counts nothing twice, and bad input in any delivery (an
// invalid message, two bots in one delivery, too many messages) writes
// nothing.
func testDeliverSandboxMany(t *testing.T, s store.Store, e env) {
	mkBot(t, s, e)
	mkTrigger(t, s, e, "ta")
	mkTrigger(t, s, e, "tb")
	var ms []store.Message
	for i := range 4 {
		tr := "ta"
		if i >= 2 {
			tr = "tb"
		}
		ms = append(ms, store.Message{ID: fmt.Sprintf("g%d", i), BotID: e.bot, RunID: "r-" + tr, TriggerID: tr, ContactID: "c1",
			Channel: "sandbox", To: "+6", Seq: i + 1, Content: json.RawMessage(`{"text":"x"}`)})
	}
	require.NoError(t, s.InsertMessages(e.ctx, ms))
	at := base().Add(time.Minute)
	mk := func(id, run string) store.SandboxMessage {
		return store.SandboxMessage{MessageID: id, BotID: e.bot, RunID: run, To: "+6", Content: json.RawMessage(`{"text":"` + id + `"}`), CreatedAt: at}
	}
	sent := func(id string) int64 {
		tr, err := s.GetTrigger(e.ctx, e.bot, id)
		require.NoError(t, err)
		return tr.Counters.Sent
	}
	ds := []store.SandboxDelivery{
		{TriggerID: "ta", Messages: []store.SandboxMessage{mk("g0", "r-ta"), mk("g1", "r-ta")}},
		{TriggerID: "tb", Messages: []store.SandboxMessage{mk("g2", "r-tb")}},
		{TriggerID: "tb"}, // an empty bundle is nothing to do
	}
	require.NoError(t, s.DeliverSandboxMany(e.ctx, ds))
	require.EqualValues(t, 2, sent("ta"))
	require.EqualValues(t, 1, sent("tb"))
	for _, m := range sentMessages(t, s, e, "g0", "g1", "g2") {
		require.WithinDuration(t, at, m.UpdatedAt, e.feats.TimePrecision)
	}
	got, err := s.ListSandbox(e.ctx, e.bot, "+6", 0, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"g0", "g1", "g2"}, sandboxIDs(got), "in the order of the deliveries")

	// Redelivered, with one more message: only that one is new.
	ds[1].Messages = append(ds[1].Messages, mk("g3", "r-tb"))
	require.NoError(t, s.DeliverSandboxMany(e.ctx, ds))
	require.EqualValues(t, 2, sent("ta"))
	require.EqualValues(t, 2, sent("tb"))
	got, err = s.ListSandbox(e.ctx, e.bot, "+6", 0, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"g0", "g1", "g2", "g3"}, sandboxIDs(got))
	require.NoError(t, s.DeliverSandboxMany(e.ctx, nil))

	// A bundle twice in one call (the copy a worker handed on alone, met
	// beside the batch it came from), with a message new to both: it is
	// appended and counted once.
	ms = ms[:0]
	ms = append(ms, store.Message{ID: "g4", BotID: e.bot, RunID: "r-tb", TriggerID: "tb", ContactID: "c1",
		Channel: "sandbox", To: "+6", Seq: 5, Content: json.RawMessage(`{"text":"x"}`)})
	require.NoError(t, s.InsertMessages(e.ctx, ms))
	twice := store.SandboxDelivery{TriggerID: "tb", Messages: []store.SandboxMessage{mk("g3", "r-tb"), mk("g4", "r-tb")}}
	require.NoError(t, s.DeliverSandboxMany(e.ctx, []store.SandboxDelivery{twice, twice}))
	require.EqualValues(t, 3, sent("tb"), "g4 once")
	got, err = s.ListSandbox(e.ctx, e.bot, "+6", 0, 100)
	require.NoError(t, err)
	require.Equal(t, []string{"g0", "g1", "g2", "g3", "g4"}, sandboxIDs(got))

	// Many bundles of two triggers at once: each counted for its own
	// trigger, exactly. (SQLite's statements past 256 messages are tested
	// in its package: the Mongo adapter writes bundles one by one, slow on
	// FerretDB under the race detector.)
	mkTrigger(t, s, e, "tc")
	mkTrigger(t, s, e, "td")
	ms = ms[:0]
	var big []store.SandboxDelivery
	for i := range 60 {
		tr := []string{"tc", "td"}[i%3/2] // two of three for tc
		id := fmt.Sprintf("k%03d", i)
		ms = append(ms, store.Message{ID: id, BotID: e.bot, RunID: "r-" + tr, TriggerID: tr, ContactID: "c1",
			Channel: "sandbox", To: "+7", Seq: i + 1, Content: json.RawMessage(`{"text":"x"}`)})
		m := mk(id, "r-"+tr)
		m.To = "+7"
		big = append(big, store.SandboxDelivery{TriggerID: tr, Messages: []store.SandboxMessage{m}})
	}
	require.NoError(t, s.InsertMessages(e.ctx, ms))
	require.NoError(t, s.DeliverSandboxMany(e.ctx, big))
	require.EqualValues(t, 40, sent("tc"))
	require.EqualValues(t, 20, sent("td"))
	require.NoError(t, s.DeliverSandboxMany(e.ctx, append(big[:5:5], big[55:]...)))
	require.EqualValues(t, 40, sent("tc"), "a redelivery counts nothing")
	require.EqualValues(t, 20, sent("td"))
	sentMessages(t, s, e, "k000", "k030", "k059")

	// Bad input anywhere writes nothing, also of the valid deliveries.
	bad := mk("g9", "r-tb")
	bad.MessageID = ""
	requireInvalid(t, s.DeliverSandboxMany(e.ctx, []store.SandboxDelivery{
		{TriggerID: "ta", Messages: []store.SandboxMessage{mk("g8", "r-ta")}},
		{TriggerID: "tb", Messages: []store.SandboxMessage{bad}},
	}), "message_id")
	other := mk("g7", "r-tb")
	other.BotID = e.bot + "-x"
	requireInvalid(t, s.DeliverSandboxMany(e.ctx, []store.SandboxDelivery{
		{TriggerID: "ta", Messages: []store.SandboxMessage{mk("g8", "r-ta")}},
		{TriggerID: "tb", Messages: []store.SandboxMessage{mk("g6", "r-tb"), other}},
	}), "messages")
	many := make([]store.SandboxDelivery, store.MaxSandboxDeliveries+1)
	for i := range many {
		many[i] = store.SandboxDelivery{TriggerID: "ta", Messages: []store.SandboxMessage{mk(fmt.Sprintf("h%d", i), "r-ta")}}
	}
	requireInvalid(t, s.DeliverSandboxMany(e.ctx, many), "messages")
	got, err = s.ListSandbox(e.ctx, e.bot, "+6", 0, 100)
	require.NoError(t, err)
	require.Len(t, got, 5, "bad input appends nothing")
	require.EqualValues(t, 2, sent("ta"))
	require.EqualValues(t, 3, sent("tb"))
}

// sentMessages requires the sandbox messages ids recorded as sent, with
// the sandbox's provider id, and returns them.
func sentMessages(t *testing.T, s store.Store, e env, ids ...string) []store.Message {
	t.Helper()
	var out []store.Message
	for _, id := range ids {
		m, err := s.GetMessage(e.ctx, e.bot, id)
		require.NoError(t, err)
		require.Equal(t, store.MessageSent, m.Status, id)
		require.Equal(t, store.SandboxProviderPrefix+id, m.ProviderMessageID, id)
		out = append(out, m)
	}
	return out
}
