package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// handleInbound resumes the contact's waiting run with the user's message.
func (o *Orchestrator) handleInbound(ctx context.Context, m bus.Message) error {
	var in events.Inbound
	if err := json.Unmarshal(m.Event.Data(), &in); err != nil {
		return bus.Permanent(fmt.Errorf("inbound payload: %w", err))
	}
	if in.BotID == "" || in.Channel == "" || in.From == "" {
		return bus.Permanent(errors.New("inbound message without bot, channel or sender"))
	}
	at := in.ReceivedAt
	if at.IsZero() {
		at = time.Now().UTC()
	}
	contact, _, err := o.store.UpsertContact(ctx, store.ContactUpsert{
		BotID: in.BotID, Channel: in.Channel, ExternalID: in.From, Name: in.Name,
		LastInboundAt: &at, NewID: store.NewContactID(), Now: time.Now().UTC(),
	})
	if err != nil {
		return err
	}
	inboundMessages.WithLabelValues(in.Channel).Inc()
	runs, _, err := o.store.ListRuns(ctx, store.RunFilter{BotID: in.BotID, ContactID: contact.ID, Status: store.RunWaiting, Limit: 10})
	if err != nil {
		return err
	}
	for _, run := range runs {
		if run.Channel != in.Channel {
			continue
		}
		st, err := decodeState(run)
		if err != nil {
			st, ev := corrupt(run, err, nil)
			return o.advanceFrom(ctx, stepName("inbound", m.Event.ID()), run, contact, st, ev)
		}
		if !st.rememberReply(in.ProviderMessageID) {
			return nil // a provider's retry of a reply already applied
		}
		now := time.Now().UTC()
		var ev flow.Event
		switch {
		case st.Flow.Status == flow.StatusWaiting && st.Flow.WaitingFor == flow.WaitWindow:
			// The contact answered the initial template: the window is
			// open, the flow starts now and may send free-form messages.
			ev = flow.Start{
				Now: now, RunID: run.ID, Data: run.Data,
				Contact: flow.Contact{ID: contact.ID, Name: contact.Name, ExternalID: contact.ExternalID,
					Channel: contact.Channel, Attributes: contact.Attributes, LastRequest: contact.LastRequest},
			}
		case in.FlowToken != "":
			if st.Flow.WaitingFor != flow.WaitFlowCompletion || st.Flow.FlowToken != in.FlowToken {
				continue // not this run's Flow
			}
			ev = flow.FlowCompleted{Now: now, FlowToken: in.FlowToken, Data: in.FlowResponse}
		case st.Flow.WaitingFor == flow.WaitReply:
			ev = flow.Reply{Now: now, Text: in.Text, ButtonID: in.ButtonID}
		default:
			continue // waiting for a timer: a message does not resume it
		}
		return o.advanceFrom(ctx, stepName("inbound", m.Event.ID()), run, contact, st, ev)
	}
	return nil
}
