package bus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/events"
)

// HeaderReplayedFrom is set on a replayed message: the dead-letter
// stream's sequence it came from.
const HeaderReplayedFrom = "Flowgate-Replayed-From"

// ErrNoDeadLetter means the dead-letter stream has no message with that sequence.
var ErrNoDeadLetter = errors.New("bus: no such dead letter")

// DeadLetter is one message of the dead-letter stream.
type DeadLetter struct {
	// Seq is its sequence in the dead-letter stream: its id for show,
	// replay and purge.
	Seq uint64 `json:"seq"`
	// Time is when it was dead-lettered.
	Time time.Time `json:"time"`
	// Subject is the subject it was first published on; a replay goes there.
	Subject  string `json:"subject"`
	Consumer string `json:"consumer,omitempty"`
	Reason   string `json:"reason"`
	// EventID and Type are the CloudEvent's id and type.
	EventID string `json:"event_id,omitempty"`
	Type    string `json:"type,omitempty"`
	// Data is the event's payload (only from DeadLetter, not the list).
	Data json.RawMessage `json:"data,omitempty"`
}

func (b *Bus) dlqStream(ctx context.Context) (jetstream.Stream, error) {
	s, err := b.js.Stream(ctx, StreamDLQ)
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s: %v", ErrUnavailable, StreamDLQ, err)
	}
	return s, nil
}

// DeadLetters lists up to limit dead letters with a sequence of at least
// from (0 = the oldest), oldest first, and the sequence to list from next
// (0 when there are no more).
func (b *Bus) DeadLetters(ctx context.Context, from uint64, limit int) ([]DeadLetter, uint64, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	s, err := b.dlqStream(ctx)
	if err != nil {
		return nil, 0, err
	}
	from = max(from, 1)
	var out []DeadLetter
	for len(out) < limit {
		// The next message at or after from: deleted ones leave gaps.
		raw, err := s.GetMsg(ctx, from, jetstream.WithGetMsgSubject(events.SubjectDLQ+".>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, 0, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%w: dead letter %d: %v", ErrUnavailable, from, err)
		}
		dl := toDeadLetter(raw)
		dl.Data = nil
		out = append(out, dl)
		from = raw.Sequence + 1
	}
	return out, from, nil
}

// DeadLetter returns one dead letter with its payload.
func (b *Bus) DeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	raw, err := b.getDeadLetter(ctx, seq)
	if err != nil {
		return DeadLetter{}, err
	}
	return toDeadLetter(raw), nil
}

func (b *Bus) getDeadLetter(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	s, err := b.dlqStream(ctx)
	if err != nil {
		return nil, err
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || seq == 0 {
		return nil, fmt.Errorf("%w: %d", ErrNoDeadLetter, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: dead letter %d: %v", ErrUnavailable, seq, err)
	}
	return raw, nil
}

func toDeadLetter(raw *jetstream.RawStreamMsg) DeadLetter {
	h := raw.Header
	dl := DeadLetter{
		Seq: raw.Sequence, Time: raw.Time.UTC(), Subject: h.Get(HeaderDLQSubject), Consumer: h.Get(HeaderDLQConsumer),
		Reason: h.Get(HeaderDLQReason), EventID: first(h, hdrID), Type: first(h, hdrType),
	}
	if json.Valid(raw.Data) {
		dl.Data = json.RawMessage(raw.Data)
	} else if len(raw.Data) > 0 {
		dl.Data, _ = json.Marshal(string(raw.Data))
	}
	return dl
}

func first(h nats.Header, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return h.Get(k)
}

// Replay publishes a dead letter again on the subject it was first
// published on (in FLOWGATE_RUNS, which several consumers read, on the
// replay subject of the consumer that gave up on it: the others had
// handled it), with its event id and payload unchanged, then deletes it
// from the dead-letter stream. The handlers are idempotent by event id, so
// a message that had partly taken effect does not take effect twice. The
// Nats-Msg-Id is derived from the dead letter's sequence, not the
// original's (which JetStream would drop as a duplicate inside its window):
// replaying the same dead letter twice publishes it once.
func (b *Bus) Replay(ctx context.Context, seq uint64) (DeadLetter, PublishResult, error) {
	raw, err := b.getDeadLetter(ctx, seq)
	if err != nil {
		return DeadLetter{}, PublishResult{}, err
	}
	dl := toDeadLetter(raw)
	if dl.Subject == "" {
		return dl, PublishResult{}, fmt.Errorf("bus: dead letter %d has no original subject", seq)
	}
	h := nats.Header{}
	for k, v := range raw.Header {
		switch k {
		case HeaderDLQReason, HeaderDLQSubject, HeaderDLQConsumer, HeaderRetryOf, HeaderRetryGeneration, HeaderRetryFor, jetstream.MsgIDHeader:
			continue
		}
		h[k] = v
	}
	h.Set(HeaderReplayedFrom, strconv.FormatUint(seq, 10))
	msg := &nats.Msg{Subject: replayTarget(dl.Subject, dl.Consumer), Header: h, Data: raw.Data}
	pctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	ack, err := b.js.PublishMsg(pctx, msg, jetstream.WithMsgID(MsgID(fmt.Sprintf("replay:%s:%d", StreamDLQ, seq))))
	if err != nil {
		return dl, PublishResult{}, classifyPublishError(err)
	}
	res := PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}
	if err := b.deleteDeadLetter(ctx, seq); err != nil && !errors.Is(err, ErrNoDeadLetter) {
		return dl, res, fmt.Errorf("replayed, but not removed from the dead-letter stream: %w", err)
	}
	replayed.WithLabelValues(dl.Consumer).Inc()
	b.log.Info("dead letter replayed", "seq", seq, "subject", dl.Subject, "event", dl.EventID, "duplicate", res.Duplicate)
	return dl, res, nil
}

// PurgeDeadLetter deletes one dead letter.
func (b *Bus) PurgeDeadLetter(ctx context.Context, seq uint64) error {
	return b.deleteDeadLetter(ctx, seq)
}

// PurgeDeadLetters deletes every dead letter and returns how many there were.
func (b *Bus) PurgeDeadLetters(ctx context.Context) (uint64, error) {
	s, err := b.dlqStream(ctx)
	if err != nil {
		return 0, err
	}
	n := s.CachedInfo().State.Msgs
	if err := s.Purge(ctx); err != nil {
		return 0, fmt.Errorf("%w: purge %s: %v", ErrUnavailable, StreamDLQ, err)
	}
	return n, nil
}

func (b *Bus) deleteDeadLetter(ctx context.Context, seq uint64) error {
	s, err := b.dlqStream(ctx)
	if err != nil {
		return err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		// The client reports "no message found" (err_code 10057) in the
		// text only, without an APIError in the chain; a sequence past the
		// stream's end is the same code with "stream store EOF".
		if errors.Is(err, jetstream.ErrMsgNotFound) || strings.Contains(err.Error(), "no message found") ||
			strings.Contains(err.Error(), "stream store EOF") {
			return fmt.Errorf("%w: %d", ErrNoDeadLetter, seq)
		}
		return fmt.Errorf("%w: delete dead letter %d: %v", ErrUnavailable, seq, err)
	}
	return nil
}

// DeadLetterPart dead-letters one part of a consumed message, as an event
// of its own (a bundle of an outbound batch, whose other bundles went on):
// what the consumer does with a whole message that failed permanently,
// with the same headers (the reason, the subject and the consumer it came
// from), so that it is listed, replayed and purged like any dead letter.
// Its id names the part's event: dead-lettering it twice keeps one.
func (b *Bus) DeadLetterPart(ctx context.Context, from Message, e cloudevents.Event, reason error) error {
	if e.Source() == "" {
		setSource(&e, b.source)
	}
	if err := validate(e); err != nil {
		return fmt.Errorf("bus: invalid event: %w", err)
	}
	msg := toMsg("flowgate.dlq."+from.Subject, e, "")
	msg.Header.Set(HeaderDLQReason, truncate(reason.Error(), 1024))
	msg.Header.Set(HeaderDLQSubject, from.Subject)
	msg.Header.Set(HeaderDLQConsumer, from.consumer)
	pctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if _, err := b.js.PublishMsg(pctx, msg, jetstream.WithMsgID(MsgID("dlq:"+e.ID()))); err != nil {
		return fmt.Errorf("%w: dead-letter publish: %v", ErrUnavailable, err)
	}
	deadLettered.WithLabelValues(cmp.Or(from.metric, from.consumer)).Inc()
	b.log.Warn("part of a message dead-lettered", "consumer", from.consumer, "subject", from.Subject, "id", e.ID(), "reason", reason.Error())
	return nil
}
