package mongo

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

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
	created, err := s.CreateTriggers(ctx, ts)
	require.NoError(t, err)
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
