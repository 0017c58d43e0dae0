package compat

import (
	"encoding/json"
	"strings"

	"github.com/flowgate/flowgate/shared/recrubo"
)

// RecruboWebhookType is the JSON:API type of a Recrubo Webhook.
const RecruboWebhookType = "webhooks"

// Bounds of a Recrubo webhook's secret. Recrubo's own example secret is
// "mysecret": it is sent as it is in a header, not used as a signing key.
const (
	MinRecruboWebhookSecret = 8
	MaxRecruboWebhookSecret = 256
)

// RecruboWebhook is a Recrubo Webhook to create: FlowRun changes delivered
// to URL as WebhookPayload documents, with Secret in the
// X-Recrubo-Webhook-Secret header.
type RecruboWebhook struct {
	Event  string
	Fields []string
	URL    string
	Secret string
	// EventType is the subscription event type that stores it
	// (recrubo.SubscriptionType).
	EventType string
}

// ParseRecruboWebhook parses POST /public/v2/webhooks:
//
//	{"data": {"type": "webhooks", "attributes": {"resource": "flowRuns", "event": "update",
//	  "fields": ["status"], "webhookUrl": "https://example.com/webhooks", "webhookSecret": "mysecret"}}}
//
// with the document rules of ParseRecruboThread. resource must be flowRuns
// (the only resource Flowgate has); event create or update; fields, for
// update only, may name status; webhookUrl and webhookSecret are required
// (Flowgate has no organization to fall back on). The URL itself is checked
// by the ingress (its egress rules).
func ParseRecruboWebhook(contentType string, body []byte) (RecruboWebhook, *Error) {
	_, attrs, err := parseResource(contentType, body, RecruboWebhookType)
	if err != nil {
		return RecruboWebhook{}, err
	}
	const p = "/data/attributes/"
	var w RecruboWebhook
	resource, err := requiredToken(attrs["resource"], p+"resource")
	if err != nil {
		return w, err
	}
	if resource != recrubo.FlowRunType {
		return w, invalid(p+"resource", "resource %q: Flowgate delivers webhooks for flowRuns only", clip(resource))
	}
	if w.Event, err = requiredToken(attrs["event"], p+"event"); err != nil {
		return w, err
	}
	if !isNull(attrs["fields"]) {
		if err := json.Unmarshal(attrs["fields"], &w.Fields); err != nil {
			return w, invalid(p+"fields", "fields must be an array of strings, not %s", rawKind(attrs["fields"]))
		}
	}
	et, terr := recrubo.SubscriptionType(w.Event, w.Fields)
	if terr != nil {
		field := p + "event"
		if w.Event == recrubo.EventCreate || w.Event == recrubo.EventUpdate {
			field = p + "fields"
		}
		return w, invalid(field, "%s", terr.Error())
	}
	w.EventType = et
	if isNull(attrs["webhookUrl"]) {
		return w, missing(p + "webhookUrl")
	}
	if w.URL, err = rawString(attrs["webhookUrl"], p+"webhookUrl"); err != nil {
		return w, err
	}
	w.URL = strings.TrimSpace(w.URL)
	if isNull(attrs["webhookSecret"]) {
		return w, missing(p + "webhookSecret")
	}
	if w.Secret, err = rawString(attrs["webhookSecret"], p+"webhookSecret"); err != nil {
		return w, err
	}
	if n := len(w.Secret); n < MinRecruboWebhookSecret || n > MaxRecruboWebhookSecret {
		return w, invalid(p+"webhookSecret", "webhookSecret must be 8 to 256 characters")
	}
	if strings.ContainsAny(w.Secret, "\r\n\x00") {
		return w, invalid(p+"webhookSecret", "webhookSecret must fit in an HTTP header")
	}
	return w, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
