package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flowgate/flowgate/ingress/compat"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// triggerNamespace scopes idempotency keys to trigger ids (UUIDv5).
var triggerNamespace = uuid.MustParse("5b0c3f7e-6f53-4c59-9c77-3a8f1f2f6a10")

// TriggerID is the id of a trigger: derived from the bot and the caller's
// idempotency key when there is one, so that a retried request names the
// same trigger (and JetStream drops the duplicate); random otherwise.
// A key the ingress generated (see newRetryKey) gives a time-ordered id.
func TriggerID(botID, idempotencyKey string) string {
	if idempotencyKey == "" {
		return uuid.Must(uuid.NewV7()).String()
	}
	if id, ok := retryKeyID(botID, idempotencyKey); ok {
		return id
	}
	return uuid.NewSHA1(triggerNamespace, []byte(botID+"\x00"+idempotencyKey)).String()
}

// retryKeyPrefix starts the idempotency keys the ingress generates for
// requests that came without one.
const retryKeyPrefix = "flowgate-retry-"

// newRetryKey is the idempotency key of a request that has none. It is
// never derived from the request's content: two identical requests are two
// triggers (a reminder sent twice on purpose). It is handed to the client
// only when the outcome of its request is unknown (503 outcome_unknown), so
// that a retry with it as Idempotency-Key names the same trigger and runs
// at most once.
func newRetryKey() string { return retryKeyPrefix + uuid.Must(uuid.NewV7()).String() }

// retryKeyID is the trigger id of a generated key: the key's time (a
// UUIDv7's first 48 bits) followed by bits of a hash of the bot and the key,
// so that ids stay time-ordered (the store's indexes grow at their end, see
// orchestrator.RunID) and are bound to the bot.
func retryKeyID(botID, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, retryKeyPrefix)
	if !ok {
		return "", false
	}
	u, err := uuid.Parse(rest)
	if err != nil || u.Version() != 7 {
		return "", false
	}
	h := uuid.NewSHA1(triggerNamespace, []byte(botID+"\x00"+key))
	var id uuid.UUID
	copy(id[:6], u[:6])
	copy(id[6:], h[6:])
	id[6] = id[6]&0x0f | 0x70 // version 7
	id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	return id.String(), true
}

// lookupEvent returns the bot's event (cached).
func (s *server) lookupEvent(ctx context.Context, botID, name string) (store.Event, error) {
	return s.events.get(ctx, botID+"\x00"+name, func(ctx context.Context) (store.Event, error) {
		return s.store.GetEvent(ctx, botID, name)
	})
}

// eventFlow resolves the path's event to its flow, aborting with 404.
func (s *server) eventFlow(c *gin.Context, botID, name string) (string, bool) {
	ev, err := s.lookupEvent(c.Request.Context(), botID, name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			abort(c, newError(http.StatusNotFound, "not_found", "event "+name+" not found"))
			return "", false
		}
		abort(c, storeError(err, "event"))
		return "", false
	}
	return ev.FlowID, true
}

// fromCompat copies a parsed request into a trigger.
func fromCompat(t *events.Trigger, r compat.Request) {
	t.Audience = r.Audience
	t.Name = r.Name
	t.Data = r.Data
	t.NoData = r.Data == nil
	t.Attributes = r.Attributes
	t.InitialMessage = r.InitialMessage
	t.Priority = r.Priority
	if t.IdempotencyKey == "" {
		t.IdempotencyKey = r.IdempotencyKey
	}
	if t.Channel == "" {
		t.Channel = r.Channel
	}
}

// publishTrigger makes t durable on the bus. It fills the id and the
// acceptance time; the returned error is an API error.
func (s *server) publishTrigger(ctx context.Context, bot store.Bot, t *events.Trigger) (duplicate bool, _ *apiError) {
	t.BotID = bot.ID
	if t.Channel == "" && len(t.Audience.Users) > 0 {
		// Users are ids on one channel; users_bm and everyone name
		// contacts that each have their own.
		t.Channel = defaultChannel(bot)
	}
	// retryKey is what a client retries with when the outcome is unknown.
	retryKey := ""
	// A trigger whose id is generated here can have no earlier copy: it
	// may share a message with others (batch.go).
	batchable := s.batcher != nil && t.ID == "" && t.IdempotencyKey == "" && t.Source != "cloudevents"
	if t.ID == "" {
		retryKey = t.IdempotencyKey
		if retryKey == "" {
			retryKey = newRetryKey()
		}
		t.ID = TriggerID(bot.ID, retryKey)
		if t.Source == "cloudevents" {
			retryKey = "" // the retry is the same event (source and id)
		}
	}
	if aerr := s.claimIdempotencyKey(ctx, bot.ID, t); aerr != nil {
		return false, aerr
	}
	t.AcceptedAt = time.Now().UTC()
	raw, err := encodeTrigger(t)
	if err != nil {
		return false, newError(http.StatusUnprocessableEntity, "invalid", "the request data cannot be encoded: "+err.Error())
	}
	var res bus.PublishResult
	if batchable && len(raw) <= maxBatchedTrigger {
		err = s.batcher.publish(ctx, t, raw)
	} else {
		res, err = s.bus.Publish(ctx, events.TriggerSubject(bot.ID), rawEvent(t.ID, events.TypeTriggerAccepted, t.BotID, t.AcceptedAt, raw))
	}
	if err != nil {
		// A cancelled request (the client went away) may have been sent as
		// well: only ErrNotQueued is "nothing was queued".
		if errors.Is(err, bus.ErrOutcomeUnknown) || errors.Is(err, context.Canceled) {
			s.log.WarnContext(ctx, "trigger outcome unknown", "bot", bot.ID, "source", t.Source, "trigger", t.ID, "err", err)
			triggersOutcomeUnknown.WithLabelValues(t.Source).Inc()
			return false, outcomeUnknown(bot.ID, t.ID, retryKey)
		}
		s.log.WarnContext(ctx, "trigger not queued", "bot", bot.ID, "source", t.Source, "err", err)
		return false, errBusUnavailable
	}
	triggersAccepted.WithLabelValues(t.Source, bot.ID).Inc()
	return res.Duplicate, nil
}

// dispatch is BuilderBot's dispatch: POST /v1/bots/{bot}/dispatch/{event}
// with {"from": "...", "name": "...", ...custom}.
func (s *server) dispatch(c *gin.Context) {
	bot := botOf(c)
	if aerr := keyMayTrigger(c, c.Param("event")); aerr != nil {
		abort(c, aerr)
		return
	}
	flowID, ok := s.eventFlow(c, bot.ID, c.Param("event"))
	if !ok {
		return // answered
	}
	body, aerr := s.readBody(c)
	if aerr != nil {
		abort(c, aerr)
		return
	}
	req, perr := s.parseDispatch(c, bot.ID, c.Param("event"), body)
	if perr != nil {
		abort(c, perr)
		return
	}
	if aerr := completeChannel(bot, &req, "channel"); aerr != nil {
		abort(c, aerr)
		return
	}
	priority, aerr := queryPriority(c)
	if aerr != nil {
		triggersRejected.WithLabelValues("dispatch", aerr.Code).Inc()
		abort(c, aerr)
		return
	}
	t := events.Trigger{
		Source: "dispatch", Event: c.Param("event"), FlowID: flowID,
		IdempotencyKey: c.GetHeader("Idempotency-Key"),
	}
	fromCompat(&t, req)
	t.Priority = priority
	dup, aerr := s.publishTrigger(c.Request.Context(), bot, &t)
	if aerr != nil {
		abort(c, aerr)
		return
	}
	c.Data(http.StatusAccepted, "application/json; charset=utf-8", acceptedBody(t.ID, dup))
}

// claimIdempotencyKey refuses a caller's Idempotency-Key reused with a
// different request (422 idempotency_key_reused): the first request's hash
// is stored with the key. The hash is of the trigger as queued (event or
// flow, channel, audience, data …), so a retry whose body differs only in
// JSON spacing or key order is still a retry. A store outage does not stop
// triggers: the check is skipped (and logged), and JetStream's duplicate
// window still drops a retry of the same request.
func (s *server) claimIdempotencyKey(ctx context.Context, botID string, t *events.Trigger) *apiError {
	if t.IdempotencyKey == "" || t.Source == "cloudevents" {
		return nil // CloudEvents are keyed by source and id, by their producer
	}
	h, err := requestHash(t)
	if err != nil {
		return nil // triggerEvent reports the encoding error
	}
	stored, err := s.store.ClaimIdempotencyKey(ctx, botID, t.IdempotencyKey, h, time.Now().UTC())
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return fieldError(http.StatusUnprocessableEntity, "invalid", "Idempotency-Key", "the idempotency key must be 1 to 128 bytes of text")
		}
		s.log.WarnContext(ctx, "idempotency key not checked: store unavailable", "bot", botID, "err", err)
		return nil
	}
	if stored != h {
		idempotencyReused.Inc()
		return fieldError(http.StatusUnprocessableEntity, "idempotency_key_reused", "Idempotency-Key",
			"this Idempotency-Key was used with a different request; use a new key for a new request")
	}
	return nil
}

// requestHash is the hex SHA-256 of what a trigger asks for: the trigger
// without its id, acceptance time and key.
func requestHash(t *events.Trigger) (string, error) {
	c := *t
	c.ID, c.AcceptedAt, c.IdempotencyKey = "", time.Time{}, ""
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	return HashKey(string(b)), nil
}
