package flow

import (
	"encoding/json"
	"time"

	"github.com/flowgate/flowgate/shared/events"
)

// Event is something that happened to a run: one of Start, Reply,
// TimerFired, HTTPResult, FlowCompleted, DeliveryFailed, Cancel, Expire,
// Fail (passed by value). Every event carries Now, the runner's clock when it
// applied the event: the interpreter never reads a clock itself.
type Event interface {
	at() time.Time
}

// Start begins a run on a fresh (zero) State.
type Start struct {
	Now   time.Time
	RunID string
	// Contact is who the run is for; its Attributes seed State.Attributes.
	Contact Contact
	// Data is the trigger data ({{ data.plan }}, {{ plan }}).
	Data map[string]any
	// Vars, NextSeq and StepsExecuted carry a run over from another flow
	// (see GotoFlow); zero for a new run.
	Vars          map[string]any
	NextSeq       int
	StepsExecuted int
	// OpenWindow, when set, is a template that must open the contact's
	// reply window (WhatsApp's 24 hours) before the flow may speak: the run
	// sends it as message 0 and waits for the contact (WaitWindow). The
	// runner applies Start again, without OpenWindow, when the contact
	// answers; only then does the flow's first step run.
	OpenWindow *events.Content
}

// Reply is the contact's answer to an ask.
type Reply struct {
	Now  time.Time
	Text string
	// ButtonID is the id of a pressed quick reply or list row.
	ButtonID string
}

// TimerFired says a ScheduleTimer effect's time came. The runner may
// deliver stale or duplicate timers: the interpreter acts only when the run
// is waiting with a deadline that Now has reached.
type TimerFired struct {
	Now time.Time
}

// HTTPResult is the outcome of a CallHTTP effect: a response, or Err when
// the request could not be made (refused address, timeout, network).
type HTTPResult struct {
	Now        time.Time
	StatusCode int
	Body       json.RawMessage
	Err        string
}

// FlowCompleted is a WhatsApp Flow submission (nfm_reply).
type FlowCompleted struct {
	Now       time.Time
	FlowToken string
	Data      map[string]any
}

// DeliveryFailed says a message of the run could not be delivered; the run
// fails. It also fails a completed run: a short flow completes in the Apply
// that sends its messages, before any delivery result exists.
type DeliveryFailed struct {
	Now    time.Time
	Seq    int
	Reason string
}

// Cancel stops a run (API cancel, or a newer trigger superseding it).
type Cancel struct {
	Now    time.Time
	Reason string
}

// Expire ends a run that outlived its deadline.
type Expire struct {
	Now    time.Time
	Reason string
}

// Fail ends a run the runner cannot go on with: its flow was deleted, its
// stored state no longer decodes, or the interpreter refused an event.
// Like Cancel and Expire it needs no definition and ends a run that has
// not started.
type Fail struct {
	Now    time.Time
	Reason string
}

func (e Start) at() time.Time          { return e.Now }
func (e Reply) at() time.Time          { return e.Now }
func (e TimerFired) at() time.Time     { return e.Now }
func (e HTTPResult) at() time.Time     { return e.Now }
func (e FlowCompleted) at() time.Time  { return e.Now }
func (e DeliveryFailed) at() time.Time { return e.Now }
func (e Cancel) at() time.Time         { return e.Now }
func (e Expire) at() time.Time         { return e.Now }
func (e Fail) at() time.Time           { return e.Now }
