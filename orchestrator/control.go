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
	// A cancel carries no message and sets no attribute: the run's contact
	// is not read. A run that has not started (created, queued) or waits
	// for the WhatsApp window is cancelled by the interpreter like any
	// other.
	return o.advance(ctx, stepName("control", m.Event.ID()), run, store.Contact{ID: run.ContactID, BotID: run.BotID, Channel: run.Channel},
		flow.Cancel{Now: time.Now().UTC(), Reason: reason})
}
