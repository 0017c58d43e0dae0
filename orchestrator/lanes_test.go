package orchestrator

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

func TestLaneOf(t *testing.T) {
	for _, c := range []struct {
		name string
		t    events.Trigger
		want string
	}{
		{"one user", events.Trigger{Audience: events.Audience{Users: []string{"+1"}}}, events.LaneHigh},
		{"one contact id", events.Trigger{Audience: events.Audience{UsersBM: []string{"c1"}}}, events.LaneHigh},
		{"two users", events.Trigger{Audience: events.Audience{Users: []string{"+1", "+2"}}}, events.LaneBulk},
		{"everyone", events.Trigger{Audience: events.Audience{Everyone: true}}, events.LaneBulk},
		{"filter", events.Trigger{Audience: events.Audience{Everyone: true, Filter: "x"}}, events.LaneBulk},
		{"explicit bulk for one user", events.Trigger{Priority: events.LaneBulk, Audience: events.Audience{Users: []string{"+1"}}}, events.LaneBulk},
		{"explicit high for everyone", events.Trigger{Priority: events.LaneHigh, Audience: events.Audience{Everyone: true}}, events.LaneHigh},
		{"unknown priority: by audience", events.Trigger{Priority: "urgent", Audience: events.Audience{Everyone: true}}, events.LaneBulk},
	} {
		require.Equal(t, c.want, LaneOf(c.t), c.name)
	}
}

// A user's reply is answered in the high lane, whatever the run's lane;
// a timer keeps the run's own.
func TestSendLane(t *testing.T) {
	now := time.Now()
	bulk := runState{Lane: events.LaneBulk}
	require.Equal(t, events.LaneHigh, sendLane(bulk, flow.Reply{Now: now}))
	require.Equal(t, events.LaneHigh, sendLane(bulk, flow.FlowCompleted{Now: now}))
	require.Equal(t, events.LaneHigh, sendLane(bulk, flow.Start{Now: now}))
	require.Equal(t, events.LaneBulk, sendLane(bulk, flow.TimerFired{Now: now}))
	require.Equal(t, events.LaneHigh, sendLane(runState{}, flow.TimerFired{Now: now}), "runs from before lanes: high")
}

func TestQueueBound(t *testing.T) {
	bot := store.Bot{Channels: store.ChannelAccounts{WhatsApp: &store.WhatsAppAccount{RatePerSecond: 20}}}
	b, rate := QueueBound(bot, events.ChannelWhatsApp, 2*time.Minute, 1000)
	require.Equal(t, uint64(2400), b)
	require.Equal(t, 20.0, rate)
	b, _ = QueueBound(store.Bot{}, events.ChannelWhatsApp, 2*time.Minute, 1000)
	require.Equal(t, uint64(9600), b, "the channel default (80/s)")
	b, _ = QueueBound(bot, events.ChannelWhatsApp, time.Second, 1000)
	require.Equal(t, uint64(1000), b, "at least one batch")
	b, _ = QueueBound(bot, events.ChannelSandbox, time.Minute, 1000)
	require.Zero(t, b, "the sandbox is not paced: no bound")
}
