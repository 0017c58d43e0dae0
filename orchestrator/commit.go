package orchestrator

import (
	"context"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// pending is one run's slice, waiting to be committed.
type pending struct {
	run     store.Run // as read (or, new, as created); settled by commit
	contact store.Contact
	sl      slice
	prev    string // the run's status before the slice
	// trig is the trigger that starts the run (a batch's first steps).
	trig *events.Trigger
}

// runWriter stores the settled runs of a commit; it returns the indexes of
// the runs it did not write because they had changed (or, inserted, had
// come to exist) meanwhile.
type runWriter func(ctx context.Context, runs []store.Run) (lost map[int]bool, err error)

// commit is the one way a run's step leaves the orchestrator, for one run
// (a reply, a timer, a delivery result, a cancel) or for a batch (the first
// steps of a broadcast's or a dispatch's runs). Its effects are performed
// in this order, each for the whole batch at once:
//
//  1. the attributes the flows set, on the contacts (one write);
//  2. the messages, recorded (one InsertMessages);
//  3. the message bundles and the status changes, published (one
//     PublishAll: a run's bundle and its status change are on different
//     streams, so their order between each other does not matter; the
//     bundles of an unpaced channel share messages, appendOutbound);
//  4. the runs' new states, stored by write (version-checked updates, or
//     the inserts of runs that did not exist yet).
//
// Everything goes out before the state is stored, with deterministic ids
// (message ids name the run and the sequence, status events the run and
// its status number): if the process dies in between, the redelivered
// event replays the same step, JetStream drops the duplicate publishes and
// the channel worker skips messages it already sent. A run that changed
// meanwhile loses its version check and keeps what it became; commit
// reports it as lost, and its caller decides (a handler is retried, a
// batch leaves it).
func (o *Orchestrator) commit(ctx context.Context, ps []pending, write runWriter) (map[int]bool, error) {
	now := time.Now().UTC()
	var ups []store.ContactUpsert
	for _, p := range ps {
		if len(p.sl.attrs) > 0 {
			// NewID is the contact's own id: a contact deleted meanwhile
			// comes back as it was rather than failing the batch.
			ups = append(ups, store.ContactUpsert{BotID: p.contact.BotID, Channel: p.contact.Channel,
				ExternalID: p.contact.ExternalID, Attributes: p.sl.attrs, NewID: p.contact.ID, Now: now})
		}
	}
	if len(ups) > 0 {
		if _, err := o.store.UpsertContacts(ctx, ups); err != nil {
			return nil, err
		}
	}

	var recs []store.Message
	evs := make([]bus.Outgoing, 0, 2*len(ps))
	var bundles []outBundle
	for i := range ps {
		p := &ps[i]
		if len(p.sl.sends) == 0 {
			continue
		}
		var err error
		if recs, err = messageRecords(recs, p.run, p.contact, p.sl.sends, p.sl.lane, now); err != nil {
			return nil, err
		}
		bundles = append(bundles, outBundle{subject: events.OutboundSubject(p.run.Channel, p.run.BotID, p.sl.lane),
			out: outboundBundle(p.run, p.contact, p.sl.sends, p.sl.lane)})
	}
	evs, err := appendOutbound(evs, bundles)
	if err != nil {
		return nil, err
	}
	if len(recs) > 0 {
		if err := o.store.InsertMessages(ctx, recs); err != nil {
			return nil, err
		}
	}

	settled := make([]store.Run, len(ps))
	wants := map[string]bool{}
	for i := range ps {
		p := &ps[i]
		prev, err := settle(&p.run, &p.sl, now)
		if err != nil {
			return nil, err
		}
		p.prev = prev
		settled[i] = p.run
		if p.run.Status == prev {
			continue
		}
		want, known := wants[p.run.BotID]
		if !known {
			want = o.wantsStatus(ctx, p.run.BotID)
			wants[p.run.BotID] = want
		}
		if !want {
			statusEventsSkipped.Inc()
			continue
		}
		ev, err := statusEvent(p.run, prev, p.sl.state.StatusSeq)
		if err != nil {
			return nil, err
		}
		evs = append(evs, bus.Outgoing{Subject: events.RunStatusSubject(p.run.BotID), Event: ev})
	}
	if err := o.bus.PublishAll(ctx, evs); err != nil {
		return nil, err
	}
	for _, p := range ps {
		if n := len(p.sl.sends); n > 0 {
			messagesQueued.WithLabelValues(p.run.Channel).Add(float64(n))
			laneQueued.WithLabelValues(p.run.Channel, p.sl.lane).Add(float64(n))
		}
	}

	lost, err := write(ctx, settled)
	if err != nil {
		return nil, err
	}
	for i, p := range ps {
		if !lost[i] && p.run.Status != p.prev {
			runsByStatus.WithLabelValues(p.run.Status).Inc()
		}
	}
	return lost, nil
}

// updateRuns is the runWriter of runs that are stored already: one
// version-checked write.
func (o *Orchestrator) updateRuns(ctx context.Context, runs []store.Run) (map[int]bool, error) {
	conflicts, err := o.store.UpdateRuns(ctx, runs)
	if err != nil {
		return nil, err
	}
	lost := make(map[int]bool, len(conflicts))
	for _, i := range conflicts {
		lost[i] = true
	}
	return lost, nil
}
