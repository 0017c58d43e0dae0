package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

// PublishAll stores every event before it returns, in order per subject,
// and a replay of the same batch is dropped by the duplicate window.
func TestPublishAllIsDurableOrderedAndDeduplicated(t *testing.T) {
	_, b := start(t)
	ctx := context.Background()
	var evs []bus.Outgoing
	for i := range 3000 {
		ev, err := bus.NewEvent(fmt.Sprintf("out:r%d:1", i), events.TypeOutbound, "c", map[string]int{"i": i})
		require.NoError(t, err)
		evs = append(evs, bus.Outgoing{Subject: events.OutboundSubject("sandbox", fmt.Sprintf("bot%d", i%3), events.LaneBulk), Event: ev})
	}
	require.NoError(t, b.PublishAll(ctx, evs))
	st, err := b.JetStream().Stream(ctx, bus.StreamOutbound)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3000, info.State.Msgs, "every event durable when PublishAll returned")
	last := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		require.NoError(t, err)
		e, err := bus.FromMsg(m.Header, m.Data)
		require.NoError(t, err)
		var d struct{ I int }
		require.NoError(t, e.DataAs(&d))
		if prev, ok := last[m.Subject]; ok {
			require.Greater(t, d.I, prev, "order kept within %s", m.Subject)
		}
		last[m.Subject] = d.I
	}

	require.NoError(t, b.PublishAll(ctx, evs[:1000]), "a replay")
	info, err = st.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3000, info.State.Msgs, "the replayed events were dropped as duplicates")
	require.NoError(t, b.PublishAll(ctx, nil))
}

// An invalid event fails the batch before anything is sent.
func TestPublishAllRefusesAnInvalidEvent(t *testing.T) {
	_, b := start(t)
	ctx := context.Background()
	good, err := bus.NewEvent("out:ok:1", events.TypeOutbound, "c", map[string]int{"i": 1})
	require.NoError(t, err)
	bad := good.Clone()
	bad.SetID("")
	err = b.PublishAll(ctx, []bus.Outgoing{
		{Subject: events.OutboundSubject("sandbox", "acme", events.LaneHigh), Event: good},
		{Subject: events.OutboundSubject("sandbox", "acme", events.LaneHigh), Event: bad},
	})
	require.ErrorContains(t, err, "invalid event")
	st, err := b.JetStream().Stream(ctx, bus.StreamOutbound)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs, "every event is checked before any is sent: nothing half done")
}

// With NATS gone nothing is durable: the error is ErrUnavailable (the
// caller's message is retried later).
func TestPublishAllWithoutNATSIsUnavailable(t *testing.T) {
	e, b := start(t)
	ev, err := bus.NewEvent("out:x:1", events.TypeOutbound, "c", map[string]int{"i": 1})
	require.NoError(t, err)
	e.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = b.PublishAll(ctx, []bus.Outgoing{{Subject: events.OutboundSubject("sandbox", "acme", events.LaneHigh), Event: ev}})
	require.ErrorIs(t, err, bus.ErrUnavailable)
}
