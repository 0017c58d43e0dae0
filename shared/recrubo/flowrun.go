// Package recrubo owns Flowgate's rendering of Recrubo's API resources that
// two services share: the FlowRun resource (answered by the ingress's
// Recrubo routes and carried in webhooks by the delivery service), the
// WebhookPayload envelope of Recrubo's webhooks, MessageThread ids and the
// FlowRun status vocabulary.
package recrubo

import (
	"encoding/json"
	"time"

	"github.com/flowgate/flowgate/shared/events"
)

// FlowRunType is the JSON:API type of a FlowRun.
const FlowRunType = "flowRuns"

// TimeLayout is the timestamp form of Recrubo's resources: "2024-04-16T07:05:39+00:00".
const TimeLayout = "2006-01-02T15:04:05-07:00"

// FlowRun is what RenderFlowRun shows of a run.
type FlowRun struct {
	ID              string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	FlowID          string
	MessageThreadID string
	State           map[string]any
	InitialMessage  *events.Content
	Context         map[string]any
	// Status is the status shown (Status maps a run status to it).
	Status string
	Cost   float64
}

// Resource is a JSON:API resource object: what a document's "data" holds,
// and what a WebhookPayload's "resource" is.
type Resource struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Attributes any    `json:"attributes"`
}

type flowRunAttributes struct {
	CreatedAt       string         `json:"createdAt"`
	UpdatedAt       string         `json:"updatedAt"`
	FlowID          string         `json:"flowId"`
	MessageThreadID string         `json:"messageThreadId"`
	State           map[string]any `json:"state"`
	InitialMessage  *message       `json:"initialMessage"`
	Context         map[string]any `json:"context"`
	Status          string         `json:"status"`
	Cost            float64        `json:"cost"`
}

type message struct {
	Type     string    `json:"type"`
	Template *template `json:"template,omitempty"`
	Text     string    `json:"text,omitempty"`
}

type template struct {
	ID         string           `json:"id"`
	Language   string           `json:"language,omitempty"`
	Components []map[string]any `json:"components,omitempty"`
}

// FlowRunResource is v as a JSON:API resource object. Nil state and
// context show as {}.
func FlowRunResource(v FlowRun) Resource {
	a := flowRunAttributes{
		CreatedAt: v.CreatedAt.UTC().Format(TimeLayout), UpdatedAt: v.UpdatedAt.UTC().Format(TimeLayout),
		FlowID: v.FlowID, MessageThreadID: v.MessageThreadID, State: orEmpty(v.State), Context: orEmpty(v.Context),
		Status: v.Status, Cost: v.Cost,
	}
	if m := v.InitialMessage; m != nil {
		rm := &message{Type: m.Type}
		if m.Template != nil {
			rm.Template = &template{ID: m.Template.Name, Language: m.Template.Language, Components: m.Template.Components}
		} else {
			rm.Text = m.Text
		}
		a.InitialMessage = rm
	}
	return Resource{ID: v.ID, Type: FlowRunType, Attributes: a}
}

// RenderFlowRun renders a run as the JSON:API document Recrubo answers
// with (POST and GET /public/v2/flow-runs), to be sent with Content-Type
// application/vnd.api+json.
func RenderFlowRun(v FlowRun) ([]byte, error) {
	return json.Marshal(struct {
		Data Resource `json:"data"`
	}{FlowRunResource(v)})
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
