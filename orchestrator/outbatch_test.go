package orchestrator

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

func testBundles(bot, channel, lane string, n int) []outBundle {
	var bs []outBundle
	for i := range n {
		run := fmt.Sprintf("%s-%s-%s-%d", bot, channel, lane, i)
		bs = append(bs, outBundle{subject: events.OutboundSubject(channel, bot, lane), out: events.Outbound{
			BotID: bot, RunID: run, ContactID: "c-" + run, Channel: channel, To: "u" + run, Lane: lane,
			Messages: []events.OutboundMessage{{ID: run + ":1", Seq: 1}, {ID: run + ":2", Seq: 2}}}})
	}
	return bs
}

// The bundles of a commit share outbound messages only on an unpaced
// channel with idempotent sends (the sandbox), in either lane, one subject
// per message, at most maxBundlesPerMessage each, in the commit's order; a
// lone bundle and every bundle of a paced channel go alone, as they always
// have. Ids are
// the same for the same bundles (a replay is dropped by JetStream) and
// differ for others.
func TestOutboundBundlesShareMessagesOnUnpacedChannels(t *testing.T) {
	var bs []outBundle
	bs = append(bs, testBundles("a", events.ChannelSandbox, events.LaneHigh, 3)...)
	bs = append(bs, testBundles("a", events.ChannelWhatsApp, events.LaneHigh, 2)...)
	bs = append(bs, testBundles("a", events.ChannelSandbox, events.LaneBulk, 2)...)
	bs = append(bs, testBundles("b", events.ChannelSandbox, events.LaneHigh, maxBundlesPerMessage+8)...)
	bs = append(bs, testBundles("a", events.ChannelTelegram, events.LaneBulk, 2)...)
	status := bus.Outgoing{Subject: "flowgate.runs.a"}
	evs, err := appendOutbound([]bus.Outgoing{status}, bs)
	require.NoError(t, err)

	type got struct {
		subject, typ string
		runs         []string
	}
	var msgs []got
	for _, o := range evs[1:] {
		g := got{subject: o.Subject, typ: o.Event.Type()}
		if g.typ == events.TypeOutboundBatch {
			var b events.OutboundBatch
			require.NoError(t, json.Unmarshal(o.Event.Data(), &b))
			for _, out := range b.Bundles {
				require.Equal(t, o.Subject, events.OutboundSubject(out.Channel, out.BotID, out.Lane), "one subject per message")
				g.runs = append(g.runs, out.RunID)
			}
			require.Equal(t, b.Bundles[0].ContactID, o.Event.Subject())
		} else {
			var out events.Outbound
			require.NoError(t, json.Unmarshal(o.Event.Data(), &out))
			require.Equal(t, "out:"+out.Messages[0].ID, o.Event.ID(), "a bundle alone keeps its id")
			g.runs = []string{out.RunID}
		}
		msgs = append(msgs, g)
	}
	require.Equal(t, status, evs[0], "what was there stays first")
	runs := func(bot, channel, lane string, from, to int) []string {
		var ids []string
		for i := from; i < to; i++ {
			ids = append(ids, fmt.Sprintf("%s-%s-%s-%d", bot, channel, lane, i))
		}
		return ids
	}
	wa := events.OutboundSubject(events.ChannelWhatsApp, "a", events.LaneHigh)
	tg := events.OutboundSubject(events.ChannelTelegram, "a", events.LaneBulk)
	sb := events.OutboundSubject(events.ChannelSandbox, "a", events.LaneBulk)
	want := []got{
		{wa, events.TypeOutbound, runs("a", events.ChannelWhatsApp, events.LaneHigh, 0, 1)},
		{wa, events.TypeOutbound, runs("a", events.ChannelWhatsApp, events.LaneHigh, 1, 2)},
		{tg, events.TypeOutbound, runs("a", events.ChannelTelegram, events.LaneBulk, 0, 1)},
		{tg, events.TypeOutbound, runs("a", events.ChannelTelegram, events.LaneBulk, 1, 2)},
		{events.OutboundSubject(events.ChannelSandbox, "a", events.LaneHigh), events.TypeOutboundBatch, runs("a", events.ChannelSandbox, events.LaneHigh, 0, 3)},
		{sb, events.TypeOutboundBatch, runs("a", events.ChannelSandbox, events.LaneBulk, 0, 2)},
		{events.OutboundSubject(events.ChannelSandbox, "b", events.LaneHigh), events.TypeOutboundBatch, runs("b", events.ChannelSandbox, events.LaneHigh, 0, maxBundlesPerMessage)},
		{events.OutboundSubject(events.ChannelSandbox, "b", events.LaneHigh), events.TypeOutboundBatch, runs("b", events.ChannelSandbox, events.LaneHigh, maxBundlesPerMessage, maxBundlesPerMessage+8)},
	}
	require.Equal(t, want, msgs)

	again, err := appendOutbound(nil, bs)
	require.NoError(t, err)
	ids := map[string]bool{}
	for i, o := range again {
		require.Equal(t, evs[i+1].Event.ID(), o.Event.ID(), "the same bundles, the same ids")
		ids[o.Event.ID()] = true
	}
	require.Len(t, ids, len(again), "every message its own id")
	// Other bundles of the same runs (a later step) go under other ids.
	later := testBundles("a", events.ChannelSandbox, events.LaneHigh, 3)
	for i := range later {
		later[i].out.Messages = later[i].out.Messages[1:]
	}
	other, err := appendOutbound(nil, later)
	require.NoError(t, err)
	require.Len(t, other, 1)
	first := evs[1+slices.IndexFunc(msgs, func(g got) bool {
		return g.subject == events.OutboundSubject(events.ChannelSandbox, "a", events.LaneHigh)
	})]
	require.Equal(t, events.TypeOutboundBatch, first.Event.Type())
	require.NotEqual(t, first.Event.ID(), other[0].Event.ID())
}
