package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// TestSentMarksPastOneStatement: sent marks of more messages than one
// statement carries (256 per UPDATE … FROM (VALUES …)) are recorded and
// counted exactly, across statements and triggers; a message whose receipt
// came first gets only its provider id and counts once; a redelivery
// counts nothing. (The contract tests cover the same rules with fewer
// messages, on every adapter.)
func TestSentMarksPastOneStatement(t *testing.T) {
	ctx := context.Background()
	s := sqlitetest.Open(t)
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "b1", Name: "B"}))
	for _, id := range []string{"tc", "td", "tw"} {
		_, _, err := s.CreateTrigger(ctx, store.Trigger{ID: id, BotID: "b1", Source: "api", Event: "E", FlowID: "f",
			Channel: "sandbox", Spec: json.RawMessage(`{}`), Status: store.TriggerAccepted})
		require.NoError(t, err)
	}
	sent := func(id string) int64 {
		tr, err := s.GetTrigger(ctx, "b1", id)
		require.NoError(t, err)
		return tr.Counters.Sent
	}
	msg := func(id, trigger, channel string, seq int) store.Message {
		return store.Message{ID: id, BotID: "b1", RunID: "r-" + trigger, TriggerID: trigger, ContactID: "c1",
			Channel: channel, To: "+1", Seq: seq, Content: json.RawMessage(`{"text":"x"}`)}
	}

	// The sandbox: 600 bundles of two triggers in one delivery.
	var ms []store.Message
	var ds []store.SandboxDelivery
	for i := range 600 {
		tr := []string{"tc", "td"}[i%3/2]
		id := fmt.Sprintf("k%03d", i)
		ms = append(ms, msg(id, tr, "sandbox", i+1))
		ds = append(ds, store.SandboxDelivery{TriggerID: tr, Messages: []store.SandboxMessage{
			{MessageID: id, BotID: "b1", RunID: "r-" + tr, To: "+1", Content: json.RawMessage(`{"text":"x"}`)}}})
	}
	require.NoError(t, s.InsertMessages(ctx, ms))
	require.NoError(t, s.DeliverSandboxMany(ctx, ds))
	require.EqualValues(t, 400, sent("tc"))
	require.EqualValues(t, 200, sent("td"))
	require.NoError(t, s.DeliverSandboxMany(ctx, ds))
	require.EqualValues(t, 400, sent("tc"), "a redelivery counts nothing")
	require.EqualValues(t, 200, sent("td"))
	for _, id := range []string{"k000", "k255", "k256", "k599"} {
		m, err := s.GetMessage(ctx, "b1", id)
		require.NoError(t, err)
		require.Equal(t, store.MessageSent, m.Status, id)
		require.Equal(t, store.SandboxProviderPrefix+id, m.ProviderMessageID, id)
	}

	// A provider's channel: 600 messages of one bundle, one of which a
	// delivery receipt overtook.
	ms = ms[:0]
	var marks []store.SentMessage
	for i := range 600 {
		id := fmt.Sprintf("w%03d", i)
		ms = append(ms, msg(id, "tw", "whatsapp", i+1))
		marks = append(marks, store.SentMessage{ID: id, ProviderMessageID: "wamid." + id})
	}
	require.NoError(t, s.InsertMessages(ctx, ms))
	require.NoError(t, s.UpdateMessageStatus(ctx, store.StatusUpdate{BotID: "b1", MessageID: "w300", Status: store.MessageDelivered}))
	require.NoError(t, s.MarkSent(ctx, "b1", "tw", marks))
	require.EqualValues(t, 600, sent("tw"))
	require.NoError(t, s.MarkSent(ctx, "b1", "tw", marks))
	require.EqualValues(t, 600, sent("tw"), "a redelivery counts nothing")
	w300, err := s.GetMessage(ctx, "b1", "w300")
	require.NoError(t, err)
	require.Equal(t, store.MessageDelivered, w300.Status, "never back")
	require.Equal(t, "wamid.w300", w300.ProviderMessageID)
	w599, err := s.FindMessageByProviderID(ctx, "b1", "wamid.w599")
	require.NoError(t, err)
	require.Equal(t, store.MessageSent, w599.Status)
}
