package bus

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/events"
)

// CloudEvents binary-mode header names on NATS (lower case, per the
// CloudEvents NATS protocol binding).
const (
	hdrID          = "ce-id"
	hdrSource      = "ce-source"
	hdrType        = "ce-type"
	hdrSpecVersion = "ce-specversion"
	hdrTime        = "ce-time"
	hdrSubject     = "ce-subject"
	hdrContentType = "content-type"
	hdrNotBefore   = "ce-" + ExtNotBefore
	// HeaderDLQReason says why a message was dead-lettered.
	HeaderDLQReason = "Flowgate-Dlq-Reason"
	// HeaderDLQSubject is the subject the dead letter was first published on.
	HeaderDLQSubject = "Flowgate-Dlq-Subject"
	// HeaderDLQConsumer is the consumer that dead-lettered the message.
	HeaderDLQConsumer = "Flowgate-Dlq-Consumer"
)

// NewEvent builds a CloudEvent with a JSON payload. id must be
// deterministic for the effect it describes: it becomes the Nats-Msg-Id, so
// a retried publish inside the duplicate window is dropped by JetStream.
func NewEvent(id, typ, subject string, data any) (cloudevents.Event, error) {
	e := cloudevents.New()
	e.SetID(id)
	e.SetType(typ)
	e.SetSubject(subject)
	e.SetTime(time.Now().UTC())
	raw, err := json.Marshal(data)
	if err != nil {
		return e, fmt.Errorf("bus: encode %s: %w", typ, err)
	}
	e.SetDataContentType("application/json")
	e.DataEncoded = raw
	return e, nil
}

// PublishResult says what JetStream did with a publish.
type PublishResult struct {
	Stream    string
	Sequence  uint64
	Duplicate bool
}

// Publish sends e on subject in binary content mode and waits for
// JetStream's acknowledgement: when it returns nil the event is durable.
// It publishes asynchronously and waits on the acknowledgement future:
// the same guarantee as a synchronous publish, without a request/reply
// round trip per message, so concurrent callers pipeline. On a NATS
// cluster a trigger that FLOWGATE_TRIGGERS does not take is stored on the
// standby stream instead (standby.go); PublishResult.Stream says which.
func (b *Bus) Publish(ctx context.Context, subject string, e cloudevents.Event) (PublishResult, error) {
	if e.Source() == "" {
		setSource(&e, b.source)
	}
	if err := validate(e); err != nil {
		return PublishResult{}, fmt.Errorf("bus: invalid event: %w", err)
	}
	start := time.Now()
	reconnects := b.nc.Stats().Reconnects
	res, err := b.publishEvent(ctx, subject, e)
	if err == nil {
		return res, nil
	}
	return b.publishAgain(ctx, subject, e, start, reconnects, err)
}

// DefaultRetryWait is how long Publish and PublishAll keep trying an event
// that no server took (publishAgain), from its first try, unless
// Config.RetryWait says otherwise: about what a client waiting for an HTTP
// answer should wait.
const DefaultRetryWait = 2 * time.Second

// retryPause is the pause before a publish no server answered, or one
// whose earlier try is still being stored, is tried again: an elected
// leader's interest reaches the other servers, and a proposal is applied,
// in a few milliseconds.
const retryPause = 50 * time.Millisecond

// publishAgain tries an event once more, and again, within the bus's
// retry wait (Config.RetryWait) of its first try (start), when what failed
// will pass by itself:
//   - the connection was lost while the publish was under way (its server
//     stopped: a rolling restart, a node lost), or was down when it
//     started: once the client has reconnected, to another server of a
//     cluster;
//   - no server answered (nats.ErrNoResponders): the stream has no leader
//     for the moment, or its new leader's interest has not reached this
//     client's server yet;
//   - JetStream answered that an earlier try of the same message is being
//     stored (errInProcess): typically the try a lost connection
//     interrupted, whose outcome the next try then learns;
//   - no acknowledgement came within the publish timeout (errNoAck): the
//     stream's leader was lost under it. Only a bus whose retry wait is
//     longer than that timeout (Config.RetryWait: a consumer's handler) has
//     time left to try again; with the default wait the timeout spends it.
//
// The event's Nats-Msg-Id makes this safe: a copy an earlier try stored is
// dropped as a duplicate, and its acknowledgement says the event is
// stored, which the earlier try could not. A refusal is not tried again (a
// full stream is back-pressure). err is the first try's error; when no try
// succeeds, the error returned keeps the strongest kind any try had
// (ErrOutcomeUnknown once a try may have been stored) and says what the
// last one met.
func (b *Bus) publishAgain(ctx context.Context, subject string, e cloudevents.Event, start time.Time, reconnects uint64, err error) (PublishResult, error) {
	first, last, tries := err, err, 1
	why := "" // the first try's reason, which the metric counts
	for {
		reason := b.retryReason(last, reconnects)
		if why == "" {
			why = reason
		}
		if !b.waitToRetry(ctx, reason, start) {
			break
		}
		reconnects = b.nc.Stats().Reconnects
		res, err := b.publishEvent(ctx, subject, e)
		tries++
		if err == nil {
			publishRetries.WithLabelValues(why).Inc()
			return res, nil
		}
		last = err
		if errors.Is(err, ErrOutcomeUnknown) {
			first = err
		}
	}
	var sf *standbyFailed
	if errors.As(last, &sf) {
		standbyPublishes.WithLabelValues("failed").Inc()
	}
	if tries == 1 {
		return PublishResult{}, first
	}
	took := time.Since(start).Round(time.Millisecond)
	if last.Error() == first.Error() {
		return PublishResult{}, fmt.Errorf("%w (%d tries in %v)", first, tries, took)
	}
	return PublishResult{}, fmt.Errorf("%w (%d tries in %v; the last: %v)", first, tries, took, last)
}

// errCodeMsgIDInProcess is JetStream's "duplicate message id is in
// process" (nats-server's JSStreamDuplicateMessageConflict; nats.go has no
// name for it).
const errCodeMsgIDInProcess jetstream.ErrorCode = 10158

// waitToRetry waits before a publish that failed for reason is tried
// again: for the connection to come back (retryReconnect), or retryPause.
// It says whether to try: not when reason is "" (it will not pass by
// itself), once the retry wait from the first try (start) is spent, or
// when ctx ends or the connection is closed.
func (b *Bus) waitToRetry(ctx context.Context, reason string, start time.Time) bool {
	left := b.retryWait - time.Since(start)
	if reason == "" || left <= 0 || ctx.Err() != nil || b.nc.IsClosed() {
		return false
	}
	if reason == retryReconnect {
		return b.waitConnected(ctx, left)
	}
	sleepCtx(ctx, min(retryPause, left))
	return ctx.Err() == nil
}

// Why a failed publish is tried again (flowgate_bus_publish_retries_total).
const (
	retryReconnect    = "reconnect"
	retryNoResponders = "no_responders"
	retryInProcess    = "in_process"
	retryNoAck        = "no_ack"
)

// retryReason says why a publish that failed with err is worth trying
// again, or "" when it is not; reconnects is the client's reconnect count
// when that try started.
func (b *Bus) retryReason(err error, reconnects uint64) string {
	switch {
	case !errors.Is(err, ErrUnavailable):
		return ""
	case !b.nc.IsConnected() || b.nc.Stats().Reconnects != reconnects:
		return retryReconnect
	case errors.Is(err, errNoAnswer):
		return retryNoResponders
	case errors.Is(err, errInProcess):
		return retryInProcess
	case errors.Is(err, errNoAck):
		return retryNoAck
	}
	return ""
}

// publishEvent is one try of Publish.
func (b *Bus) publishEvent(ctx context.Context, subject string, e cloudevents.Event) (PublishResult, error) {
	if after := time.Duration(b.standbyAfter.Load()); after > 0 && strings.HasPrefix(subject, triggerPrefix) {
		return b.publishTrigger(ctx, subject, e, after)
	}
	// The Nats-Msg-Id header is set directly (what jetstream.WithMsgID
	// does, without an options struct per publish).
	res, err := b.publishMsg(ctx, toMsg(subject, e, MsgID(e.ID())))
	if err != nil {
		return res, classifyPublishError(err)
	}
	return res, nil
}

// waitConnected waits until the connection is up again, at most limit (or
// until ctx ends), and says whether it is.
func (b *Bus) waitConnected(ctx context.Context, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for !b.nc.IsConnected() {
		if b.nc.IsClosed() || ctx.Err() != nil || time.Now().After(deadline) {
			return false
		}
		sleepCtx(ctx, 10*time.Millisecond)
	}
	return true
}

// publishMsg publishes msg and waits for JetStream's acknowledgement; its
// error is as the client gave it (classifyPublishError tells the kinds).
func (b *Bus) publishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (PublishResult, error) {
	if !b.nc.IsConnected() {
		// Fail fast, and for sure: nothing was sent.
		publishErrors.WithLabelValues(streamOf(msg.Subject)).Inc()
		return PublishResult{}, errNotConnected
	}
	fut, err := b.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		publishErrors.WithLabelValues(streamOf(msg.Subject)).Inc()
		return PublishResult{}, err
	}
	// Without a deadline on ctx, the wait is bounded by b.timeout on a
	// pooled timer (cheaper than a derived context per publish).
	var timeout <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := getTimer(b.timeout)
		defer putTimer(t)
		timeout = t.C
	}
	select {
	case ack := <-fut.Ok():
		published.WithLabelValues(ack.Stream, strconv.FormatBool(ack.Duplicate)).Inc()
		return PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
	case err := <-fut.Err():
		publishErrors.WithLabelValues(streamOf(msg.Subject)).Inc()
		return PublishResult{}, err
	case <-ctx.Done():
		publishErrors.WithLabelValues(streamOf(msg.Subject)).Inc()
		return PublishResult{}, ctx.Err()
	case <-timeout:
		publishErrors.WithLabelValues(streamOf(msg.Subject)).Inc()
		return PublishResult{}, context.DeadlineExceeded
	}
}

// OutboundEvent is the message of a bundle alone, as a channel worker
// takes it: its id names the bundle's first message
// (events.OutboundID), so publishing the same bundle twice keeps one. The
// orchestrator publishes bundles so; a channel worker hands on a bundle of
// a batch so.
func OutboundEvent(out events.Outbound) (cloudevents.Event, error) {
	ev, err := NewEvent(events.OutboundID(out), events.TypeOutbound, out.ContactID, out)
	if err != nil {
		return ev, Permanent(err)
	}
	return ev, nil
}

// MsgID is the Nats-Msg-Id of the event with id eventID: 22 characters
// (128 bits of its SHA-256, base64url), whatever the id's length. JetStream
// keeps every id of its duplicate window in memory; a broadcast of a million
// runs publishes two million events within it, and ids like
// "run:<uuid>:1:completed" cost three times as much as their hash.
func MsgID(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// validate is e.Validate(), without its allocations for the usual event:
// a CloudEvents 1.0 context with an id, a type, a path or absolute source,
// a non-blank subject if any, JSON data and no data schema. Anything else
// (and every invalid event) goes through e.Validate.
func validate(e cloudevents.Event) error {
	ec, ok := e.Context.(*cloudevents.EventContextV1)
	if !ok || len(e.FieldErrors) > 0 || ec.DataSchema != nil ||
		strings.TrimSpace(ec.ID) == "" || strings.TrimSpace(ec.Type) == "" ||
		!(strings.HasPrefix(ec.Source.Path, "/") || ec.Source.Scheme != "") ||
		ec.Subject != nil && strings.TrimSpace(*ec.Subject) == "" ||
		ec.DataContentType != nil && *ec.DataContentType != "application/json" {
		return e.Validate()
	}
	return nil
}

// sources caches parsed CloudEvents sources (one per Bus, in practice).
var sources sync.Map // string → types.URIRef

// setSource is e.SetSource(src) without parsing src on every publish. e is
// the publisher's copy of the caller's event, whose context it shares (a
// pointer): the source is set on a copy of the context, so that the
// caller's event is left as it was and may be published by several
// goroutines at once.
func setSource(e *cloudevents.Event, src string) {
	ec, ok := e.Context.(*cloudevents.EventContextV1)
	if !ok || src == "" {
		e.Context = e.Context.Clone()
		e.SetSource(src)
		return
	}
	own := *ec // the extensions map is shared, and not written
	e.Context = &own
	if ref, ok := sources.Load(src); ok {
		own.Source = ref.(types.URIRef)
		return
	}
	u, err := url.Parse(src)
	if err != nil {
		e.SetSource(src) // records the error as SetSource does; Validate refuses the event
		return
	}
	ref := types.URIRef{URL: *u}
	sources.Store(src, ref)
	own.Source = ref
}

// timers are reused across publishes. Since Go 1.23 a stopped or reset
// timer never delivers a stale value, so a pooled timer is safe to reuse.
var timers sync.Pool

func getTimer(d time.Duration) *time.Timer {
	if t, ok := timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func putTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}

// classifyPublishError tells a publish that certainly stored nothing
// (ErrNotQueued) from one whose outcome is unknown (ErrOutcomeUnknown);
// both are ErrUnavailable: not known to be durable, try later.
func classifyPublishError(err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		// No stream listens on the subject (on a cluster: none for the
		// moment, while its stream elects a leader).
		return fmt.Errorf("%w: %v", errNoAnswer, err)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeMsgIDInProcess:
		return fmt.Errorf("%w: %v", errInProcess, err)
	case errors.As(err, &apiErr),
		// The server answered: refused ("maximum bytes exceeded": stream
		// full, discard new).
		// Never left this process: not connected (no reconnect buffer, see
		// Connect), closed, too many publishes pending.
		errors.Is(err, nats.ErrReconnectBufExceeded), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining), errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, errNotConnected):
		return fmt.Errorf("%w: %v", ErrNotQueued, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, nats.ErrTimeout):
		// No acknowledgement in time: the server may have stored the
		// message.
		return fmt.Errorf("%w: %v", errNoAck, err)
	default:
		// A connection lost while waiting for the acknowledgement: the
		// server may have stored the message.
		return fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
	}
}

// ToMsg encodes e in binary content mode (lower-case ce-* headers, as
// the CloudEvents NATS binding has them).
func ToMsg(subject string, e cloudevents.Event) *nats.Msg { return toMsg(subject, e, "") }

// toMsg is ToMsg with a Nats-Msg-Id header when msgID is set.
func toMsg(subject string, e cloudevents.Event, msgID string) *nats.Msg {
	// Room for every header below plus the Nats-Msg-Id Publish adds, so
	// the map never grows; the one-value slices share one array.
	h := make(nats.Header, 8)
	vals := make([]string, 0, 8)
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	set(hdrID, e.ID())
	set(hdrSource, e.Source())
	set(hdrType, e.Type())
	set(hdrSpecVersion, e.SpecVersion())
	if !e.Time().IsZero() {
		set(hdrTime, e.Time().UTC().Format(time.RFC3339Nano))
	}
	if s := e.Subject(); s != "" {
		set(hdrSubject, s)
	}
	if ct := e.DataContentType(); ct != "" {
		set(hdrContentType, ct)
	}
	if msgID != "" {
		set(jetstream.MsgIDHeader, msgID)
	}
	if nb := NotBefore(e); !nb.IsZero() {
		set(hdrNotBefore, nb.UTC().Format(time.RFC3339Nano))
	}
	return &nats.Msg{Subject: subject, Header: h, Data: e.Data()}
}

// ExtNotBefore names the CloudEvents extension (header ce-notbefore) that
// holds a message back until its time: a consumer that meets it earlier
// gives it back for the rest of the wait. A channel worker sets it on a
// bundle of a batch it hands on after the provider's retry-after
// (channel.Runner's handOn), so that the bundle alone waits as the
// provider asked instead of being retried at once. It is the one
// extension the bus carries.
const ExtNotBefore = "notbefore"

// SetNotBefore holds e back until t (ExtNotBefore).
func SetNotBefore(e *cloudevents.Event, t time.Time) {
	e.SetExtension(ExtNotBefore, types.Timestamp{Time: t.UTC()})
}

// NotBefore is the time e is held back until (ExtNotBefore), zero when it
// is not held back or the time does not parse.
func NotBefore(e cloudevents.Event) time.Time {
	v, ok := e.Extensions()[ExtNotBefore]
	if !ok {
		return time.Time{}
	}
	t, err := types.ToTime(v)
	if err != nil {
		return time.Time{}
	}
	return t
}

// FromMsg decodes a binary-mode CloudEvent.
func FromMsg(h nats.Header, data []byte) (cloudevents.Event, error) {
	get := func(k string) string {
		if v, ok := h[k]; ok && len(v) > 0 {
			return v[0]
		}
		return h.Get(k)
	}
	// A message without a known ce-specversion is not a CloudEvent (and
	// cloudevents.New would leave the context nil): refuse it, so the
	// consumer dead-letters it instead of crashing.
	sv := get(hdrSpecVersion)
	if sv != cloudevents.CloudEventsVersionV1 && sv != cloudevents.CloudEventsVersionV03 {
		return cloudevents.Event{}, fmt.Errorf("bus: not a binary-mode CloudEvent (ce-specversion %q)", sv)
	}
	e := cloudevents.New(sv)
	e.SetID(get(hdrID))
	e.SetSource(get(hdrSource))
	e.SetType(get(hdrType))
	if s := get(hdrSubject); s != "" {
		e.SetSubject(s)
	}
	if t := get(hdrTime); t != "" {
		ts, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return e, fmt.Errorf("bus: bad ce-time %q: %w", t, err)
		}
		e.SetTime(ts)
	}
	if ct := get(hdrContentType); ct != "" {
		e.SetDataContentType(ct)
	}
	if nb := get(hdrNotBefore); nb != "" {
		// A time that does not parse holds nothing back (NotBefore).
		e.SetExtension(ExtNotBefore, nb)
	}
	e.DataEncoded = data
	if err := e.Validate(); err != nil {
		return e, fmt.Errorf("bus: not a CloudEvent: %w", err)
	}
	return e, nil
}

func streamOf(subject string) string {
	// "flowgate.<kind>.…" → kind, a bounded label.
	const p = "flowgate."
	if len(subject) > len(p) && subject[:len(p)] == p {
		rest := subject[len(p):]
		for i := 0; i < len(rest); i++ {
			if rest[i] == '.' {
				return rest[:i]
			}
		}
		return rest
	}
	return "other"
}
