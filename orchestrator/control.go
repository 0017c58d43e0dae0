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

// handleControl applies a run command (cancel) through the interpreter, so
// a cancelled run's state, history and status event are like any other.
func (o *Orchestrator) handleControl(ctx context.Context, m bus.Message) error {
	var cmd events.RunCommand
	if err := json.Unmarshal(m.Event.Data(), &cmd); err != nil {
		return bus.Permanent(fmt.Errorf("run command payload: %w", err))
	}
	if cmd.Command != "cancel" {
		return bus.Permanent(fmt.Errorf("unknown run command %q", cmd.Command))
	}
	run, err := o.store.GetRun(ctx, cmd.BotID, cmd.RunID)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return nil
	}
	if err != nil {
		return err
	}
	if store.RunFinal(run.Status) {
		return nil
	}
	reason := cmd.Reason
	if reason == "" {
		reason = "cancelled through the API"
	}
	st, err := decodeState(run)
	if err != nil || st.Flow.Status == "" {
		// The flow has not started (created, queued, or waiting for the
		// WhatsApp window to open): there is no interpreter state to cancel.
		return o.endRun(ctx, run, store.RunCancelled, reason)
	}
	contact, err := o.store.GetContact(ctx, run.BotID, run.ContactID)
	if err != nil {
		return err
	}
	return o.advanceFrom(ctx, run, contact, st, flow.Cancel{Now: time.Now().UTC(), Reason: reason})
}

// endRun moves a run that never started to a final status.
func (o *Orchestrator) endRun(ctx context.Context, run store.Run, status, reason string) error {
	prev := run.Status
	st, _ := decodeState(run)
	st.StatusSeq++
	raw, err := json.Marshal(st)
	if err != nil {
		return bus.Permanent(err)
	}
	run.State, run.Status, run.Error, run.WaitUntil = raw, status, reason, nil
	run.UpdatedAt = time.Now().UTC()
	return o.storeRun(ctx, run, prev, st.StatusSeq)
}
