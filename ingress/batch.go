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
// trigger per message made the front door as slow as the disk: triggers of
// one bot that arrive while a publish of that bot is in flight are
// published together, as one TypeTriggerBatch message, when it returns.
// No trigger waits on a timer: a lone trigger is published at once, as a
// trigger.accepted message of its own; only a queue that formed behind a
// publish becomes a batch. Each request is answered with the outcome of
// the message that carried its trigger (202 once JetStream stored it).
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

	mu   sync.Mutex
	bots map[string]*botQueue
}

// botQueue is one bot's triggers waiting for the publish in flight.
type botQueue struct {
	busy    bool
	waiting []*queuedTrigger
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
	return &triggerBatcher{bus: b, max: max, maxBytes: 512 << 10, bots: map[string]*botQueue{}}
}

// publish publishes t (encoded as raw) with the triggers of its bot that
// are waiting too, and returns the outcome of the message that carried it.
// A request whose ctx ends first gets ctx's error: its trigger may still be
// published (the caller answers outcome unknown).
func (b *triggerBatcher) publish(ctx context.Context, t *events.Trigger, raw []byte) error {
	q := &queuedTrigger{t: t, raw: raw, done: make(chan error, 1)}
	b.mu.Lock()
	bq := b.bots[t.BotID]
	if bq == nil {
		bq = &botQueue{}
		b.bots[t.BotID] = bq
	}
	bq.waiting = append(bq.waiting, q)
	triggersWaiting.Inc()
	lead := !bq.busy
	bq.busy = true
	b.mu.Unlock()
	if lead {
		// Let the requests that are being read join this message: after a
		// message's requests are answered, their clients' next requests
		// arrive together, and the first of them would otherwise go out
		// alone, its followers queued behind it (bench/e2e: 69-78 % of the
		// messages carried one trigger; with the yield 13-19 %). A yield,
		// not a timer: a lone request on an idle ingress goes out at once.
		runtime.Gosched()
		b.flush(t.BotID, bq)
	}
	select {
	case err := <-q.done:
		return err
	case <-ctx.Done():
		// The trigger may still be published with the others.
		return fmt.Errorf("%w: %w", bus.ErrOutcomeUnknown, ctx.Err())
	}
}

// flush publishes the bot's waiting triggers, one message at a time (at
// most max triggers and maxBytes each), until none wait. The first message
// is published by the request that found the bot idle (its own trigger is
// in it); the following ones by a goroutine, so that no request waits for
// other requests' triggers.
func (b *triggerBatcher) flush(botID string, bq *botQueue) {
	b.mu.Lock()
	n, size := 0, 0
	for n < len(bq.waiting) && n < b.max && (n == 0 || size+len(bq.waiting[n].raw) <= b.maxBytes) {
		size += len(bq.waiting[n].raw)
		n++
	}
	batch := bq.waiting[:n:n]
	bq.waiting = append([]*queuedTrigger(nil), bq.waiting[n:]...)
	triggersWaiting.Sub(float64(n))
	b.mu.Unlock()

	err := b.send(botID, batch)
	for _, q := range batch {
		q.done <- err
	}

	b.mu.Lock()
	more := len(bq.waiting) > 0
	if !more {
		bq.busy = false
		delete(b.bots, botID) // a bot that went quiet holds nothing
	}
	b.mu.Unlock()
	if more {
		go b.flush(botID, bq)
	}
}

// send publishes one message: a lone trigger as trigger.accepted, several
// as a trigger batch.
func (b *triggerBatcher) send(botID string, batch []*queuedTrigger) error {
	ctx := context.Background() // bounded by the bus's publish timeout
	subject := events.TriggerSubject(botID)
	if len(batch) == 1 {
		_, err := b.bus.Publish(ctx, subject, rawEvent(batch[0].t.ID, events.TypeTriggerAccepted, botID, batch[0].t.AcceptedAt, batch[0].raw))
		triggerMessages.WithLabelValues("single").Inc()
		return err
	}
	size := len(`{"triggers":[]}`) + len(batch)
	for _, q := range batch {
		size += len(q.raw)
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
	triggerMessages.WithLabelValues("batch").Inc()
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
	return cloudevents.Event{Context: &x.ec, DataEncoded: data}
}
