package ingress

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// Contacts and messages: search, look up, edit, opt out, delete.

// recentRuns is how many runs a contact's page shows.
const contactRecentRuns = 10

// searchContacts is GET /v1/bots/{bot}/contacts?external_id_prefix=&name=&attribute=&value=&channel=&limit=&cursor=.
func (s *server) searchContacts(c *gin.Context) {
	q := store.ContactSearch{BotID: botOf(c).ID, Channel: c.Query("channel"), ExternalIDPrefix: c.Query("external_id_prefix"),
		Name: c.Query("name"), Attribute: c.Query("attribute"), Value: c.Query("value"), Cursor: c.Query("cursor")}
	if q.Channel != "" && !provider.Known(q.Channel) {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "channel", "unknown channel "+clipText(q.Channel, 32)))
		return
	}
	if _, hasValue := c.GetQuery("value"); hasValue && q.Attribute == "" {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "value", "value filters an attribute: name it with attribute="))
		return
	}
	var ok bool
	if q.Limit, ok = queryLimit(c); !ok {
		return
	}
	cs, next, err := s.store.SearchContacts(c.Request.Context(), q)
	if err != nil {
		abort(c, storeError(err, "contacts"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"contacts": cs, "next_cursor": next})
}

// contactOf loads the path's contact (404 for a bad or unknown id).
func (s *server) contactOf(c *gin.Context) (store.Contact, bool) {
	ct, err := s.store.GetContact(c.Request.Context(), botOf(c).ID, c.Param("contact"))
	if errors.Is(err, store.ErrInvalid) {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "contact"))
		return ct, false
	}
	return ct, true
}

// getContact is GET /v1/bots/{bot}/contacts/{contact}: the contact (with
// last_request) and its most recent runs.
func (s *server) getContact(c *gin.Context) {
	ct, ok := s.contactOf(c)
	if !ok {
		return
	}
	runs, _, err := s.store.ListRuns(c.Request.Context(), store.RunFilter{BotID: ct.BotID, ContactID: ct.ID, Limit: contactRecentRuns})
	if err != nil {
		abort(c, storeError(err, "runs"))
		return
	}
	if runs == nil {
		runs = []store.Run{}
	}
	c.JSON(http.StatusOK, gin.H{"contact": ct, "recent_runs": runs})
}

type patchContactRequest struct {
	Name       *string        `json:"name"`
	Attributes map[string]any `json:"attributes"`
}

// maxPatchAttributes caps the attributes one PATCH sets.
const maxPatchAttributes = 200

// patchContact is PATCH /v1/bots/{bot}/contacts/{contact}: the name, and
// attributes merged into the contact's (named ones replaced, others kept).
func (s *server) patchContact(c *gin.Context) {
	ct, ok := s.contactOf(c)
	if !ok {
		return
	}
	body, aerr := s.readBody(c, "application/json", "application/merge-patch+json")
	if aerr != nil {
		abort(c, aerr)
		return
	}
	var req patchContactRequest
	if err := strictJSON(body, &req); err != nil {
		abort(c, newError(http.StatusBadRequest, "invalid_json", err.Error()))
		return
	}
	if req.Name == nil && req.Attributes == nil {
		abort(c, newError(http.StatusUnprocessableEntity, "invalid", "nothing to change: send name and/or attributes"))
		return
	}
	u := s.contactUpsert(ct)
	if req.Name != nil {
		if *req.Name == "" || len(*req.Name) > 256 || hasControlChar(*req.Name) {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "name", "name must be 1 to 256 characters without control characters"))
			return
		}
		u.Name = *req.Name
	}
	if len(req.Attributes) > maxPatchAttributes {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "attributes", "at most 200 attributes at once"))
		return
	}
	for k := range req.Attributes {
		if k == "" || len(k) > store.MaxAttributeName || hasControlChar(k) {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "attributes", "attribute names are 1 to 128 characters without control characters"))
			return
		}
	}
	u.Attributes = req.Attributes
	s.writeContact(c, u)
}

func (s *server) contactUpsert(ct store.Contact) store.ContactUpsert {
	// NewID: a contact deleted meanwhile comes back under its own id.
	return store.ContactUpsert{BotID: ct.BotID, Channel: ct.Channel, ExternalID: ct.ExternalID, NewID: ct.ID, Now: time.Now().UTC()}
}

func (s *server) writeContact(c *gin.Context, u store.ContactUpsert) {
	ct, _, err := s.store.UpsertContact(c.Request.Context(), u)
	if err != nil {
		abort(c, storeError(err, "contact"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"contact": ct})
}

func (s *server) setOptedOut(c *gin.Context, out bool) {
	ct, ok := s.contactOf(c)
	if !ok {
		return
	}
	u := s.contactUpsert(ct)
	u.OptedOut = &out
	s.writeContact(c, u)
}

// optOut is POST /v1/bots/{bot}/contacts/{contact}/opt-out: broadcasts
// skip the contact from now on (idempotent).
func (s *server) optOut(c *gin.Context) { s.setOptedOut(c, true) }

// optIn is POST /v1/bots/{bot}/contacts/{contact}/opt-in (idempotent).
func (s *server) optIn(c *gin.Context) { s.setOptedOut(c, false) }

// deleteContact is DELETE /v1/bots/{bot}/contacts/{contact}: the contact,
// its runs, their messages and its sandbox transcript.
func (s *server) deleteContact(c *gin.Context) {
	err := s.store.DeleteContact(c.Request.Context(), botOf(c).ID, c.Param("contact"))
	if errors.Is(err, store.ErrInvalid) {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "contact"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"deleted": true, "contact": c.Param("contact")})
}

// contactMessages is GET /v1/bots/{bot}/contacts/{contact}/messages: the
// contact's latest messages with their provider status and error.
func (s *server) contactMessages(c *gin.Context) {
	ct, ok := s.contactOf(c)
	if !ok {
		return
	}
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	ms, err := s.store.ListContactMessages(c.Request.Context(), ct.BotID, ct.ID, limit)
	if err != nil {
		abort(c, storeError(err, "messages"))
		return
	}
	c.JSON(http.StatusOK, gin.H{"messages": ms})
}

// runMessages is GET /v1/bots/{bot}/runs/{run}/messages.
func (s *server) runMessages(c *gin.Context) {
	bot := botOf(c)
	r, err := s.store.GetRun(c.Request.Context(), bot.ID, c.Param("run"))
	if errors.Is(err, store.ErrInvalid) {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "run"))
		return
	}
	ms, err := s.store.ListRunMessages(c.Request.Context(), bot.ID, r.ID)
	if err != nil {
		abort(c, storeError(err, "messages"))
		return
	}
	if ms == nil {
		ms = []store.Message{}
	}
	c.JSON(http.StatusOK, gin.H{"messages": ms})
}
