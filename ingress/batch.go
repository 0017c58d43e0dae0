package ingress

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

// triggerBatcher is the ingress's group commit. JetStream with
// sync_interval: always (as deployed) fsyncs every stored message, and one
// trigger per message made the front door as slow as the disk: triggers
// that arrive while a publish is in flight are published together, as one
// TypeTriggerBatch message, when it returns. No trigger waits on a timer:
// a lone trigger is published at once, as a trigger.accepted message of
// its own; only a queue that formed behind a publish becomes a batch. Each
// request is answered with the outcome of the message that carried its
// trigger (202 once JetStream stored it).
//
// The queue is shared by every bot, so that a service many bots share
// batches as well as one bot does: with a queue per bot, requests spread
// over 32 bots went out one trigger per message, at a third of one bot's
// rate (docs/performance.md). A batch takes the bots' triggers in turn,
// one of each bot waiting, then again, so that a bot with thousands of
// triggers queued does not keep another bot's trigger out of the next
// message: that one waits for at most the message in flight.
//
// Only triggers whose id the ingress generated are batched: no retry of
// them can exist, so they need no de-duplication. A trigger with an
// Idempotency-Key (or a CloudEvent, keyed by its producer) is published
// alone, with its id as the Nats-Msg-Id, so that JetStream's window
// catches a retry and the answer says "duplicate" (batch.go's caller).
type triggerBatcher struct {
	bus      Publisher
	max      int // triggers per message
	maxBytes int // encoded triggers per message

	mu sync.Mutex
	// busy: a message is being published (by a request, or by the
	// goroutine that goes on while triggers wait).
	busy bool
	// bots holds each bot's triggers waiting, in arrival order; turns the
	// bots with triggers waiting, the next to serve first.
	bots  map[string][]*queuedTrigger
	turns []string
}

type queuedTrigger struct {
	t    *events.Trigger
	raw  []byte
	done chan error // buffered: the flusher never blocks on it
}

// maxBatchedTrigger is the largest encoded trigger that is batched (a
// larger one, a long users list, goes alone).
const maxBatchedTrigger = 16 << 10

func newTriggerBatcher(b Publisher, max int) *triggerBatcher {
	return &triggerBatcher{bus: b, max: max, maxBytes: 512 << 10, bots: map[string][]*queuedTrigger{}}
}

// publish publishes t (encoded as raw) with the triggers that are waiting
// too, and returns the outcome of the message that carried it. A request
// whose ctx ends first gets ctx's error: its trigger may still be
// published (the caller answers outcome unknown).
func (b *triggerBatcher) publish(ctx context.Context, t *events.Trigger, raw []byte) error {
	q := &queuedTrigger{t: t, raw: raw, done: make(chan error, 1)}
	b.mu.Lock()
	waiting, ok := b.bots[t.BotID]
	if !ok {
		b.turns = append(b.turns, t.BotID)
	}
	b.bots[t.BotID] = append(waiting, q)
	triggersWaiting.Inc()
	lead := !b.busy
	b.busy = true
	b.mu.Unlock()
	if lead {
		// Let the requests that are being read join this message: after a
		// message's requests are answered, their clients' next requests
		// arrive together, and the first of them would otherwise go out
		// alone, its followers queued behind it (bench/e2e: 69-78 % of the
		// messages carried one trigger; with the yield 13-19 %). A yield,
		// not a timer: a lone request on an idle ingress goes out at once.
		runtime.Gosched()
		b.flush()
	}
	select {
	case err := <-q.done:
		return err
	case <-ctx.Done():
		// The trigger may still be published with the others.
		return fmt.Errorf("%w: %w", bus.ErrOutcomeUnknown, ctx.Err())
	}
}

// flush publishes the waiting triggers, one message at a time, until none
// wait. The first message is published by the request that found the
// batcher idle (its own trigger is in it); the following ones by a
// goroutine, so that no request waits for other requests' triggers.
func (b *triggerBatcher) flush() {
	b.mu.Lock()
	batch := b.take()
	b.mu.Unlock()

	err := b.send(batch)
	for _, q := range batch {
		q.done <- err
	}

	b.mu.Lock()
	more := len(b.turns) > 0
	if !more {
		b.busy = false
	}
	b.mu.Unlock()
	if more {
		go b.flush()
	}
}

// take removes the next message's triggers from the queue (b.mu held): at
// most max triggers and maxBytes (one at least), the bots in turn, one
// trigger of each at a time; a bot that still has triggers waiting goes
// to the back of the turns.
func (b *triggerBatcher) take() []*queuedTrigger {
	var batch []*queuedTrigger
	size := 0
	for len(b.turns) > 0 && len(batch) < b.max {
		bot := b.turns[0]
		waiting := b.bots[bot]
		q := waiting[0]
		if len(batch) > 0 && size+len(q.raw) > b.maxBytes {
			break
		}
		batch = append(batch, q)
		size += len(q.raw)
		waiting[0] = nil
		b.turns = b.turns[1:]
		if len(waiting) > 1 {
			b.bots[bot] = waiting[1:]
			b.turns = append(b.turns, bot)
		} else {
			delete(b.bots, bot) // a bot that went quiet holds nothing
		}
	}
	if len(b.turns) == 0 {
		b.turns = nil // let the array go
	}
	triggersWaiting.Sub(float64(len(batch)))
	return batch
}

// send publishes one message: a lone trigger as trigger.accepted, several
// as a trigger batch, on the bot's subject when they are all of one bot.
func (b *triggerBatcher) send(batch []*queuedTrigger) error {
	ctx := context.Background() // bounded by the bus's publish timeout
	botID := batch[0].t.BotID
	if len(batch) == 1 {
		_, err := b.bus.Publish(ctx, events.TriggerSubject(botID), rawEvent(batch[0].t.ID, events.TypeTriggerAccepted, botID, batch[0].t.AcceptedAt, batch[0].raw))
		triggerMessages.WithLabelValues("single").Inc()
		return err
	}
	subject := events.TriggerSubject(botID)
	size := len(`{"triggers":[]}`) + len(batch)
	for _, q := range batch {
		size += len(q.raw)
		if q.t.BotID != botID {
			botID, subject = "", events.SubjectTriggerBots
		}
	}
	data := make([]byte, 0, size)
	data = append(data, `{"triggers":[`...)
	for i, q := range batch {
		if i > 0 {
			data = append(data, ',')
		}
		data = append(data, q.raw...)
	}
	data = append(data, "]}"...)
	_, err := b.bus.Publish(ctx, subject, rawEvent("batch:"+batch[0].t.ID, events.TypeTriggerBatch, botID, batch[0].t.AcceptedAt, data))
	kind := "batch"
	if botID == "" {
		kind = "batch_bots"
	}
	triggerMessages.WithLabelValues(kind).Inc()
	batchedTriggers.Add(float64(len(batch)))
	return err
}

// rawEvent is a CloudEvent with an encoded JSON payload, in one
// allocation for the context and what its pointers point at.
func rawEvent(id, typ, subject string, at time.Time, data []byte) cloudevents.Event {
	x := &struct {
		ec          cloudevents.EventContextV1
		subject, ct string
		time        types.Timestamp
	}{subject: subject, ct: jsonContentType, time: types.Timestamp{Time: at}}
	x.ec = cloudevents.EventContextV1{
		ID: id, Type: typ, Subject: &x.subject, Time: &x.time, DataContentType: &x.ct,
	}
	if subject == "" {
		x.ec.Subject = nil // a batch of several bots' triggers
	}
	return cloudevents.Event{Context: &x.ec, DataEncoded: data}
}
