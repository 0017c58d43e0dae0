package ingress

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flowgate/flowgate/ingress/compat"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// triggerRoutes registers the trigger APIs besides BuilderBot's dispatch:
// native, CloudEvents, Botmother, Engati and Recrubo.
func (s *server) triggerRoutes(r *gin.Engine, bot *gin.RouterGroup) {
	bot.POST("/triggers", rejectAs("native", false), s.nativeTrigger)
	bot.GET("/triggers/:trigger", s.getTrigger)
	bot.POST("/triggers/:trigger/cancel", s.cancelTrigger)
	bot.POST("/triggers/:trigger/pause", s.pauseTrigger)
	bot.POST("/triggers/:trigger/resume", s.resumeTrigger)
	bot.POST("/cloudevents", rejectAs("cloudevents", false), s.cloudEvents)
	r.POST("/hooks/botmother/:bot/:token", rejectAs("botmother", false), s.botmother)
	r.POST("/bot_api/v2.0/customer/:cid/bot/:bot/flow/:flow", rejectAs("engati", false), s.engatiAuth, s.engatiV2)
	r.POST("/bot_api/v1.0/customer/:cid/bot/:bot/flow/:flow", rejectAs("engati", false), s.engatiAuth, s.engatiV1)
	rec := r.Group("/public/v2", rejectAs("recrubo", true), s.recruboAuth)
	rec.POST("/message-threads", s.recruboThread)
	rec.POST("/flow-runs", s.recruboFlowRun)
	rec.GET("/flow-runs/:id", s.recruboGetFlowRun)
	rec.POST("/webhooks", s.recruboCreateWebhook)
	rec.DELETE("/webhooks/:id", s.recruboDeleteWebhook)
}

// defaultChannel is the channel of a bot's triggers that name none.
func defaultChannel(b store.Bot) string {
	if b.Channels.DefaultChannel != "" {
		return b.Channels.DefaultChannel
	}
	return events.ChannelSandbox
}

// channelConfigured reports whether the bot can send on ch.
func channelConfigured(b store.Bot, ch string) bool {
	if ch == "" || ch == "any" {
		return true
	}
	return provider.Configured(b, ch)
}

// completeChannel gives a request that names no channel the bot's default
// channel when it selects users by external id, everyone, or a filter, and
// checks the channel is configured. Only platform "any" (said explicitly)
// reaches contacts on every channel; users_bm names contacts, each on its
// own channel. field names the request field that chose the channel, for
// errors.
func completeChannel(b store.Bot, req *compat.Request, field string) *apiError {
	if req.Channel == "" && (len(req.Audience.Users) > 0 || req.Audience.Everyone) {
		if perr := req.ResolveChannel(defaultChannel(b)); perr != nil {
			return compatError(perr)
		}
	}
	if !channelConfigured(b, req.Channel) {
		return fieldError(http.StatusUnprocessableEntity, "channel_not_configured", field,
			"channel "+req.Channel+" is not configured for bot "+b.ID)
	}
	return nil
}

// flowExists checks a flow named in a request body.
func (s *server) flowExists(c *gin.Context, botID, flowID string) (bool, *apiError) {
	_, err := s.store.GetFlow(c.Request.Context(), botID, flowID, 0)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		return false, nil
	default:
		return false, storeError(err, "flow")
	}
}

// accepted answers 202 for a queued trigger.
func accepted(c *gin.Context, t events.Trigger, dup bool) {
	c.JSON(http.StatusAccepted, gin.H{"trigger_id": t.ID, "status": "accepted", "duplicate": dup,
		"trigger": gin.H{"id": t.ID, "status": store.TriggerAccepted, "flow": t.FlowID, "channel": t.Channel,
			"accepted_at": t.AcceptedAt}})
}

// queue publishes t and answers; api names the API for metrics.
func (s *server) queue(c *gin.Context, bot store.Bot, t events.Trigger) {
	dup, aerr := s.publishTrigger(c.Request.Context(), bot, &t)
	if aerr != nil {
		abort(c, aerr)
		return
	}
	accepted(c, t, dup)
}

// nativeTrigger is POST /v1/bots/{bot}/triggers.
func (s *server) nativeTrigger(c *gin.Context) {
	bot := botOf(c)
	req, ok := parseBody(s, c, compat.ParseNative)
	if !ok {
		return
	}
	t := events.Trigger{Source: "native", Event: req.Event, FlowID: req.FlowID, IdempotencyKey: c.GetHeader("Idempotency-Key")}
	if aerr := keyMayTrigger(c, req.Event); aerr != nil {
		abort(c, aerr)
		return
	}
	if req.Event != "" {
		ev, err := s.lookupEvent(c.Request.Context(), bot.ID, req.Event)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
				abort(c, fieldError(http.StatusUnprocessableEntity, "unknown_event", "event", "no event "+req.Event+" in this bot"))
				return
			}
			abort(c, storeError(err, "event"))
			return
		}
		t.FlowID = ev.FlowID
	} else {
		ok, aerr := s.flowExists(c, bot.ID, req.FlowID)
		if aerr != nil {
			abort(c, aerr)
			return
		}
		if !ok {
			abort(c, fieldError(http.StatusUnprocessableEntity, "unknown_flow", "flow", "no flow "+req.FlowID+" in this bot"))
			return
		}
	}
	if aerr := completeChannel(bot, &req, "channel"); aerr != nil {
		abort(c, aerr)
		return
	}
	fromCompat(&t, req)
	s.queue(c, bot, t)
}

func (s *server) getTrigger(c *gin.Context) {
	t, err := s.store.GetTrigger(c.Request.Context(), botOf(c).ID, c.Param("trigger"))
	if err != nil {
		e := storeError(err, "trigger")
		if e.Status == http.StatusNotFound {
			e.Message = "trigger not found (a trigger accepted a moment ago appears once the orchestrator has taken it)"
		}
		abort(c, e)
		return
	}
	c.JSON(http.StatusOK, gin.H{"trigger": triggerView(botOf(c), t, time.Now())})
}

// cancelTrigger stops a broadcast's fan-out: no new run starts.
func (s *server) cancelTrigger(c *gin.Context) {
	ctx := c.Request.Context()
	for attempt := 0; attempt < 5; attempt++ {
		t, err := s.store.GetTrigger(ctx, botOf(c).ID, c.Param("trigger"))
		if err != nil {
			abort(c, storeError(err, "trigger"))
			return
		}
		switch t.Status {
		case store.TriggerCancelled:
			c.JSON(http.StatusOK, gin.H{"trigger": triggerView(botOf(c), t, time.Now())})
			return
		case store.TriggerDone:
			abort(c, newError(http.StatusConflict, "already_done", "the trigger's runs have all been started; cancel runs individually"))
			return
		}
		// A paused broadcast can be cancelled too: it stays stopped.
		t.Status = store.TriggerCancelled
		t.UpdatedAt = time.Now().UTC()
		t, err = s.store.UpdateTrigger(ctx, t)
		if errors.Is(err, store.ErrVersionConflict) {
			continue
		}
		if err != nil {
			abort(c, storeError(err, "trigger"))
			return
		}
		c.JSON(http.StatusOK, gin.H{"trigger": triggerView(botOf(c), t, time.Now())})
		return
	}
	abort(c, newError(http.StatusConflict, "conflict", "the trigger is changing quickly; retry"))
}

// cloudEvents is POST /v1/bots/{bot}/cloudevents: binary, structured or
// batch content mode (CloudEvents HTTP binding). The event type names the
// event; the user is the subject or data.from. A trigger's id derives from
// the CloudEvent's source and id, so a re-sent event is not run twice.
func (s *server) cloudEvents(c *gin.Context) {
	bot := botOf(c)
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		abort(c, tooLarge(s.cfg.MaxBodyBytes))
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	ct := strings.ToLower(c.GetHeader("Content-Type"))
	binary := c.GetHeader("Ce-Specversion") != ""
	if !binary && !strings.HasPrefix(ct, "application/cloudevents") {
		abort(c, newError(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"send a CloudEvent: binary mode (ce-* headers), application/cloudevents+json or application/cloudevents-batch+json"))
		return
	}
	var evs []cloudEvent
	if cehttp.IsHTTPBatch(c.Request.Header) {
		batch, err := cehttp.NewEventsFromHTTPRequest(c.Request)
		if err != nil {
			abort(c, ceReadError(err))
			return
		}
		if len(batch) == 0 || len(batch) > 1000 {
			abort(c, newError(http.StatusUnprocessableEntity, "invalid_batch", "a batch holds 1 to 1000 events"))
			return
		}
		for _, e := range batch {
			evs = append(evs, cloudEvent{id: e.ID(), source: e.Source(), typ: e.Type(), subject: e.Subject(), spec: e.SpecVersion(), data: e.Data(), err: e.Validate(), ext: e.Extensions()})
		}
	} else {
		e, err := cehttp.NewEventFromHTTPRequest(c.Request)
		if err != nil {
			abort(c, ceReadError(err))
			return
		}
		evs = append(evs, cloudEvent{id: e.ID(), source: e.Source(), typ: e.Type(), subject: e.Subject(), spec: e.SpecVersion(), data: e.Data(), err: e.Validate(), ext: e.Extensions()})
	}
	// Validate every event before queueing any, so a bad batch queues nothing.
	trigs := make([]events.Trigger, 0, len(evs))
	for i, e := range evs {
		field := func(f string) string {
			if len(evs) > 1 {
				return "[" + strconv.Itoa(i) + "]." + f
			}
			return f
		}
		if e.err != nil {
			f, msg := ceInvalid(e.err)
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid_cloudevent", field(f), msg))
			return
		}
		if e.spec != cloudevents.CloudEventsVersionV1 {
			abort(c, fieldError(http.StatusUnprocessableEntity, "unsupported_specversion", field("specversion"),
				"specversion "+strconv.Quote(e.spec)+" is not supported; send CloudEvents 1.0"))
			return
		}
		ev, err := s.lookupEvent(c.Request.Context(), bot.ID, e.typ)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
				abort(c, fieldError(http.StatusUnprocessableEntity, "unknown_event", field("type"), "no event "+e.typ+" in this bot"))
				return
			}
			abort(c, storeError(err, "event"))
			return
		}
		if aerr := keyMayTrigger(c, e.typ); aerr != nil {
			aerr.Field = field("type")
			abort(c, aerr)
			return
		}
		req, perr := compat.ParseCloudEventData(e.data, e.subject)
		if perr != nil {
			ae := compatError(perr)
			ae.Field = field(ae.Field)
			abort(c, ae)
			return
		}
		if aerr := completeChannel(bot, &req, field("channel")); aerr != nil {
			abort(c, aerr)
			return
		}
		priority, ok := cePriority(e.ext)
		if !ok {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid_field", field("priority"),
				"the priority extension attribute must be high or bulk"))
			return
		}
		t := events.Trigger{Source: "cloudevents", Event: e.typ, FlowID: ev.FlowID,
			IdempotencyKey: "ce:" + e.source + "\x00" + e.id}
		fromCompat(&t, req)
		t.Priority = priority
		trigs = append(trigs, t)
	}
	ids := make([]string, 0, len(trigs))
	for _, t := range trigs {
		// A failure part-way answers 503: the caller re-sends the batch,
		// and the events already queued are recognised by their ids.
		if _, aerr := s.publishTrigger(c.Request.Context(), bot, &t); aerr != nil {
			abort(c, aerr)
			return
		}
		ids = append(ids, t.ID)
	}
	c.JSON(http.StatusAccepted, gin.H{"status": "accepted", "trigger_ids": ids})
}

type cloudEvent struct {
	id, source, typ, subject, spec string
	data                           []byte
	err                            error
	ext                            map[string]any
}

// ceInvalid names the attribute a CloudEvent's validation refused (the
// first in name order, when several are) and says what is wrong with each,
// on one line.
func ceInvalid(err error) (field, message string) {
	var ve cloudevents.ValidationError
	if !errors.As(err, &ve) || len(ve) == 0 {
		return "", strings.TrimSpace(err.Error())
	}
	names := make([]string, 0, len(ve))
	for k := range ve {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = k + ": " + strings.TrimSpace(ve[k].Error())
	}
	return names[0], strings.Join(parts, "; ")
}

func ceReadError(err error) *apiError {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return newError(http.StatusRequestEntityTooLarge, "body_too_large", "request body too large")
	}
	return newError(http.StatusBadRequest, "invalid_cloudevent", err.Error())
}

// botmother is an External Event's secret trigger URL:
// POST /hooks/botmother/{bot}/{token}. The token is the credential; an
// unknown bot and a wrong (or rotated) token both answer 404.
func (s *server) botmother(c *gin.Context) {
	notFound := newError(http.StatusNotFound, "not_found", "no such trigger URL")
	ctx := c.Request.Context()
	b, err := s.bots.get(ctx, c.Param("bot"), func(ctx2 context.Context) (store.Bot, error) { return s.store.GetBot(ctx2, c.Param("bot")) })
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			abort(c, notFound)
			return
		}
		abort(c, errStoreDown)
		return
	}
	ev, err := s.store.GetEventByToken(ctx, b.ID, HashKey(c.Param("token")))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			abort(c, notFound)
			return
		}
		abort(c, errStoreDown)
		return
	}
	req, ok := parseBody(s, c, compat.ParseBotmother)
	if !ok {
		return
	}
	if aerr := completeChannel(b, &req, "platform"); aerr != nil {
		abort(c, aerr)
		return
	}
	priority, aerr := queryPriority(c)
	if aerr != nil {
		abort(c, aerr)
		return
	}
	t := events.Trigger{Source: "botmother", Event: ev.Name, FlowID: ev.FlowID, IdempotencyKey: c.GetHeader("Idempotency-Key")}
	fromCompat(&t, req)
	t.Priority = priority
	s.queue(c, b, t)
}

// engatiAuth checks Engati's `Authorization: Basic <api key>` (the key as
// is, or base64 of "key" or "key:"), against the bot in the path.
func (s *server) engatiAuth(c *gin.Context) {
	h := c.GetHeader("Authorization")
	if len(h) < 6 || !strings.EqualFold(h[:6], "basic ") {
		abort(c, errUnauthenticated)
		return
	}
	cred := strings.TrimSpace(h[6:])
	p, ok, err := s.authenticate(c.Request.Context(), cred)
	if err == nil && !ok {
		if dec, derr := base64.StdEncoding.DecodeString(cred); derr == nil {
			key, _, _ := strings.Cut(string(dec), ":")
			p, ok, err = s.authenticate(c.Request.Context(), key)
		}
	}
	if err != nil {
		abort(c, errStoreDown)
		return
	}
	if !ok {
		abort(c, errUnauthenticated)
		return
	}
	c.Set(ctxPrincipal, p)
	s.loadBot(c, c.Param("bot"))
	if c.IsAborted() {
		return
	}
	if !p.admin && p.botID != c.Param("bot") {
		abort(c, errForbidden)
		return
	}
	s.limitRate(c, p)
}

func (s *server) engatiV2(c *gin.Context) {
	body, aerr := s.readBody(c)
	if aerr != nil {
		abort(c, aerr)
		return
	}
	req, perr := compat.ParseEngatiV2(c.GetHeader("Content-Type"), body)
	s.engati(c, req, perr)
}

func (s *server) engatiV1(c *gin.Context) {
	req, perr := compat.ParseEngatiV1(c.Request.URL.Query())
	s.engati(c, req, perr)
}

func (s *server) engati(c *gin.Context, req compat.Request, perr *compat.Error) {
	if perr != nil {
		abort(c, compatError(perr))
		return
	}
	bot := botOf(c)
	if aerr := keyMayTrigger(c, ""); aerr != nil {
		abort(c, aerr)
		return
	}
	ok, aerr := s.flowExists(c, bot.ID, c.Param("flow"))
	if aerr != nil {
		abort(c, aerr)
		return
	}
	if !ok {
		abort(c, newError(http.StatusNotFound, "not_found", "flow "+c.Param("flow")+" not found"))
		return
	}
	if aerr := completeChannel(bot, &req, "user_channel"); aerr != nil {
		abort(c, aerr)
		return
	}
	t := events.Trigger{Source: "engati", FlowID: c.Param("flow"), IdempotencyKey: c.GetHeader("Idempotency-Key")}
	fromCompat(&t, req)
	if strings.HasPrefix(c.FullPath(), "/bot_api/v2.0/") { // v1's query parameters are attributes
		priority, aerr := queryPriority(c)
		if aerr != nil {
			abort(c, aerr)
			return
		}
		t.Priority = priority
	}
	s.queue(c, bot, t)
}

// recruboAuth authenticates Recrubo's Bearer key. The paths name no bot,
// so the key must be a bot's key. Errors are JSON:API documents.
func (s *server) recruboAuth(c *gin.Context) {
	p, ok, err := s.authenticate(c.Request.Context(), bearer(c))
	switch {
	case err != nil:
		abort(c, &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "the store is unavailable; retry later"})
		return
	case !ok:
		abort(c, &apiError{Status: http.StatusUnauthorized, Code: "unauthenticated", Field: "Authorization", Message: "missing or invalid API key"})
		return
	case p.admin:
		abort(c, &apiError{Status: http.StatusForbidden, Code: "forbidden", Field: "Authorization", Message: "use a bot's API key: it selects the bot"})
		return
	}
	if p.triggerOnly() && !triggerRoutes[c.Request.Method+" "+c.FullPath()] {
		abort(c, errTriggerScope)
		return
	}
	c.Set(ctxPrincipal, p)
	s.limitRate(c, p)
	if c.IsAborted() {
		return
	}
	b, err := s.bots.get(c.Request.Context(), p.botID, func(ctx context.Context) (store.Bot, error) { return s.store.GetBot(ctx, p.botID) })
	if err != nil {
		abort(c, &apiError{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "the key's bot no longer exists"})
		return
	}
	c.Set(ctxBot, b)
}

// recruboThread is POST /public/v2/message-threads: the thread is the
// contact (one user on one channel); its id is the contact id.
func (s *server) recruboThread(c *gin.Context) {
	bot := botOf(c)
	th, ok := parseBody(s, c, compat.ParseRecruboThread)
	if !ok {
		return
	}
	if !channelConfigured(bot, th.Channel) {
		abort(c, &apiError{Status: http.StatusUnprocessableEntity, Code: "channel_not_configured",
			Field: "/data/attributes/channel", Message: "channel " + th.Channel + " is not configured for this bot"})
		return
	}
	contact, _, err := s.store.UpsertContact(c.Request.Context(), store.ContactUpsert{
		BotID: bot.ID, Channel: th.Channel, ExternalID: th.Identifier, NewID: store.NewContactID(), Now: time.Now().UTC(),
	})
	if err != nil {
		abort(c, storeError(err, "thread"))
		return
	}
	c.Data(http.StatusCreated, "application/vnd.api+json", compat.RenderRecruboThread(compat.ThreadID(contact.ID), th, contact.CreatedAt))
}

// recruboFlowRun is POST /public/v2/flow-runs: the run's id is chosen now
// (or taken from the document) and is also the trigger's id, so GET
// /public/v2/flow-runs/{id} works at once.
func (s *server) recruboFlowRun(c *gin.Context) {
	bot := botOf(c)
	fr, ok := parseBody(s, c, compat.ParseRecruboFlowRun)
	if !ok {
		return
	}
	if aerr := keyMayTrigger(c, ""); aerr != nil {
		abort(c, aerr)
		return
	}
	ctx := c.Request.Context()
	contact, err := s.store.GetContact(ctx, bot.ID, compat.ContactID(fr.MessageThreadID))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			abort(c, &apiError{Status: http.StatusUnprocessableEntity, Code: "unknown_thread",
				Field: "/data/attributes/messageThreadId", Message: "no message thread " + fr.MessageThreadID})
			return
		}
		abort(c, storeError(err, "thread"))
		return
	}
	ok, aerr := s.flowExists(c, bot.ID, fr.FlowID)
	if aerr != nil {
		abort(c, aerr)
		return
	}
	if !ok {
		abort(c, &apiError{Status: http.StatusUnprocessableEntity, Code: "unknown_flow",
			Field: "/data/attributes/flowId", Message: "no flow " + fr.FlowID})
		return
	}
	if contact.Channel == events.ChannelWhatsApp && fr.InitialMessage == nil {
		abort(c, &apiError{Status: http.StatusUnprocessableEntity, Code: "missing_field",
			Field: "/data/attributes/initialMessage", Message: "a WhatsApp thread needs a template initialMessage"})
		return
	}
	runID := fr.ID
	if runID == "" {
		if k := c.GetHeader("Idempotency-Key"); k != "" {
			runID = TriggerID(bot.ID, "recrubo:"+k)
		} else {
			runID = uuid.Must(uuid.NewV7()).String()
		}
	}
	priority, aerr := queryPriority(c)
	if aerr != nil {
		abort(c, aerr) // source.parameter: priority
		return
	}
	t := events.Trigger{ID: runID, RunID: runID, Source: "recrubo", FlowID: fr.FlowID, Channel: contact.Channel,
		Data: fr.State, InitialMessage: fr.InitialMessage, Priority: priority,
		Audience: events.Audience{UsersBM: []string{contact.ID}, Platform: contact.Channel}}
	if _, aerr := s.publishTrigger(ctx, bot, &t); aerr != nil {
		abort(c, aerr)
		return
	}
	view := compat.FlowRunView{
		ID: runID, CreatedAt: t.AcceptedAt, UpdatedAt: t.AcceptedAt, FlowID: fr.FlowID,
		MessageThreadID: compat.ThreadID(contact.ID), State: fr.State, InitialMessage: fr.InitialMessage, Status: store.RunCreated,
	}
	// Until the orchestrator has stored the run, GET answers from here.
	s.acceptedRuns.put(bot.ID+"\x00"+runID, view)
	doc, err := compat.RenderRecruboFlowRun(view)
	if err != nil {
		abort(c, &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error()})
		return
	}
	c.Data(http.StatusAccepted, "application/vnd.api+json", doc)
}

// recruboGetFlowRun is GET /public/v2/flow-runs/{id}: the run as the POST
// accepted it (flowId, messageThreadId, state, initialMessage) with its
// status in Recrubo's vocabulary.
func (s *server) recruboGetFlowRun(c *gin.Context) {
	bot := botOf(c)
	ctx := c.Request.Context()
	id := c.Param("id")
	view := compat.FlowRunView{ID: id}
	run, err := s.store.GetRun(ctx, bot.ID, id)
	switch {
	case err == nil:
		view.CreatedAt, view.UpdatedAt, view.FlowID = run.CreatedAt, run.UpdatedAt, run.FlowID
		view.MessageThreadID, view.Status, view.State = compat.ThreadID(run.ContactID), compat.RecruboStatus(run.Status), run.Data
		if t, ok := s.acceptedTrigger(ctx, bot.ID, run.TriggerID); ok {
			view.InitialMessage = t.InitialMessage
		}
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		if t, ok := s.acceptedTrigger(ctx, bot.ID, id); ok {
			view.CreatedAt, view.UpdatedAt, view.FlowID, view.Status = t.AcceptedAt, t.AcceptedAt, t.FlowID, store.RunQueued
			view.State, view.InitialMessage = t.Data, t.InitialMessage
			if len(t.Audience.UsersBM) == 1 {
				view.MessageThreadID = compat.ThreadID(t.Audience.UsersBM[0])
			}
			break
		}
		v, ok := s.acceptedRuns.get(bot.ID + "\x00" + id)
		if !ok {
			abort(c, &apiError{Status: http.StatusNotFound, Code: "not_found", Message: "flow run " + id + " not found"})
			return
		}
		view = v
		view.Status = store.RunQueued
	default:
		abort(c, storeError(err, "flow run"))
		return
	}
	doc, err := compat.RenderRecruboFlowRun(view)
	if err != nil {
		abort(c, &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error()})
		return
	}
	c.Data(http.StatusOK, "application/vnd.api+json", doc)
}

// acceptedTrigger is the trigger as the ingress accepted it (its stored
// spec), if the orchestrator has stored it.
func (s *server) acceptedTrigger(ctx context.Context, botID, id string) (events.Trigger, bool) {
	var t events.Trigger
	if id == "" {
		return t, false
	}
	st, err := s.store.GetTrigger(ctx, botID, id)
	if err != nil || json.Unmarshal(st.Spec, &t) != nil {
		return t, false
	}
	if t.AcceptedAt.IsZero() {
		t.AcceptedAt = st.CreatedAt
	}
	return t, true
}

// recentRuns remembers the flow runs this ingress accepted in the last
// minutes, so that GET /public/v2/flow-runs/{id} right after the POST finds
// the run before the orchestrator has stored it (durable in JetStream, not
// yet in the store). Bounded; entries expire.
type recentRuns struct {
	mu sync.Mutex
	m  map[string]recentRun
}

type recentRun struct {
	view compat.FlowRunView
	exp  time.Time
}

const recentRunTTL = 10 * time.Minute

func (r *recentRuns) put(key string, v compat.FlowRunView) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.m == nil || len(r.m) >= 50_000 {
		fresh := make(map[string]recentRun, len(r.m)/2+1)
		for k, e := range r.m {
			if now.Before(e.exp) && len(fresh) < 25_000 {
				fresh[k] = e
			}
		}
		r.m = fresh
	}
	r.m[key] = recentRun{view: v, exp: now.Add(recentRunTTL)}
}

func (r *recentRuns) get(key string) (compat.FlowRunView, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[key]
	if !ok || time.Now().After(e.exp) {
		return compat.FlowRunView{}, false
	}
	return e.view, true
}
