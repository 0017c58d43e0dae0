package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// stallWait is how long PublishAll waits for room when the client already
// has its maximum of unacknowledged publishes in flight.
const stallWait = 5 * time.Second

// Outgoing is one event of a PublishAll.
type Outgoing struct {
	Subject string
	Event   cloudevents.Event
}

// PublishAll publishes every event and waits until JetStream acknowledged
// all of them: when it returns nil, all are durable. The events are sent
// without waiting for each other's acknowledgements (one round trip for
// the whole batch instead of one per event); JetStream keeps the order of
// the publishes within each subject.
//
// Events whose publish failed for a reason that passes by itself (the
// connection lost under them, no server answering, an earlier copy still
// being stored: see publishAgain) are published again, the failed ones
// only, within the bus's retry wait (Config.RetryWait) of the first try.
//
// On an error some events may be durable and others not: the caller
// retries the whole batch, and the deterministic event ids make JetStream
// drop the copies of those that were stored.
func (b *Bus) PublishAll(ctx context.Context, evs []Outgoing) error {
	if len(evs) == 0 {
		return nil
	}
	msgs := make([]*nats.Msg, len(evs))
	for i, o := range evs {
		e := o.Event
		if e.Source() == "" {
			setSource(&e, b.source)
		}
		if err := validate(e); err != nil {
			return fmt.Errorf("bus: invalid event %q: %w", e.ID(), err)
		}
		msgs[i] = toMsg(o.Subject, e, MsgID(e.ID()))
	}
	start := time.Now()
	reconnects := b.nc.Stats().Reconnects
	failed, errs := b.publishTry(ctx, msgs)
	worst := strongest(errs) // of every try, as Publish reports it
	why := ""                // the first try's reason, which the metric counts
	for len(failed) > 0 {
		reason := b.retryAllReason(errs, reconnects)
		if why == "" {
			why = reason
		}
		if !b.waitToRetry(ctx, reason, start) {
			break
		}
		reconnects = b.nc.Stats().Reconnects
		again := make([]*nats.Msg, len(failed))
		for j, i := range failed {
			again[j] = msgs[i]
		}
		stillFailed, stillErrs := b.publishTry(ctx, again)
		if len(stillFailed) == 0 {
			publishRetries.WithLabelValues(why).Add(float64(len(failed)))
			return nil
		}
		for j, k := range stillFailed {
			stillFailed[j] = failed[k]
		}
		failed, errs = stillFailed, stillErrs
		if err := strongest(errs); errors.Is(err, ErrOutcomeUnknown) || !errors.Is(worst, ErrOutcomeUnknown) {
			worst = err
		}
	}
	return worst
}

// retryAllReason is retryReason for the failures of one publishMsgs: ""
// when any of them will not pass by itself (trying the others again is
// vain: the caller retries the whole batch), retryReconnect when any needs
// the connection back, else the first's reason.
func (b *Bus) retryAllReason(errs []error, reconnects uint64) string {
	reason := ""
	for _, err := range errs {
		switch r := b.retryReason(err, reconnects); {
		case r == "":
			return ""
		case r == retryReconnect || reason == "":
			reason = r
		}
	}
	return reason
}

// strongest is the error to report for failed publishes: an
// ErrOutcomeUnknown when one of them may have been stored, else the first.
func strongest(errs []error) error {
	for _, err := range errs {
		if errors.Is(err, ErrOutcomeUnknown) {
			return err
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}

// publishTry is one try of PublishAll: publishMsgs, bounded by the bus's
// publish timeout when ctx has no deadline (each try on its own, as each
// try of Publish is: the tries together are bounded by the retry wait).
func (b *Bus) publishTry(ctx context.Context, msgs []*nats.Msg) ([]int, []error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.timeout)
		defer cancel()
	}
	return b.publishMsgs(ctx, msgs)
}

// publishMsgs publishes msgs asynchronously and waits for every
// acknowledgement; it returns the indexes of the messages that failed, in
// order, and their errors (classified).
func (b *Bus) publishMsgs(ctx context.Context, msgs []*nats.Msg) ([]int, []error) {
	futs := make([]jetstream.PubAckFuture, 0, len(msgs))
	var failed []int
	var errs []error
	for i, m := range msgs {
		fut, err := b.js.PublishMsgAsync(m, jetstream.WithStallWait(stallWait))
		if err != nil {
			publishErrors.WithLabelValues(streamOf(m.Subject)).Inc()
			// Nothing after this one is sent: they fail alike.
			err = classifyPublishError(err)
			for j := i; j < len(msgs); j++ {
				failed, errs = append(failed, j), append(errs, err)
			}
			break
		}
		futs = append(futs, fut)
	}
	// Wait for every publish that went out, also after an error: nothing is
	// left in flight when this returns.
	var late []int
	var lateErrs []error
	for i, fut := range futs {
		var err error
		select {
		case ack := <-fut.Ok():
			published.WithLabelValues(ack.Stream, strconv.FormatBool(ack.Duplicate)).Inc()
			continue
		case err = <-fut.Err():
		case <-ctx.Done():
			err = ctx.Err()
		}
		publishErrors.WithLabelValues(streamOf(msgs[i].Subject)).Inc()
		late, lateErrs = append(late, i), append(lateErrs, classifyPublishError(err))
	}
	// The futures come before the messages never sent.
	return append(late, failed...), append(lateErrs, errs...)
}
