package ingress

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/ingress/compat"
	"github.com/flowgate/flowgate/ingress/inputmap"
	"github.com/flowgate/flowgate/shared/store"
)

// Event input mappings: an event may say how a third party's own webhook
// body maps to a trigger (ingress/inputmap: expr expressions over body and
// headers) and how its HMAC signature is checked. Such a webhook can then
// POST straight to /v1/bots/{bot}/dispatch/{event}: with a valid signature
// it needs no API key.

var errBadEventSignature = newError(http.StatusUnauthorized, "invalid_signature", "the request's signature does not match its body and the event's secret")

// eventInput builds the input to store for PUT /events/{event}: spec and
// sig as given, the signature's secret kept from old when sig omits it.
// Nothing given: no input (the body is BuilderBot's {from, name, ...}).
func eventInput(spec *inputmap.Spec, sig *inputmap.Signature, old json.RawMessage) (json.RawMessage, *apiError) {
	if spec == nil && sig == nil {
		return nil, nil
	}
	in := inputmap.Input{Mapping: spec, Signature: sig}
	if spec != nil {
		if _, err := inputmap.Compile(*spec); err != nil {
			return nil, mappingError(err)
		}
	}
	if sig != nil {
		if sig.Secret == "" {
			// Secrets are write-only: a PUT that changes the header or the
			// encoding keeps the stored secret.
			if prev, err := decodeInput(old); err == nil && prev.Signature != nil {
				sig.Secret = prev.Signature.Secret
			}
		}
		if err := sig.Normalize(); err != nil {
			return nil, mappingError(err)
		}
	}
	raw, err := json.Marshal(in)
	if err != nil {
		return nil, newError(http.StatusInternalServerError, "internal", "cannot encode the event input")
	}
	return raw, nil
}

func decodeInput(raw json.RawMessage) (inputmap.Input, error) {
	var in inputmap.Input
	if len(raw) == 0 {
		return in, nil
	}
	err := json.Unmarshal(raw, &in)
	return in, err
}

// inputView shows an event's input: the mapping, and the signature check
// without its secret.
func inputView(raw json.RawMessage) gin.H {
	in, err := decodeInput(raw)
	out := gin.H{}
	if err != nil {
		return out
	}
	if in.Mapping != nil {
		out["input"] = in.Mapping
	}
	if s := in.Signature; s != nil {
		out["signature"] = gin.H{"header": s.Header, "encoding": s.Encoding, "prefix": s.Prefix, "secret_set": s.Secret != ""}
	}
	return out
}

func mappingError(err error) *apiError {
	var e *inputmap.Error
	if errors.As(err, &e) {
		if e.Field == "body" {
			return newError(http.StatusBadRequest, "invalid_json", e.Message)
		}
		return fieldError(http.StatusUnprocessableEntity, "invalid_mapping", e.Field, e.Message)
	}
	return newError(http.StatusUnprocessableEntity, "invalid_mapping", err.Error())
}

// dispatchAuth authorises a dispatch: an API key as for every bot route,
// or, without one, a valid signature of an event that has a signature
// check. Unknown bots and events, and events without a check, are a 401
// for a caller without a key, so that nothing can be probed.
func (s *server) dispatchAuth(c *gin.Context) {
	if c.GetHeader("Authorization") != "" {
		s.requireBot(c)
		return
	}
	ctx := c.Request.Context()
	botID, name := c.Param("bot"), c.Param("event")
	b, err := s.bots.get(ctx, botID, func(ctx context.Context) (store.Bot, error) { return s.store.GetBot(ctx, botID) })
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalid) {
		abort(c, errStoreDown)
		return
	}
	if err != nil {
		abort(c, errUnauthenticated)
		return
	}
	ev, err := s.lookupEvent(ctx, botID, name)
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalid) {
		abort(c, errStoreDown)
		return
	}
	in, derr := decodeInput(ev.Input)
	if err != nil || derr != nil || in.Signature == nil {
		abort(c, errUnauthenticated)
		return
	}
	body, aerr := s.readBody(c)
	if aerr != nil {
		abort(c, aerr)
		return
	}
	if in.Signature.Verify(body, c.GetHeader(in.Signature.Header)) != nil {
		abort(c, errBadEventSignature)
		return
	}
	// The handler reads the body again.
	c.Request.Body = io.NopCloser(bytes.NewReader(body))
	c.Request.ContentLength = int64(len(body))
	c.Set(ctxPrincipal, principal{botID: botID})
	c.Set(ctxBot, b)
}

// parseDispatch reads a dispatch body: through the event's input mapping
// when it has one, as BuilderBot's {from, name, ...} otherwise.
func (s *server) parseDispatch(c *gin.Context, botID, event string, body []byte) (compat.Request, *apiError) {
	ev, err := s.lookupEvent(c.Request.Context(), botID, event)
	if err != nil {
		return compat.Request{}, storeError(err, "event")
	}
	in, err := decodeInput(ev.Input)
	if err != nil {
		return compat.Request{}, newError(http.StatusInternalServerError, "internal", "the event's stored input cannot be read")
	}
	if in.Mapping == nil {
		req, perr := compat.ParseDispatch(c.GetHeader("Content-Type"), body)
		if perr != nil {
			return req, compatError(perr)
		}
		return req, nil
	}
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return compat.Request{}, newError(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
	}
	m, err := s.mappings.compile(*in.Mapping)
	if err != nil {
		return compat.Request{}, mappingError(err)
	}
	r, err := m.Apply(body, mappingHeaders(c.Request.Header))
	if err != nil {
		return compat.Request{}, mappingError(err)
	}
	req, perr := compat.ParseMapped(r.User, r.Name, r.Data)
	if perr != nil {
		return req, compatError(perr)
	}
	if r.IdempotencyKey != "" {
		// Scoped to the event: one order id may start two events.
		req.IdempotencyKey = event + ":" + r.IdempotencyKey
	}
	return req, nil
}

// mappingHeaders are the request's headers a mapping may read: lower-case
// names, first values, without credentials.
func mappingHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		k = strings.ToLower(k)
		if len(v) == 0 || k == "authorization" || k == "cookie" {
			continue
		}
		out[k] = v[0]
	}
	return out
}

// mappingCache keeps compiled mappings by their spec: compiling costs
// more than running, and an event's mapping changes rarely.
type mappingCache struct {
	mu sync.Mutex
	m  map[inputmap.Spec]*inputmap.Mapping
}

func (mc *mappingCache) compile(spec inputmap.Spec) (*inputmap.Mapping, error) {
	mc.mu.Lock()
	m, ok := mc.m[spec]
	mc.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := inputmap.Compile(spec)
	if err != nil {
		return nil, err
	}
	mc.mu.Lock()
	if mc.m == nil || len(mc.m) > 10_000 {
		mc.m = map[inputmap.Spec]*inputmap.Mapping{}
	}
	mc.m[spec] = m
	mc.mu.Unlock()
	return m, nil
}
