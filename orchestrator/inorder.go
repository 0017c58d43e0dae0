package orchestrator

import (
	"context"
	"errors"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/store"
)

// In-place retries keep one contact's (or run's) messages in order. A step
// whose run another step holds (errRunClaimed) or that moved on since it
// was read (store.ErrVersionConflict) is retried here, in its worker, for
// up to inOrderFor, rather than handed back to JetStream: a message handed
// back comes again after a delay, and meanwhile the same contact's next
// message, queued behind it in the same worker (bus.ConsumeOptions.Key),
// would be handled first — a second reply resumed before the first. The
// other step usually finishes within milliseconds. A run held longer (a
// step whose process died keeps its claim for the lease) is handed back
// after inOrderFor, as before: the order is then no longer kept, but
// nothing is doubled (steps are idempotent and runs check versions).
const (
	inOrderFor      = time.Second
	inOrderFirst    = 10 * time.Millisecond
	inOrderMaxPause = 200 * time.Millisecond
)

// inOrder wraps a handler of messages keyed by contact or run with the
// in-place retries.
func inOrder(h bus.Handler) bus.Handler {
	return func(ctx context.Context, m bus.Message) error {
		pause, deadline := inOrderFirst, time.Now().Add(inOrderFor)
		for {
			err := h(ctx, m)
			if err == nil || !busyRun(err) || time.Now().Add(pause).After(deadline) {
				return err
			}
			inOrderRetries.Inc()
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
			pause = min(pause*2, inOrderMaxPause)
		}
	}
}

// busyRun reports a step refused because its run was busy with another
// step or moved on since it was read.
func busyRun(err error) bool {
	return errors.Is(err, errRunClaimed) || errors.Is(err, store.ErrVersionConflict)
}
