package flow

import (
	"time"

	"github.com/flowgate/flowgate/shared/events"
)

// Effect is something the runner must do after storing the new state: one
// of Send, ScheduleTimer, CallHTTP, SetAttributes, GotoFlow. Effects come in
// the order the runner should perform them.
type Effect interface {
	effect()
}

// Send publishes one outbound message. Seq is the run's message sequence
// number: the message id is run id + Seq.
type Send struct {
	Seq     int
	Step    string
	Content events.Content
}

// ScheduleTimer asks for a TimerFired event at At (durably: waits must
// survive restarts).
type ScheduleTimer struct {
	At   time.Time
	Step string
}

// CallHTTP asks the runner to make a request and feed back an HTTPResult.
// The runner enforces the address policy (shared/egress: the URL, then every resolved address at dial time).
type CallHTTP struct {
	Step    string
	Method  string
	URL     string
	Headers map[string]string
	Body    []byte
	Timeout time.Duration
}

// SetAttributes persists attribute values on the contact.
type SetAttributes struct {
	Values map[string]any
}

// GotoFlow hands the contact over to another flow. The current run has
// completed; the runner loads flow FlowID and applies Start — which carries
// the contact, data, attributes, variables, message sequence and step count
// of this run — to a fresh State.
type GotoFlow struct {
	FlowID string
	Start  Start
}

func (Send) effect()          {}
func (ScheduleTimer) effect() {}
func (CallHTTP) effect()      {}
func (SetAttributes) effect() {}
func (GotoFlow) effect()      {}
