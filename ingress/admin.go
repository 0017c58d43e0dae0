package ingress

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flowgate/flowgate/ingress/inputmap"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

var (
	botIDPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	flowIDPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	eventIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
)

// botView is a bot as the API shows it: channel secrets never leave the server.
type botView struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Channels  map[string]any `json:"channels"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	// Status is "active", or "deleting" while DELETE /v1/bots/{bot} runs
	// (GET /v1/bots/{bot} only).
	Status string `json:"status,omitempty"`
}

func viewBot(b store.Bot) botView {
	ch := map[string]any{}
	// Each provider shows its account; secrets are write-only: the view
	// says only whether each is set.
	for _, p := range provider.All() {
		if p.AccountView != nil {
			if v := p.AccountView(b.Channels); v != nil {
				ch[p.Name] = v
			}
		} else if _, ok := p.Account(b); ok {
			ch[p.Name] = gin.H{"configured": true}
		}
	}
	def := b.Channels.DefaultChannel
	if def == "" {
		def = events.ChannelSandbox
	}
	ch["default"] = def
	return botView{ID: b.ID, Name: b.Name, Channels: ch, CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt}
}

type createBotRequest struct {
	ID       string                `json:"id"`
	Name     string                `json:"name"`
	Channels store.ChannelAccounts `json:"channels"`
}

func (s *server) createBot(c *gin.Context) {
	body, aerr := s.readBody(c, "application/json")
	if aerr != nil {
		abort(c, aerr)
		return
	}
	var req createBotRequest
	if err := strictJSON(body, &req); err != nil {
		abort(c, newError(http.StatusBadRequest, "invalid_json", err.Error()))
		return
	}
	if !botIDPattern.MatchString(req.ID) {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "id", "bot id must match "+botIDPattern.String()))
		return
	}
	if req.Name == "" {
		req.Name = req.ID
	}
	if len(req.Name) > 256 {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "name", "name is longer than 256 characters"))
		return
	}
	if d := req.Channels.DefaultChannel; d != "" && !provider.Known(d) {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "channels.default_channel", "unknown channel "+d))
		return
	}
	if aerr := checkAccounts(req.Channels); aerr != nil {
		abort(c, aerr)
		return
	}
	ctx := c.Request.Context()
	now := time.Now().UTC()
	b := store.Bot{ID: req.ID, Name: req.Name, Channels: req.Channels, CreatedAt: now, UpdatedAt: now}
	if err := s.store.CreateBot(ctx, b); err != nil {
		abort(c, storeError(err, "bot"))
		return
	}
	key, err := s.issueKey(c, b.ID)
	if err != nil {
		abort(c, storeError(err, "api key"))
		return
	}
	s.bots.forget(b.ID)
	c.JSON(http.StatusCreated, gin.H{"bot": viewBot(b), "api_key": key,
		"note": "store the api_key now: it is shown only once"})
}

// issueKey creates and stores a new API key for bot and returns it.
func (s *server) issueKey(c *gin.Context, botID string) (string, error) {
	key := NewAPIKey()
	err := s.store.CreateAPIKey(c.Request.Context(), store.APIKey{
		ID: uuid.NewString(), BotID: botID, Hash: HashKey(key), Prefix: key[:7], CreatedAt: time.Now().UTC(),
	})
	return key, err
}

func (s *server) getBot(c *gin.Context) {
	v := viewBot(botOf(c))
	v.Status = s.botStatus(c.Request.Context(), v.ID)
	c.JSON(http.StatusOK, gin.H{"bot": v})
}

func (s *server) putFlow(c *gin.Context) {
	id := c.Param("flow")
	if !flowIDPattern.MatchString(id) {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "flow", "flow id must match "+flowIDPattern.String()))
		return
	}
	body, aerr := s.readBody(c, "application/json", "application/yaml", "application/x-yaml", "text/yaml")
	if aerr != nil {
		abort(c, aerr)
		return
	}
	canonical, err := s.compile(body)
	if err != nil {
		abort(c, flowError(err))
		return
	}
	if aerr := s.checkFlowMedia(c.Request.Context(), botOf(c).ID, canonical); aerr != nil {
		abort(c, aerr)
		return
	}
	f, err := s.store.PutFlow(c.Request.Context(), store.Flow{
		BotID: botOf(c).ID, ID: id, Definition: canonical, CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		abort(c, storeError(err, "flow"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"flow": gin.H{"id": f.ID, "version": f.Version, "created_at": f.CreatedAt}})
}

func flowError(err error) *apiError {
	e := newError(http.StatusUnprocessableEntity, "invalid_flow", err.Error())
	var fe FieldErrors
	if errors.As(err, &fe) {
		e.Details = fe.Fields()
		if len(e.Details) > 0 {
			e.Field = e.Details[0].Path
			e.Message = e.Details[0].Message
		}
	}
	return e
}

func (s *server) getFlow(c *gin.Context) {
	versions, err := s.store.ListFlowVersions(c.Request.Context(), botOf(c).ID, c.Param("flow"))
	if err == nil && len(versions) == 0 {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "flow"))
		return
	}
	list := make([]gin.H, 0, len(versions))
	for _, v := range versions {
		list = append(list, gin.H{"version": v.Version, "created_at": v.CreatedAt})
	}
	latest := versions[len(versions)-1]
	c.JSON(http.StatusOK, gin.H{"flow": gin.H{"id": latest.ID, "version": latest.Version,
		"definition": latest.Definition, "versions": list}})
}

type putEventRequest struct {
	Flow string `json:"flow"`
	// Input and Signature: see mapping.go.
	Input     *inputmap.Spec      `json:"input"`
	Signature *inputmap.Signature `json:"signature"`
}

func (s *server) putEvent(c *gin.Context) {
	name := c.Param("event")
	if !eventIDPattern.MatchString(name) {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "event", "event name must match "+eventIDPattern.String()))
		return
	}
	body, aerr := s.readBody(c, "application/json")
	if aerr != nil {
		abort(c, aerr)
		return
	}
	var req putEventRequest
	if err := strictJSON(body, &req); err != nil {
		abort(c, newError(http.StatusBadRequest, "invalid_json", err.Error()))
		return
	}
	if req.Flow == "" {
		abort(c, fieldError(http.StatusUnprocessableEntity, "required", "flow", "flow is required"))
		return
	}
	ctx := c.Request.Context()
	bot := botOf(c)
	if _, err := s.store.GetFlow(ctx, bot.ID, req.Flow, 0); err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			abort(c, fieldError(http.StatusUnprocessableEntity, "unknown_flow", "flow", "no flow "+req.Flow+" in this bot"))
			return
		}
		abort(c, storeError(err, "flow"))
		return
	}
	now := time.Now().UTC()
	ev := store.Event{BotID: bot.ID, Name: name, FlowID: req.Flow, CreatedAt: now, UpdatedAt: now}
	old, err := s.store.GetEvent(ctx, bot.ID, name)
	created := errors.Is(err, store.ErrNotFound)
	if err != nil && !created {
		abort(c, storeError(err, "event"))
		return
	}
	input, aerr := eventInput(req.Input, req.Signature, old.Input)
	if aerr != nil {
		abort(c, aerr)
		return
	}
	ev.Input = input
	var token string
	if created || c.Query("rotate_token") == "true" || old.TokenHash == "" {
		token = randomHex(24)
		ev.TokenHash = HashKey(token)
	} else {
		ev.TokenHash, ev.CreatedAt = old.TokenHash, old.CreatedAt
	}
	if err := s.store.PutEvent(ctx, ev); err != nil {
		abort(c, storeError(err, "event"))
		return
	}
	s.events.forget(bot.ID + "\x00" + name)
	resp := gin.H{"name": ev.Name, "flow": ev.FlowID, "created_at": ev.CreatedAt, "updated_at": ev.UpdatedAt}
	for k, v := range inputView(ev.Input) {
		resp[k] = v
	}
	if token != "" {
		resp["trigger_url"] = "/hooks/botmother/" + bot.ID + "/" + token
		resp["note"] = "the trigger_url holds a secret token and is shown only now; PUT with ?rotate_token=true for a new one"
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, gin.H{"event": resp})
}

func (s *server) getEvent(c *gin.Context) {
	ev, err := s.store.GetEvent(c.Request.Context(), botOf(c).ID, c.Param("event"))
	if err != nil {
		abort(c, storeError(err, "event"))
		return
	}
	view := gin.H{"name": ev.Name, "flow": ev.FlowID, "created_at": ev.CreatedAt, "updated_at": ev.UpdatedAt}
	for k, v := range inputView(ev.Input) {
		view[k] = v
	}
	c.JSON(http.StatusOK, gin.H{"event": view})
}

// strictJSON decodes one JSON value into v, refusing unknown fields and trailing data.
func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}
