package compat

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/recrubo"
)

// JSON:API resource types of the Recrubo API.
const (
	RecruboThreadType  = "messageThreads"
	RecruboFlowRunType = "flowRuns"
)

// Thread is a Recrubo MessageThread to create: one user on one channel.
type Thread struct {
	// ID is the client-generated id, when the document carried one.
	ID string
	// Channel is whatsapp, telegram or rcs (or sandbox).
	Channel string
	// Identifier is the user on Channel: E.164 for whatsapp and rcs, a
	// Telegram chat id for telegram.
	Identifier string
}

// FlowRun is a Recrubo FlowRun to create.
type FlowRun struct {
	// ID is the client-generated id, when the document carried one.
	ID              string
	FlowID          string
	MessageThreadID string
	// State is the run's initial state; never nil.
	State map[string]any
	// InitialMessage is the template that opens the conversation. Recrubo
	// requires it for WhatsApp threads; the parser does not know the
	// thread's channel, so the ingress checks that once it has the thread.
	InitialMessage *events.Content
}

// Request turns a flow run on thread into a trigger request for one user.
func (f FlowRun) Request(thread Thread) Request {
	return Request{
		Channel:        thread.Channel,
		Audience:       events.Audience{Users: []string{thread.Identifier}, Platform: thread.Channel},
		FlowID:         f.FlowID,
		RunState:       f.State,
		InitialMessage: f.InitialMessage,
		usersField:     "/data/attributes/identifier",
	}
}

// ParseRecruboThread parses POST /public/v2/message-threads:
//
//	{"data": {"type": "messageThreads", "attributes": {"channel": "whatsapp", "identifier": "31612345678"}}}
//
// Content-Type must be application/vnd.api+json (parameters other than
// profile are refused with 415, per JSON:API). A malformed document is a
// 400, a type other than messageThreads a 409 (JSON:API), a missing or
// invalid attribute a 422; Field is a JSON pointer. The identifier of a
// whatsapp or rcs thread is a phone number with country code, "+" optional,
// normalised to E.164.
func ParseRecruboThread(contentType string, body []byte) (Thread, *Error) {
	id, attrs, err := parseResource(contentType, body, RecruboThreadType)
	if err != nil {
		return Thread{}, err
	}
	const cf, idf = "/data/attributes/channel", "/data/attributes/identifier"
	if isNull(attrs["channel"]) {
		return Thread{}, missing(cf)
	}
	ch, err := rawString(attrs["channel"], cf)
	if err != nil {
		return Thread{}, err
	}
	channel := strings.ToLower(strings.TrimSpace(ch))
	if !provider.Known(channel) {
		return Thread{}, newError(http.StatusUnprocessableEntity, CodeUnknownChannel, cf,
			"channel %q is not one of whatsapp, telegram, rcs", truncate(ch, 40))
	}
	if isNull(attrs["identifier"]) {
		return Thread{}, missing(idf)
	}
	ident, err := rawID(attrs["identifier"], idf)
	if err != nil {
		return Thread{}, err
	}
	if strings.TrimSpace(ident) == "" {
		return Thread{}, missing(idf)
	}
	if ident, err = normalizeUser(channel, ident, idf); err != nil {
		return Thread{}, err
	}
	return Thread{ID: id, Channel: channel, Identifier: ident}, nil
}

// ParseRecruboFlowRun parses POST /public/v2/flow-runs:
//
//	{"data": {"type": "flowRuns", "attributes": {"flowId": "...", "messageThreadId": "...",
//	  "state": {}, "initialMessage": {"type": "template", "template": {"id": "...", "components": [...]}}}}}
//
// with the document rules of ParseRecruboThread. flowId and messageThreadId
// are required strings; state is an optional object; initialMessage, when
// given, must be a template: it becomes events.Content{Type: "template",
// Template: {Name: id, Language: language (if given), Components: components}}.
func ParseRecruboFlowRun(contentType string, body []byte) (FlowRun, *Error) {
	id, attrs, err := parseResource(contentType, body, RecruboFlowRunType)
	if err != nil {
		return FlowRun{}, err
	}
	const p = "/data/attributes/"
	run := FlowRun{ID: id}
	if run.FlowID, err = requiredToken(attrs["flowId"], p+"flowId"); err != nil {
		return FlowRun{}, err
	}
	if run.MessageThreadID, err = requiredToken(attrs["messageThreadId"], p+"messageThreadId"); err != nil {
		return FlowRun{}, err
	}
	if run.State, err = decodeObjectField(attrs["state"], p+"state"); err != nil {
		return FlowRun{}, err
	}
	if run.State == nil {
		run.State = map[string]any{}
	}
	if err := checkDataSize(run.State, p+"state"); err != nil {
		return FlowRun{}, err
	}
	if !isNull(attrs["initialMessage"]) {
		if run.InitialMessage, err = parseRecruboMessage(attrs["initialMessage"], p+"initialMessage"); err != nil {
			return FlowRun{}, err
		}
	}
	return run, nil
}

func requiredToken(raw json.RawMessage, field string) (string, *Error) {
	if isNull(raw) {
		return "", missing(field)
	}
	s, err := rawString(raw, field)
	if err != nil {
		return "", err
	}
	if s = strings.TrimSpace(s); s == "" {
		return "", missing(field)
	}
	if err := checkToken(s, field, MaxNameLen); err != nil {
		return "", err
	}
	return s, nil
}

func parseRecruboMessage(raw json.RawMessage, field string) (*events.Content, *Error) {
	v, err := rawToPlain(raw, field)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, invalid(field, "%s must be an object, not %s", field, jsonKind(v))
	}
	typ, _ := m["type"].(string)
	if typ != events.ContentTemplate {
		if _, present := m["type"]; !present {
			return nil, missing(field + "/type")
		}
		return nil, invalid(field+"/type", `%s/type must be "template"`, field)
	}
	tm, ok := m["template"].(map[string]any)
	if !ok {
		if m["template"] == nil {
			return nil, missing(field + "/template")
		}
		return nil, invalid(field+"/template", "%s/template must be an object", field)
	}
	tid, err := plainID(tm["id"], field+"/template/id")
	if err != nil {
		if tm["id"] == nil {
			return nil, missing(field + "/template/id")
		}
		return nil, err
	}
	if tid = strings.TrimSpace(tid); tid == "" {
		return nil, missing(field + "/template/id")
	}
	if err := checkToken(tid, field+"/template/id", MaxNameLen); err != nil {
		return nil, err
	}
	t := &events.Template{Name: tid}
	if lang, present := tm["language"]; present && lang != nil {
		s, ok := lang.(string)
		if !ok {
			return nil, invalid(field+"/template/language", "%s/template/language must be a string", field)
		}
		t.Language = s
	}
	if comps, present := tm["components"]; present && comps != nil {
		list, ok := comps.([]any)
		if !ok {
			return nil, invalid(field+"/template/components", "%s/template/components must be an array", field)
		}
		t.Components = make([]map[string]any, len(list))
		for i, c := range list {
			cm, ok := c.(map[string]any)
			if !ok {
				f := field + "/template/components/" + strconv.Itoa(i)
				return nil, invalid(f, "%s must be an object, not %s", f, jsonKind(c))
			}
			t.Components[i] = cm
		}
	}
	if err := checkDataSize(m, field); err != nil {
		return nil, err
	}
	return &events.Content{Type: events.ContentTemplate, Template: t}, nil
}

// parseResource checks the media type and the JSON:API envelope of a
// single-resource POST and returns the resource's id and attributes.
func parseResource(contentType string, body []byte, wantType string) (string, map[string]json.RawMessage, *Error) {
	if err := checkJSONAPIContentType(contentType); err != nil {
		return "", nil, err
	}
	doc, err := decodeRawObject(body)
	if err != nil {
		return "", nil, err
	}
	badDoc := func(pointer, format string, args ...any) *Error {
		return newError(http.StatusBadRequest, CodeInvalidDocument, pointer, format, args...)
	}
	rawData, ok := doc["data"]
	if !ok {
		return "", nil, badDoc("/data", "a JSON:API document with a primary data member is required")
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(rawData, &data); err != nil || data == nil {
		return "", nil, badDoc("/data", "/data must be a resource object, not %s", rawKind(rawData))
	}
	rawType, ok := data["type"]
	if !ok {
		return "", nil, badDoc("/data/type", "a resource object must have a type")
	}
	var typ string
	if err := json.Unmarshal(rawType, &typ); err != nil {
		return "", nil, badDoc("/data/type", "/data/type must be a string, not %s", rawKind(rawType))
	}
	if typ != wantType {
		return "", nil, newError(http.StatusConflict, CodeTypeMismatch, "/data/type",
			"this endpoint creates %s, not %q", wantType, truncate(typ, 40))
	}
	var id string
	if rawID, ok := data["id"]; ok {
		if err := json.Unmarshal(rawID, &id); err != nil {
			return "", nil, badDoc("/data/id", "/data/id must be a string, not %s", rawKind(rawID))
		}
		if id != "" {
			if err := checkToken(id, "/data/id", MaxNameLen); err != nil {
				return "", nil, err
			}
		}
	}
	rawAttrs, ok := data["attributes"]
	if !ok || isNull(rawAttrs) {
		return "", nil, missing("/data/attributes")
	}
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(rawAttrs, &attrs); err != nil || attrs == nil {
		return "", nil, badDoc("/data/attributes", "/data/attributes must be an object, not %s", rawKind(rawAttrs))
	}
	return id, attrs, nil
}

// FlowRunView is what RenderRecruboFlowRun shows of a run.
type FlowRunView = recrubo.FlowRun

// RenderRecruboFlowRun renders a run as the JSON:API document Recrubo
// answers with (POST and GET /public/v2/flow-runs), to be sent with
// Content-Type application/vnd.api+json. Nil state and context render as {}.
func RenderRecruboFlowRun(v FlowRunView) ([]byte, error) { return recrubo.RenderFlowRun(v) }

// ThreadID is the Recrubo MessageThread id of a contact (recrubo.ThreadID).
func ThreadID(contactID string) string { return recrubo.ThreadID(contactID) }

// ContactID is the contact id a MessageThread id names (recrubo.ContactID).
func ContactID(threadID string) string { return recrubo.ContactID(threadID) }

// RecruboStatus is a run status in Recrubo's FlowRun vocabulary (recrubo.Status).
func RecruboStatus(runStatus string) string { return recrubo.Status(runStatus) }

type jsonapiResource[A any] struct {
	Data struct {
		ID         string `json:"id"`
		Type       string `json:"type"`
		Attributes A      `json:"attributes"`
	} `json:"data"`
}

type threadAttributes struct {
	CreatedAt  string `json:"createdAt"`
	UpdatedAt  string `json:"updatedAt"`
	Channel    string `json:"channel"`
	Identifier string `json:"identifier"`
}

// RenderRecruboThread renders a created MessageThread as a JSON:API document
// whose id the caller then uses as messageThreadId.
func RenderRecruboThread(id string, t Thread, createdAt time.Time) []byte {
	var doc jsonapiResource[threadAttributes]
	doc.Data.ID = id
	doc.Data.Type = RecruboThreadType
	ts := createdAt.UTC().Format(recrubo.TimeLayout)
	doc.Data.Attributes = threadAttributes{CreatedAt: ts, UpdatedAt: ts, Channel: t.Channel, Identifier: t.Identifier}
	b, _ := json.Marshal(doc) // strings only: cannot fail
	return b
}

type jsonapiError struct {
	Status string         `json:"status"`
	Code   string         `json:"code"`
	Title  string         `json:"title"`
	Detail string         `json:"detail,omitempty"`
	Source *jsonapiSource `json:"source,omitempty"`
}

type jsonapiSource struct {
	Pointer   string `json:"pointer,omitempty"`
	Parameter string `json:"parameter,omitempty"`
	Header    string `json:"header,omitempty"`
}

// RenderJSONAPIError renders e as a JSON:API error document
// ({"errors":[{"status","code","title","detail","source"}]}), for callers
// of the Recrubo API. A Field that is a JSON pointer becomes source.pointer,
// a header name (Content-Type, Authorization, Idempotency-Key) source.header,
// anything else source.parameter. A nil e renders a 500.
func RenderJSONAPIError(e *Error) []byte {
	if e == nil {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal_error", Message: "internal error"}
	}
	je := jsonapiError{
		Status: strconv.Itoa(e.Status),
		Code:   e.Code,
		Title:  http.StatusText(e.Status),
		Detail: e.Message,
	}
	switch f := e.Field; {
	case f == "":
	case strings.HasPrefix(f, "/"):
		je.Source = &jsonapiSource{Pointer: f}
	case f == "Content-Type" || f == "Authorization" || f == "Idempotency-Key":
		je.Source = &jsonapiSource{Header: f}
	default:
		je.Source = &jsonapiSource{Parameter: f}
	}
	b, _ := json.Marshal(struct {
		Errors []jsonapiError `json:"errors"`
	}{[]jsonapiError{je}})
	return b
}
