package mongo

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/event"

	"github.com/flowgate/flowgate/shared/store"
)

// commandCounter counts the commands a client sends, by name and
// collection ("update triggers").
type commandCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *commandCounter) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		coll := ""
		if v, err := e.Command.LookupErr(e.CommandName); err == nil {
			coll, _ = v.StringValueOK()
		}
		c.mu.Lock()
		c.n[e.CommandName+" "+coll]++
		c.mu.Unlock()
	}}
}

func (c *commandCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = map[string]int{}
	return out
}

// TestCheckpointTriggersInOneCommand: the checkpoints of a dispatch batch
// (one trigger per run) cost one update command, not one per trigger; a
// stale one among them costs one read of the batch's triggers more.
func TestCheckpointTriggersInOneCommand(t *testing.T) {
	counter := &commandCounter{n: map[string]int{}}
	s := openTest(t, sharedFerret(t), func(c *config) error { c.monitor = counter.monitor(); return nil })
	ctx := context.Background()
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: bot, Name: "B"}))
	const n = 24
	ts := make([]store.Trigger, n)
	for i := range ts {
		ts[i] = store.Trigger{ID: fmt.Sprintf("tc%02d", i), BotID: bot, Source: "dispatch", Event: "E", FlowID: "f1",
			Channel: "sandbox", Spec: json.RawMessage(`{}`), Status: store.TriggerAccepted}
	}
	counter.take()
	created, err := s.CreateTriggers(ctx, ts)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"insert triggers": 1}, counter.take())
	cps := make([]store.TriggerCheckpoint, n)
	for i, c := range created {
		cps[i] = store.TriggerCheckpoint{BotID: bot, ID: c.Trigger.ID, Version: c.Trigger.Version, Status: store.TriggerDone,
			Delta: store.TriggerCounters{Targeted: 1, RunsCreated: 1}}
	}
	counter.take()
	errs, err := s.CheckpointTriggers(ctx, cps)
	require.NoError(t, err)
	for i := range errs {
		require.NoError(t, errs[i])
		cps[i].Version++
	}
	require.Equal(t, map[string]int{"update triggers": 1}, counter.take())

	cps[5].Version = 1 // stale
	errs, err = s.CheckpointTriggers(ctx, cps)
	require.NoError(t, err)
	for i := range errs {
		if i == 5 {
			require.ErrorIs(t, errs[i], store.ErrVersionConflict)
			continue
		}
		require.NoError(t, errs[i])
	}
	require.Equal(t, map[string]int{"update triggers": 1, "find triggers": 1}, counter.take())
	got, err := s.GetTrigger(ctx, bot, cps[6].ID)
	require.NoError(t, err)
	require.EqualValues(t, 2, got.Counters.Targeted)
	require.Equal(t, cps[6].Version+1, got.Version)
}

// TestCreateTriggersInOneCommand: a batch's triggers are one insert
// command; ids that exist (one of another bot) cost one find more.
func TestCreateTriggersInOneCommand(t *testing.T) {
	counter := &commandCounter{n: map[string]int{}}
	s := openTest(t, sharedFerret(t), func(c *config) error { c.monitor = counter.monitor(); return nil })
	ctx := context.Background()
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: bot, Name: "B"}))
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: "other", Name: "O"}))
	mk := func(botID, id string) store.Trigger {
		return store.Trigger{ID: id, BotID: botID, Source: "dispatch", Event: "E", FlowID: "f1",
			Channel: "sandbox", Spec: json.RawMessage(`{}`), Status: store.TriggerAccepted}
	}
	_, _, err := s.CreateTrigger(ctx, mk("other", "theirs"))
	require.NoError(t, err)
	old, _, err := s.CreateTrigger(ctx, mk(bot, "old"))
	require.NoError(t, err)
	counter.take()
	got, err := s.CreateTriggers(ctx, []store.Trigger{mk(bot, "n1"), mk(bot, "old"), mk(bot, "theirs"), mk(bot, "n2"), mk(bot, "n1")})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"insert triggers": 1, "find triggers": 1}, counter.take())
	require.True(t, got[0].Created)
	require.NoError(t, got[0].Err)
	require.False(t, got[1].Created)
	require.Equal(t, old.Version, got[1].Trigger.Version)
	require.ErrorIs(t, got[2].Err, store.ErrConflict)
	require.True(t, got[3].Created)
	require.False(t, got[4].Created, "the same id twice: the second finds the first")
	require.NoError(t, got[4].Err)
	require.Equal(t, "n1", got[4].Trigger.ID)
}

// TestMarkSentInOneCommand: a bundle's sent marks are one update command
// of the messages when every message was queued; a receipt that came
// first costs one update more (its provider id).
func TestMarkSentInOneCommand(t *testing.T) {
	counter := &commandCounter{n: map[string]int{}}
	s := openTest(t, sharedFerret(t), func(c *config) error { c.monitor = counter.monitor(); return nil })
	ctx := context.Background()
	require.NoError(t, s.CreateBot(ctx, store.Bot{ID: bot, Name: "B"}))
	_, _, err := s.CreateTrigger(ctx, store.Trigger{ID: "tm", BotID: bot, Source: "dispatch", Event: "E", FlowID: "f1",
		Channel: "whatsapp", Spec: json.RawMessage(`{}`), Status: store.TriggerAccepted})
	require.NoError(t, err)
	var ms []store.Message
	var marks []store.SentMessage
	for i := range 12 {
		id := fmt.Sprintf("mm%02d", i)
		ms = append(ms, store.Message{ID: id, BotID: bot, RunID: "r", TriggerID: "tm", ContactID: "c1", Channel: "whatsapp",
			To: "+1", Seq: i + 1, Content: json.RawMessage(`{"text":"x"}`)})
		marks = append(marks, store.SentMessage{ID: id, ProviderMessageID: "wamid." + id})
	}
	require.NoError(t, s.InsertMessages(ctx, ms))
	counter.take()
	require.NoError(t, s.MarkSent(ctx, bot, "tm", marks[:6]))
	require.Equal(t, 1, counter.take()["update messages"])

	require.NoError(t, s.UpdateMessageStatus(ctx, store.StatusUpdate{BotID: bot, MessageID: "mm08", Status: store.MessageDelivered}))
	counter.take()
	require.NoError(t, s.MarkSent(ctx, bot, "tm", marks[6:]))
	require.Equal(t, 2, counter.take()["update messages"])
	m, err := s.GetMessage(ctx, bot, "mm08")
	require.NoError(t, err)
	require.Equal(t, store.MessageDelivered, m.Status)
	require.Equal(t, "wamid.mm08", m.ProviderMessageID)
	require.Eventually(t, func() bool {
		tr, err := s.GetTrigger(ctx, bot, "tm")
		return err == nil && tr.Counters.Sent == 12
	}, 10*time.Second, 20*time.Millisecond)
}
