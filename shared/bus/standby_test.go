package bus_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/events"
)

// counterValue reads a counter of the default registry with these labels
// (0 when it has not been counted).
func counterValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func standbyCount(t *testing.T, reason string) float64 {
	return counterValue(t, "flowgate_bus_trigger_standby_publishes_total", map[string]string{"reason": reason})
}

func triggerEvent(t *testing.T, id string) (string, cloudevents.Event) {
	t.Helper()
	ev, err := bus.NewEvent(id, events.TypeTriggerAccepted, "bot1", map[string]string{"id": id})
	require.NoError(t, err)
	return events.TriggerSubject("bot1"), ev
}

func streamMessages(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	require.NoError(t, err)
	return s.CachedInfo().State.Msgs
}

// TestTriggerGoesToStandbyWhenTheTriggersStreamDoesNotTakeIt: with the
// standby on, a trigger goes to FLOWGATE_TRIGGERS while that answers; to
// the standby stream at once when no server answers for the triggers
// stream (no leader), and after StandbyAfter when the publish is not
// acknowledged; a stream that refuses (full) is not bypassed; and when
// neither stream takes it the publish fails as unavailable.
func TestTriggerGoesToStandbyWhenTheTriggersStreamDoesNotTakeIt(t *testing.T) {
	e, b := bustest.Bus(t, bus.Config{Source: "/test"})
	ctx := context.Background()
	js := b.JetStream()
	require.False(t, b.StandbyEnabled(), "one server: the standby is off")
	bus.ForceStandby(b, 300*time.Millisecond)
	require.True(t, b.StandbyEnabled())

	subject, ev := triggerEvent(t, "t1")
	res, err := b.Publish(ctx, subject, ev)
	require.NoError(t, err)
	require.Equal(t, bus.StreamTriggers, res.Stream, "the triggers stream answers: it takes the trigger")

	// Refused (full, discard new): back-pressure, not bypassed.
	s, err := js.Stream(ctx, bus.StreamTriggers)
	require.NoError(t, err)
	full := s.CachedInfo().Config
	full.MaxMsgs = 1
	_, err = js.UpdateStream(ctx, full)
	require.NoError(t, err)
	subject, ev = triggerEvent(t, "t2")
	_, err = b.Publish(ctx, subject, ev)
	require.ErrorIs(t, err, bus.ErrNotQueued)
	require.Zero(t, streamMessages(t, js, bus.StreamTriggersStandby), "a full stream's refusal is not bypassed")

	// No stream listens on the triggers' subjects: no responders.
	require.NoError(t, js.DeleteStream(ctx, bus.StreamTriggers))
	before := standbyCount(t, "no_responders")
	subject, ev = triggerEvent(t, "t3")
	res, err = b.Publish(ctx, subject, ev)
	require.NoError(t, err)
	require.Equal(t, bus.StreamTriggersStandby, res.Stream)
	require.Equal(t, before+1, standbyCount(t, "no_responders"))

	// Something takes the publish but never acknowledges it (a server
	// lost mid-request): the standby after StandbyAfter.
	nc := bustest.Connect(t, e)
	sub, err := nc.SubscribeSync(events.SubjectTrigger + ".>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	before = standbyCount(t, "no_ack")
	subject, ev = triggerEvent(t, "t4")
	start := time.Now()
	res, err = b.Publish(ctx, subject, ev)
	took := time.Since(start)
	require.NoError(t, err)
	require.Equal(t, bus.StreamTriggersStandby, res.Stream)
	require.Equal(t, before+1, standbyCount(t, "no_ack"))
	require.GreaterOrEqual(t, took, 300*time.Millisecond, "waited StandbyAfter for the acknowledgement")
	require.Less(t, took, 4*time.Second, "not the whole publish timeout (5 s)")
	got, err := sub.NextMsg(time.Second)
	require.NoError(t, err)
	require.Equal(t, "t4", got.Header.Get("ce-id"), "the first publish was sent")
	require.NoError(t, sub.Unsubscribe())

	// The same event again: the standby's duplicate window drops it.
	res, err = b.Publish(ctx, subject, ev)
	require.NoError(t, err)
	require.True(t, res.Duplicate)
	require.EqualValues(t, 2, streamMessages(t, js, bus.StreamTriggersStandby))

	// Neither stream: unavailable, and certainly not queued.
	require.NoError(t, js.DeleteStream(ctx, bus.StreamTriggersStandby))
	before = standbyCount(t, "failed")
	subject, ev = triggerEvent(t, "t5")
	_, err = b.Publish(ctx, subject, ev)
	require.ErrorIs(t, err, bus.ErrNotQueued)
	require.Equal(t, before+1, standbyCount(t, "failed"))

	// Other subjects never go to the standby.
	other, err := bus.NewEvent("o1", events.TypeInbound, "c1", map[string]string{})
	require.NoError(t, err)
	_, err = b.Publish(ctx, events.SubjectInbound+".bot1", other)
	require.NoError(t, err)
}

// TestTriggerStandbyOffOnOneServer: with one replica (one server) a
// trigger the triggers stream does not take is not published again.
func TestTriggerStandbyOffOnOneServer(t *testing.T) {
	_, b := bustest.Bus(t, bus.Config{Source: "/test"})
	ctx := context.Background()
	require.False(t, b.StandbyEnabled())
	require.NoError(t, b.KeepTriggerLeadersApart(ctx, time.Millisecond), "returns at once when the standby is off")
	require.NoError(t, b.JetStream().DeleteStream(ctx, bus.StreamTriggers))
	subject, ev := triggerEvent(t, "t1")
	_, err := b.Publish(ctx, subject, ev)
	require.ErrorIs(t, err, bus.ErrNotQueued)
	require.Zero(t, streamMessages(t, b.JetStream(), bus.StreamTriggersStandby))
}

// TestTriggerStandbyLedByAnotherServer: on a three-node cluster with
// replicated streams the standby is on, and when one server leads both
// triggers streams SpreadTriggerLeaders moves the standby's leadership to
// another server; when they are apart it does nothing.
func TestTriggerStandbyLedByAnotherServer(t *testing.T) {
	c := bustest.StartCluster(t, 3)
	nc := c.Connect(t)
	ctx := context.Background()
	b, err := newBus(t, nc, bus.Limits{Replicas: 3}, nil)
	require.NoError(t, err)
	require.True(t, b.StandbyEnabled(), "a replicated triggers stream has a standby")
	js := b.JetStream()

	leader := func(stream string) string {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return "" // the API may not answer while a leader changes
		}
		if ci := s.CachedInfo().Cluster; ci != nil {
			return ci.Leader
		}
		return ""
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("after 30 s: %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("both streams have a leader", func() bool { return leader(bus.StreamTriggers) != "" && leader(bus.StreamTriggersStandby) != "" })

	// One server leads both (as an election may leave them).
	primary := leader(bus.StreamTriggers)
	if leader(bus.StreamTriggersStandby) != primary {
		req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": primary}})
		_, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+bus.StreamTriggersStandby, req, 5*time.Second)
		require.NoError(t, err)
		waitFor("the standby led by "+primary, func() bool { return leader(bus.StreamTriggersStandby) == primary })
	}
	primary = leader(bus.StreamTriggers)
	require.Equal(t, primary, leader(bus.StreamTriggersStandby))

	moves := counterValue(t, "flowgate_bus_trigger_standby_leader_moves_total", nil)
	to, err := b.SpreadTriggerLeaders(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, to)
	require.NotEqual(t, primary, to)
	waitFor("the standby led by "+to, func() bool { return leader(bus.StreamTriggersStandby) == to })
	require.NotEqual(t, leader(bus.StreamTriggers), leader(bus.StreamTriggersStandby))
	require.Equal(t, moves+1, counterValue(t, "flowgate_bus_trigger_standby_leader_moves_total", nil))

	to, err = b.SpreadTriggerLeaders(ctx)
	require.NoError(t, err)
	require.Empty(t, to, "apart already: nothing asked")

	// And a trigger published while the triggers stream has no leader's
	// subscription (its stream gone) lands on the standby of this cluster.
	require.NoError(t, js.DeleteStream(ctx, bus.StreamTriggers))
	subject, ev := triggerEvent(t, "t1")
	res, err := b.Publish(ctx, subject, ev)
	require.NoError(t, err)
	require.Equal(t, bus.StreamTriggersStandby, res.Stream)
}
