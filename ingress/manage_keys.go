package ingress

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/flowgate/flowgate/shared/store"
)

// keyView is an API key as the API shows it: never the key, only its prefix.
type keyView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Scope      string     `json:"scope"`
	Events     []string   `json:"events"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Revoked    bool       `json:"revoked"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

func viewKey(k store.APIKey) keyView {
	scope := k.Scope
	if scope == "" {
		scope = store.ScopeAdmin
	}
	evs := k.Events
	if evs == nil {
		evs = []string{}
	}
	return keyView{ID: k.ID, Name: k.Name, Scope: scope, Events: evs, Prefix: k.Prefix, CreatedAt: k.CreatedAt,
		LastUsedAt: k.LastUsedAt, Revoked: k.Revoked, RevokedAt: k.RevokedAt}
}

type createKeyRequest struct {
	Name   string   `json:"name"`
	Scope  string   `json:"scope"`
	Events []string `json:"events"`
}

// createKey is POST /v1/bots/{bot}/keys: a new key, shown once.
func (s *server) createKey(c *gin.Context) {
	body, aerr := s.readBody(c, "application/json")
	if aerr != nil {
		abort(c, aerr)
		return
	}
	var req createKeyRequest
	if err := strictJSON(body, &req); err != nil {
		abort(c, newError(http.StatusBadRequest, "invalid_json", err.Error()))
		return
	}
	switch {
	case req.Name == "":
		abort(c, fieldError(http.StatusUnprocessableEntity, "required", "name", "name is required (what the key is for)"))
		return
	case len(req.Name) > 256:
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "name", "name is longer than 256 characters"))
		return
	case req.Scope != store.ScopeAdmin && req.Scope != store.ScopeTrigger:
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "scope", `scope must be "admin" or "trigger"`))
		return
	case len(req.Events) > 0 && req.Scope != store.ScopeTrigger:
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "events", "only a trigger-scope key is limited to events"))
		return
	case len(req.Events) > store.MaxKeyEvents:
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "events", "at most 100 events"))
		return
	}
	for _, e := range req.Events {
		if !eventIDPattern.MatchString(e) {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "events", "event name "+clipText(e, 64)+" must match "+eventIDPattern.String()))
			return
		}
	}
	key := NewAPIKey()
	k := store.APIKey{ID: uuid.NewString(), BotID: botOf(c).ID, Hash: HashKey(key), Prefix: key[:7],
		CreatedAt: time.Now().UTC(), Name: req.Name, Scope: req.Scope, Events: req.Events}
	if err := s.store.CreateAPIKey(c.Request.Context(), k); err != nil {
		abort(c, storeError(err, "api key"))
		return
	}
	c.JSON(http.StatusCreated, gin.H{"key": viewKey(k), "api_key": key,
		"note": "store the api_key now: it is shown only once"})
}

// listKeys is GET /v1/bots/{bot}/keys.
func (s *server) listKeys(c *gin.Context) {
	keys, err := s.store.ListAPIKeys(c.Request.Context(), botOf(c).ID)
	if err != nil {
		abort(c, storeError(err, "api keys"))
		return
	}
	out := make([]keyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, viewKey(k))
	}
	c.JSON(http.StatusOK, gin.H{"keys": out})
}

// revokeKey is DELETE /v1/bots/{bot}/keys/{key}: the key is refused at once
// by this replica and within MaxKeyCacheTTL by every other.
func (s *server) revokeKey(c *gin.Context) {
	ctx := c.Request.Context()
	bot := botOf(c)
	id := c.Param("key")
	err := s.store.RevokeAPIKey(ctx, bot.ID, id, time.Now().UTC())
	if errors.Is(err, store.ErrInvalid) {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "api key"))
		return
	}
	keys, err := s.store.ListAPIKeys(ctx, bot.ID)
	if err != nil {
		abort(c, storeError(err, "api keys"))
		return
	}
	for _, k := range keys {
		if k.ID == id {
			s.keys.forget(k.Hash)
			c.JSON(http.StatusOK, gin.H{"key": viewKey(k)})
			return
		}
	}
	abort(c, storeError(store.ErrNotFound, "api key"))
}
