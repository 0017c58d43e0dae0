package bus

import (
	"context"
	"fmt"
	"strconv"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
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
// On an error some events may be durable and others not: the caller
// retries the whole batch, and the deterministic event ids make JetStream
// drop the copies of those that were stored.
func (b *Bus) PublishAll(ctx context.Context, evs []Outgoing) error {
	if len(evs) == 0 {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.timeout)
		defer cancel()
	}
	futs := make([]jetstream.PubAckFuture, 0, len(evs))
	var first error
	for _, o := range evs {
		e := o.Event
		if e.Source() == "" {
			setSource(&e, b.source)
		}
		if err := validate(e); err != nil {
			first = fmt.Errorf("bus: invalid event %q: %w", e.ID(), err)
			break
		}
		fut, err := b.js.PublishMsgAsync(toMsg(o.Subject, e, MsgID(e.ID())), jetstream.WithStallWait(stallWait))
		if err != nil {
			publishErrors.WithLabelValues(streamOf(o.Subject)).Inc()
			first = classifyPublishError(err)
			break
		}
		futs = append(futs, fut)
	}
	// Wait for every publish that went out, also after an error: nothing is
	// left in flight when this returns.
	for i, fut := range futs {
		select {
		case ack := <-fut.Ok():
			published.WithLabelValues(ack.Stream, strconv.FormatBool(ack.Duplicate)).Inc()
		case err := <-fut.Err():
			publishErrors.WithLabelValues(streamOf(evs[i].Subject)).Inc()
			if first == nil {
				first = classifyPublishError(err)
			}
		case <-ctx.Done():
			publishErrors.WithLabelValues(streamOf(evs[i].Subject)).Inc()
			if first == nil {
				first = classifyPublishError(ctx.Err())
			}
		}
	}
	return first
}
