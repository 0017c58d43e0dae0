package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a message re-published by the transient retry path.
const (
	// HeaderRetryOf is the Nats-Msg-Id (or stream:sequence) of the first
	// copy of a message that was re-published to keep retrying it.
	HeaderRetryOf = "Flowgate-Retry-Of"
	// HeaderRetryGeneration counts the re-publications (1 for the first copy
	// re-published).
	HeaderRetryGeneration = "Flowgate-Retry-Generation"
	// HeaderRetryFor names the consumer a re-published copy is for. On a
	// stream that several consumers read (the run-status stream) the copy
	// reaches them all; the others acknowledge it unhandled.
	HeaderRetryFor = "Flowgate-Retry-For"
)

// TransientError marks a failure that says nothing about the message: the
// store or the bus is unavailable, a deadline passed. The message is retried
// (backoff, capped) for as long as the failure lasts and never dead-lettered
// for it.
type TransientError struct {
	Err error
	// MaxWait, when set, caps the retry's backoff (TransientWithin).
	MaxWait time.Duration
}

func (e *TransientError) Error() string { return "transient: " + e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// Transient wraps err so the message is retried without a delivery cap.
func Transient(err error) error { return &TransientError{Err: err} }

// TransientWithin is Transient with the retry's backoff capped at maxWait:
// for a failure that may clear at any moment and costs little to try
// again, such as a run claimed by another step (which may have died
// holding the claim: its run is free again once the claim lapses or the
// dead step's own message comes back, and a step waiting behind it should
// not then wait a long backoff more).
func TransientWithin(err error, maxWait time.Duration) error {
	return &TransientError{Err: err, MaxWait: maxWait}
}

// IsTransient reports whether err is a transient failure: marked with
// Transient, or with a Transient() bool method returning true anywhere in
// its chain (store.ErrUnavailable has one), or the bus unavailable, a NATS
// connection problem, a timeout or a cancelled context. A Permanent error is
// never transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var perm *PermanentError
	if errors.As(err, &perm) {
		return false
	}
	var te *TransientError
	if errors.As(err, &te) {
		return true
	}
	var marked interface{ Transient() bool }
	if errors.As(err, &marked) && marked.Transient() {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, target := range []error{
		ErrUnavailable, context.DeadlineExceeded, context.Canceled,
		nats.ErrTimeout, nats.ErrConnectionClosed, nats.ErrDisconnected,
		nats.ErrConnectionReconnecting, nats.ErrNoResponders, jetstream.ErrNoStreamResponse,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// republishable reports whether a stream's consumers may be given a fresh
// copy of a message: every stream but the dead-letter one, which is not
// consumed. On a work-queue stream the copy reaches the one consumer that
// failed; on the run-status stream (limits retention, possibly several
// consumers) it reaches every consumer, and those it is not for (its
// HeaderRetryFor) acknowledge it without handling it.
func republishable(stream string) bool {
	return stream != StreamDLQ
}

// republishAt is the delivery from which a transiently failing message is
// re-published: half of MaxDeliver, so that several attempts remain if the
// re-publication itself fails (the bus is the thing that is down).
func republishAt(maxDeliver int) uint64 {
	return uint64(max(1, maxDeliver/2))
}

// retryForOther reports whether raw is a re-published copy meant for
// another consumer than durable.
func retryForOther(raw jetstream.Msg, durable string) bool {
	target := raw.Headers().Get(HeaderRetryFor)
	return target != "" && target != durable
}

// retryGeneration is how many times the message was re-published already.
func retryGeneration(raw jetstream.Msg) int {
	g, _ := strconv.Atoi(raw.Headers().Get(HeaderRetryGeneration))
	return g
}

// republish publishes a fresh copy of raw on its subject, for a transient
// failure that has used up half of the consumer's deliveries, so that the
// retry goes on with a new delivery count. The copy's Nats-Msg-Id derives
// from the first copy's id and the generation: if this process dies before
// acking raw, the redelivered raw re-publishes the same id and JetStream
// drops it. The handlers are idempotent, so a copy handled next to a late
// redelivery of raw has no second effect. The copy goes to the end of the
// stream: messages of the same key may overtake it.
func (b *Bus) republish(ctx context.Context, consumer string, raw jetstream.Msg) error {
	h := nats.Header{}
	for k, v := range raw.Headers() {
		h[k] = v
	}
	origin := h.Get(HeaderRetryOf)
	if origin == "" {
		origin = h.Get(jetstream.MsgIDHeader)
	}
	if origin == "" {
		if md, err := raw.Metadata(); err == nil {
			origin = fmt.Sprintf("%s:%d", md.Stream, md.Sequence.Stream)
		}
	}
	gen := retryGeneration(raw) + 1
	h.Set(HeaderRetryOf, origin)
	h.Set(HeaderRetryGeneration, strconv.Itoa(gen))
	h.Set(HeaderRetryFor, consumer)
	msg := &nats.Msg{Subject: raw.Subject(), Header: h, Data: raw.Data()}
	pctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	// The id names the consumer: two consumers of one stream retrying the
	// same message each get their copy; one consumer re-publishing twice
	// (its ack was lost) gets one.
	if _, err := b.js.PublishMsg(pctx, msg, jetstream.WithMsgID(MsgID(origin+"#retry:"+consumer+":"+strconv.Itoa(gen)))); err != nil {
		return err
	}
	republished.WithLabelValues(consumer).Inc()
	return nil
}
