package recrubo

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// Recrubo's webhooks (docs.recrubo.app, "Setting up webhooks"): a call to
// the webhook's URL with a JSON:API document of type webhookPayload whose
// attributes name the webhook, the event (create, update, delete), the
// updated fields and the resource after the event; the webhook secret is
// sent as it is in the X-Recrubo-Webhook-Secret header.

// HeaderSecret carries the webhook secret on every delivery.
const HeaderSecret = "X-Recrubo-Webhook-Secret"

// ContentType is the media type of a WebhookPayload delivery.
const ContentType = "application/vnd.api+json"

// Webhook events Flowgate delivers for FlowRuns. Runs are never deleted on
// their own, so "delete" is not offered.
const (
	EventCreate = "create"
	EventUpdate = "update"
)

// FieldStatus is the one FlowRun attribute whose changes Flowgate reports.
const FieldStatus = "status"

// typePrefix marks a subscription's event types as a Recrubo webhook's:
// "recrubo.flowRuns.create", "recrubo.flowRuns.update" and
// "recrubo.flowRuns.update.status" (an update webhook limited to fields).
// The types say both what the subscription wants and that it is delivered
// as a WebhookPayload.
const typePrefix = "recrubo." + FlowRunType + "."

// SubscriptionType is the subscription event type of a Recrubo webhook on
// FlowRuns for event, limited to fields (update only; nil: any change).
// It refuses events and fields Flowgate cannot deliver.
func SubscriptionType(event string, fields []string) (string, error) {
	switch event {
	case EventCreate:
		if len(fields) > 0 {
			return "", fmt.Errorf("fields apply to the update event only")
		}
		return typePrefix + EventCreate, nil
	case EventUpdate:
		for _, f := range fields {
			if f != FieldStatus {
				return "", fmt.Errorf("field %q: Flowgate reports changes of the FlowRun's status only", f)
			}
		}
		if len(fields) > 0 {
			return typePrefix + EventUpdate + "." + FieldStatus, nil
		}
		return typePrefix + EventUpdate, nil
	}
	return "", fmt.Errorf("event %q: use create or update", event)
}

// Webhook is a Recrubo webhook read back from its subscription event types.
type Webhook struct {
	Event  string
	Fields []string
}

// ParseSubscription reports whether a subscription with these event types
// is a Recrubo webhook, and which.
func ParseSubscription(types []string) (Webhook, bool) {
	for _, t := range types {
		rest, ok := strings.CutPrefix(t, typePrefix)
		if !ok {
			continue
		}
		switch rest {
		case EventCreate:
			return Webhook{Event: EventCreate}, true
		case EventUpdate:
			return Webhook{Event: EventUpdate}, true
		case EventUpdate + "." + FieldStatus:
			return Webhook{Event: EventUpdate, Fields: []string{FieldStatus}}, true
		}
	}
	return Webhook{}, false
}

// IsSubscriptionType reports whether t is a Recrubo webhook's event type.
func IsSubscriptionType(t string) bool { return strings.HasPrefix(t, typePrefix) }

// Wants reports whether the webhook is called for a run's change from
// previous to status (Flowgate's run statuses), and with which event and
// fields. A run's creation is "create"; any later change of its status in
// Recrubo's vocabulary is an "update" of the field status. Changes that
// Recrubo's vocabulary does not show (running ↔ waiting) call nothing.
func (w Webhook) Wants(previous, status string) (event string, fields []string, ok bool) {
	if status == "created" {
		return EventCreate, nil, w.Event == EventCreate
	}
	if w.Event != EventUpdate || (previous != "" && Status(previous) == Status(status)) {
		return "", nil, false
	}
	return EventUpdate, []string{FieldStatus}, true
}

// PayloadID is the id of the WebhookPayload of one delivery: a UUID
// derived from the delivery's id, so a redelivery carries the same one.
func PayloadID(deliveryID string) string {
	return uuid.NewSHA1(payloadNamespace, []byte(deliveryID)).String()
}

var payloadNamespace = uuid.MustParse("0b6e7c8e-3f0a-5d6e-9f4c-2a1d7e5b9c30")

type payloadAttributes struct {
	WebhookID string   `json:"webhookId"`
	Event     string   `json:"event"`
	Fields    []string `json:"fields,omitempty"`
	Resource  Resource `json:"resource"`
}

// RenderWebhookPayload renders one delivery of webhook webhookID:
//
//	{"data":{"type":"webhookPayload","id":"<uuid>","attributes":{
//	  "webhookId":"<uuid>","event":"update","fields":["status"],
//	  "resource":{"id":"<flow run id>","type":"flowRuns","attributes":{...}}}}}
func RenderWebhookPayload(id, webhookID, event string, fields []string, run FlowRun) ([]byte, error) {
	return json.Marshal(struct {
		Data Resource `json:"data"`
	}{Resource{ID: id, Type: "webhookPayload", Attributes: payloadAttributes{
		WebhookID: webhookID, Event: event, Fields: slices.Clone(fields), Resource: FlowRunResource(run)}}})
}
