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
// trigger the triggers stream does not take is not published again, and
// the standby stays off; configured off (StandbyAfter < 0), the leaders'
// keeper returns at once.
func TestTriggerStandbyOffOnOneServer(t *testing.T) {
	e, b := bustest.Bus(t, bus.Config{Source: "/test"})
	ctx := context.Background()
	require.False(t, b.StandbyEnabled())
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	require.NoError(t, b.KeepTriggerLeadersApart(short, 10*time.Millisecond))
	require.False(t, b.StandbyEnabled(), "one replica: still off")

	off := bustest.NewBus(t, e, bus.Config{Source: "/test", StandbyAfter: -1})
	done := make(chan error, 1)
	go func() { done <- off.KeepTriggerLeadersApart(ctx, time.Millisecond) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("configured off, the keeper did not return")
	}

	require.NoError(t, b.JetStream().DeleteStream(ctx, bus.StreamTriggers))
	subject, ev := triggerEvent(t, "t1")
	_, err := b.Publish(ctx, subject, ev)
	require.ErrorIs(t, err, bus.ErrNotQueued)
	require.Zero(t, streamMessages(t, b.JetStream(), bus.StreamTriggersStandby))
}

// TestTriggerStandbyLedByAnotherServer: on a three-node cluster, a bus
// started while the streams had one replica switches the standby on once
// an operator raises them to three (no restart), and keeps the standby's
// leader off the server that leads the triggers stream: when one server
// leads both, the standby's leadership is moved to another; when they are
// apart nothing is asked. A trigger the triggers stream does not take
// then lands on the standby.
func TestTriggerStandbyLedByAnotherServer(t *testing.T) {
	c := bustest.StartCluster(t, 3)
	nc := c.Connect(t)
	ctx := context.Background()
	b, err := newBus(t, nc, bus.Limits{Replicas: 1}, nil)
	require.NoError(t, err)
	require.False(t, b.StandbyEnabled(), "one replica: off")
	js := b.JetStream()

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
	// The operator raises both triggers streams to R3.
	for _, name := range []string{bus.StreamTriggers, bus.StreamTriggersStandby} {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		cfg.Replicas = 3
		_, err = js.UpdateStream(ctx, cfg)
		require.NoError(t, err)
	}
	keep, stopKeeping := context.WithCancel(ctx)
	kept := make(chan error, 1)
	go func() { kept <- b.KeepTriggerLeadersApart(keep, 100*time.Millisecond) }()
	waitFor("the standby switched on", b.StandbyEnabled)

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
	waitFor("both streams have a leader", func() bool { return leader(bus.StreamTriggers) != "" && leader(bus.StreamTriggersStandby) != "" })
	waitFor("the leaders apart", func() bool { return leader(bus.StreamTriggers) != leader(bus.StreamTriggersStandby) })

	// One server comes to lead both (as an election may leave them): the
	// keeper moves the standby's leadership away.
	stopKeeping()
	require.NoError(t, <-kept)
	moves := counterValue(t, "flowgate_bus_trigger_standby_leader_moves_total", nil)
	primary := leader(bus.StreamTriggers)
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": primary}})
	// The API may not answer (or refuse) while the cluster is busy with a
	// leader change: ask until the standby is led by primary.
	waitFor("the standby led by "+primary, func() bool {
		if leader(bus.StreamTriggersStandby) == primary {
			return true
		}
		_, _ = nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+bus.StreamTriggersStandby, req, 2*time.Second)
		return leader(bus.StreamTriggersStandby) == primary
	})
	keep, stopKeeping = context.WithCancel(ctx)
	go func() { kept <- b.KeepTriggerLeadersApart(keep, 100*time.Millisecond) }()
	waitFor("the keeper moved the standby's leadership", func() bool {
		return counterValue(t, "flowgate_bus_trigger_standby_leader_moves_total", nil) > moves
	})
	waitFor("the leaders apart again", func() bool {
		p, s := leader(bus.StreamTriggers), leader(bus.StreamTriggersStandby)
		return p != "" && s != "" && p != s
	})
	stopKeeping()
	require.NoError(t, <-kept)

	var to string
	waitFor("a check of the leaders answered", func() bool {
		to, err = b.SpreadTriggerLeaders(ctx)
		return err == nil
	})
	require.Empty(t, to, "apart already: nothing asked")

	// A trigger the triggers stream does not take (here: no stream
	// answers its subject) lands on the standby of this cluster.
	require.NoError(t, js.DeleteStream(ctx, bus.StreamTriggers))
	subject, ev := triggerEvent(t, "t1")
	res, err := b.Publish(ctx, subject, ev)
	require.NoError(t, err)
	require.Equal(t, bus.StreamTriggersStandby, res.Stream)
}
