package orchestrator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// TestTriggerOnTheStandbyStreamIsHandledOnce: a trigger the ingress
// published on the standby stream (the triggers stream had no leader) is
// handled as one on the triggers stream; the same trigger on both streams
// (its first publish stored after all, its acknowledgement lost) starts
// each run once and sends each message once.
func TestTriggerOnTheStandbyStreamIsHandledOnce(t *testing.T) {
	r := newRig(t, Config{FanOutBatch: 10}, nil)
	var cs []contactSpec
	for i := range 25 {
		cs = append(cs, contactSpec{channel: events.ChannelSandbox, id: fmt.Sprintf("s%d", i)})
	}
	r.addContacts(cs)
	ctx := context.Background()
	js := r.bus.JetStream()

	t1 := events.Trigger{ID: "standby-1", BotID: testBot, FlowID: "hello", Source: "native",
		Channel: events.ChannelSandbox, Audience: events.Audience{Everyone: true}, AcceptedAt: time.Now().UTC()}
	ev, err := bus.NewEvent(t1.ID, events.TypeTriggerAccepted, testBot, t1)
	require.NoError(t, err)
	ev.SetSource("/flowgate/ingress")
	_, err = js.PublishMsg(ctx, bus.ToMsg(events.SubjectTriggerStandby+"."+testBot, ev))
	require.NoError(t, err)
	r.waitStatus(t1.ID, store.TriggerDone, 30*time.Second)
	require.Len(t, r.runs(t1.ID), 25)
	require.Eventually(t, func() bool { return r.outboundBundles() == 25 }, 10*time.Second, 20*time.Millisecond)

	// The same trigger on the triggers stream too, and another trigger
	// there: once both are acknowledged, the copy changed nothing.
	_, err = js.PublishMsg(ctx, bus.ToMsg(events.TriggerSubject(testBot), ev))
	require.NoError(t, err)
	t2 := t1
	t2.ID = "standby-2"
	ev2, err := bus.NewEvent(t2.ID, events.TypeTriggerAccepted, testBot, t2)
	require.NoError(t, err)
	ev2.SetSource("/flowgate/ingress")
	_, err = js.PublishMsg(ctx, bus.ToMsg(events.TriggerSubject(testBot), ev2))
	require.NoError(t, err)
	r.waitStatus(t2.ID, store.TriggerDone, 30*time.Second)
	require.Eventually(t, func() bool {
		for _, s := range []string{bus.StreamTriggers, bus.StreamTriggersStandby} {
			st, err := js.Stream(ctx, s)
			require.NoError(t, err)
			if st.CachedInfo().State.Msgs != 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "every trigger acknowledged")
	require.Len(t, r.runs(t1.ID), 25, "no run started twice")
	require.Len(t, r.runs(t2.ID), 25)
	require.Eventually(t, func() bool { return r.outboundBundles() == 50 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	require.EqualValues(t, 50, r.outboundBundles(), "no message sent twice")
}
