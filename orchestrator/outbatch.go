package orchestrator

import (
	"crypto/sha256"
	"encoding/hex"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
)

// maxBundlesPerMessage bounds the bundles one outbound message carries: a
// channel worker holds a message until every bundle in it is sent, so a
// killed worker strands at most this many per message until AckWait.
const maxBundlesPerMessage = 32

// outBundle is one run's bundle of a commit, for its outbound subject.
type outBundle struct {
	subject string
	out     events.Outbound
}

// batchesBundles reports whether a channel's bundles may share outbound
// messages. Only on an unpaced channel (the sandbox), whose sends are bound
// by what a JetStream message costs: a paced channel's sends are bound by
// its account's pace (tens per second), its worker sizes what it fetches
// in messages by that pace, and a broadcast's back-pressure (lanes.go)
// counts its bulk lane in messages. Only with idempotent sends: a bundle
// the worker handed on alone (channel.Runner's handOn) may be handled
// twice side by side. In both lanes: a commit holds several runs' bundles
// only when it starts them (the one-user triggers started together, in
// the high lane; a broadcast's batch, in the bulk lane, which an unpaced
// channel never holds back), so nothing of the same run is queued before
// them.
func batchesBundles(channel string) bool {
	p, ok := provider.Lookup(channel)
	return ok && p.Rate <= 0 && p.Capabilities.IdempotentSends
}

// appendOutbound appends a commit's bundles to evs as outbound messages.
// A bundle goes alone (events.TypeOutbound, id out:<first message id>),
// except where several of one commit share a subject that batchesBundles
// allows: those go together, up to maxBundlesPerMessage per
// events.TypeOutboundBatch message, one JetStream write and one ack for
// all of them. A batch's id is a hash of its bundles' ids, so a replay of
// the same commit publishes the same ids and JetStream drops them; a
// replay that groups differently (a batch redone run by run) publishes
// other ids, and the worker skips the messages already sent, as it does
// for any redelivered bundle.
func appendOutbound(evs []bus.Outgoing, bs []outBundle) ([]bus.Outgoing, error) {
	var order []string
	groups := map[string][]events.Outbound{}
	batches := map[string]bool{} // by subject
	for _, b := range bs {
		batched, known := batches[b.subject]
		if !known {
			batched = batchesBundles(b.out.Channel)
			batches[b.subject] = batched
		}
		if !batched {
			ev, err := bus.OutboundEvent(b.out)
			if err != nil {
				return nil, err
			}
			evs = append(evs, bus.Outgoing{Subject: b.subject, Event: ev})
			continue
		}
		if _, ok := groups[b.subject]; !ok {
			order = append(order, b.subject)
		}
		groups[b.subject] = append(groups[b.subject], b.out)
	}
	for _, subject := range order {
		g := groups[subject]
		for len(g) > 0 {
			n := min(len(g), maxBundlesPerMessage)
			ev, err := outboundMessage(g[:n])
			if err != nil {
				return nil, err
			}
			evs = append(evs, bus.Outgoing{Subject: subject, Event: ev})
			g = g[n:]
		}
	}
	return evs, nil
}

// outboundMessage is one outbound message carrying bundles: the bundle's
// own message when alone, else a batch.
func outboundMessage(bundles []events.Outbound) (cloudevents.Event, error) {
	if len(bundles) == 1 {
		return bus.OutboundEvent(bundles[0])
	}
	h := sha256.New()
	for _, b := range bundles {
		h.Write([]byte(b.Messages[0].ID))
		h.Write([]byte{'\n'})
	}
	id := "outs:" + hex.EncodeToString(h.Sum(nil)[:20])
	ev, err := bus.NewEvent(id, events.TypeOutboundBatch, bundles[0].ContactID, events.OutboundBatch{Bundles: bundles})
	if err != nil {
		return ev, bus.Permanent(err)
	}
	return ev, nil
}
