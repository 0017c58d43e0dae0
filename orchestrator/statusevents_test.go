package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// runStatusMsgs counts the messages of FLOWGATE_RUNS.
func (r *rig) runStatusMsgs() uint64 {
	r.t.Helper()
	s, err := r.bus.JetStream().Stream(context.Background(), bus.StreamRuns)
	require.NoError(r.t, err)
	info, err := s.Info(context.Background())
	require.NoError(r.t, err)
	return info.State.Msgs
}

// A bot without webhook subscriptions publishes no run status changes (no
// reader would get them); once it has one, every change is published
// again, within the subscription cache's TTL; AlwaysPublishStatus publishes
// them whatever the subscriptions.
func TestRunStatusPublishedOnlyForSubscribedBots(t *testing.T) {
	ctx := context.Background()
	for _, always := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "always"}[always], func(t *testing.T) {
			r := newRig(t, Config{SubscriptionTTL: 50 * time.Millisecond, AlwaysPublishStatus: always}, nil)
			r.addContacts([]contactSpec{{channel: events.ChannelSandbox, id: "a"}, {channel: events.ChannelSandbox, id: "b"}})
			// Two runs started by the fan-out (launchBatch): the completed
			// status of a one-message flow is each run's first change.
			id := r.trigger(events.Trigger{Audience: events.Audience{Everyone: true, Platform: events.ChannelSandbox}})
			r.waitStatus(id, store.TriggerDone, 10*time.Second)
			require.Len(t, r.runs(id), 2)
			if always {
				require.Eventually(t, func() bool { return r.runStatusMsgs() == 2 }, 5*time.Second, 20*time.Millisecond)
			} else {
				time.Sleep(200 * time.Millisecond)
				require.Zero(t, r.runStatusMsgs(), "no subscription: no status change published")
			}

			require.NoError(t, r.store.CreateSubscription(ctx, store.Subscription{ID: "wh1", BotID: testBot,
				URL: "https://hooks.example.com/x", Secret: "0123456789abcdef", EventTypes: []string{"run.status"}}))
			time.Sleep(100 * time.Millisecond) // past the TTL
			before := r.runStatusMsgs()
			id = r.trigger(events.Trigger{Audience: events.Audience{Everyone: true, Platform: events.ChannelSandbox}})
			r.waitStatus(id, store.TriggerDone, 10*time.Second)
			require.Eventually(t, func() bool { return r.runStatusMsgs() == before+2 }, 5*time.Second, 20*time.Millisecond,
				"with a subscription every run's change is published")
		})
	}
}
