package channel

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

// deliverBatch sends the bundles of an outbound batch message
// (events.OutboundBatch: the orchestrator's bundles of one commit for an
// unpaced channel, each for another contact), side by side, each as a
// message of its own would be sent. The message is acknowledged once every
// bundle is settled: sent, or, when its send failed, handed on alone, as
// the orchestrator would have published it (handOn), so that one bundle's
// fate never holds the others. While shutting down the whole message is
// given back; its redelivery skips the messages already sent.
func (r *Runner) deliverBatch(ctx context.Context, m bus.Message, bundles []events.Outbound, laneName string) error {
	errs := make([]error, len(bundles))
	var wg sync.WaitGroup
	for i, out := range bundles {
		if len(out.Messages) == 0 {
			continue // nothing to send
		}
		wg.Go(func() { errs[i] = r.deliver(ctx, m, out, laneName) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil && ctx.Err() != nil {
		return err
	}
	for i, err := range errs {
		if err == nil {
			continue
		}
		if herr := r.handOn(ctx, m, bundles[i], err); herr != nil {
			// The message comes back: the bundles handed on already are
			// handed on again under the same ids (dropped by JetStream),
			// the ones sent are skipped.
			return herr
		}
	}
	return nil
}

// handOn gives a batch's bundle whose send failed with err a message of its
// own: dead-lettered at once after a permanent failure (deliver reported
// its messages as failed, as for a bundle alone), published alone on the
// lane after any other failure, where the retry rules of a bundle alone
// (capped backoff, the provider's retry-after, never a dead letter for a
// transient failure) take over; after a retry-after, it is held back until
// the time the provider gave. Its id is the one the orchestrator gives a
// bundle alone, so doing this twice keeps one.
func (r *Runner) handOn(ctx context.Context, m bus.Message, out events.Outbound, cause error) error {
	ev, err := bus.OutboundEvent(out)
	if err != nil {
		return err
	}
	ev.SetTime(m.Event.Time()) // its queueing time stays the batch's
	var later *bus.RetryAfterError
	if errors.As(cause, &later) && later.Wait > 0 {
		// The provider said when: the bundle alone waits for it
		// (bus.ExtNotBefore), where a new message would be sent at once.
		bus.SetNotBefore(&ev, time.Now().Add(later.Wait))
	}
	if perm := (*bus.PermanentError)(nil); errors.As(cause, &perm) {
		if err := r.bus.DeadLetterPart(ctx, m, ev, cause); err != nil {
			return err
		}
		handedOn.WithLabelValues(r.sender.Channel(), "dead_letter").Inc()
		return nil
	}
	if _, err := r.bus.Publish(ctx, m.Subject, ev); err != nil {
		return err
	}
	handedOn.WithLabelValues(r.sender.Channel(), "retry").Inc()
	r.log.Warn("a bundle of a batch failed; handed on alone to be retried", "bot", out.BotID, "run", out.RunID, "err", cause)
	return nil
}
