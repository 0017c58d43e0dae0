package flow

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/flowgate/flowgate/shared/events"
)

// DefaultMaxSteps is the step budget of a run whose Definition sets no
// MaxSteps. Validation already rejects loops that never wait, so the budget
// only stops flows that loop through waits or hand over between flows
// forever; it counts every step a run executes over its whole life.
const DefaultMaxSteps = 1000

// Definition is a parsed and validated flow. Build one with [Parse]; a
// Definition is read-only afterwards and safe for concurrent use by any
// number of Apply calls.
type Definition struct {
	// ID, Name, Description and Version are informational: the store keys
	// flows and versions itself.
	ID          string `json:"id,omitempty"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	Version     int    `json:"version,omitempty"`
	// MaxSteps is this flow's step budget per run; 0 means DefaultMaxSteps.
	// The runner may lower or raise it after Parse (e.g. from its config).
	MaxSteps int `json:"max_steps,omitempty"`
	// Steps run in order unless a step's next (or branch, goto…) says otherwise.
	Steps []Step `json:"steps"`

	// index maps step id → position in Steps.
	index map[string]int
	// programs holds every compiled expression, keyed by its source, so
	// Apply never compiles.
	programs map[string]*vm.Program
	// regexps holds every compiled ask validation regex, keyed by source.
	regexps map[string]*regexp.Regexp
}

// StepType names what a step does.
type StepType string

// Step types.
const (
	StepSend         StepType = "send"
	StepTemplate     StepType = "template"
	StepWhatsAppFlow StepType = "whatsapp_flow"
	StepAsk          StepType = "ask"
	StepSet          StepType = "set"
	StepBranch       StepType = "branch"
	StepWait         StepType = "wait"
	StepHTTP         StepType = "http"
	StepGoto         StepType = "goto"
	StepEnd          StepType = "end"
)

// StepTypes lists every step type, in documentation order.
var StepTypes = []StepType{
	StepSend, StepTemplate, StepWhatsAppFlow, StepAsk, StepSet,
	StepBranch, StepWait, StepHTTP, StepGoto, StepEnd,
}

// Step is one instruction of a flow. It is a flat record: which fields a
// step may use depends on its Type, and Parse rejects the others (see
// docs/flows.md for the per-type table).
type Step struct {
	ID   string   `json:"id"`
	Type StepType `json:"type"`
	// Next overrides the default successor (the following step; after the
	// last step the run completes). Not used by branch, goto and end.
	Next string `json:"next,omitempty"`
	// If, when set, is an expression; when it is false the step is skipped
	// and the run continues with the step's successor.
	If string `json:"if,omitempty"`

	// Message content: send, and the prompt of ask. Exactly one of Text
	// (optionally with Buttons or List), Image, Document or Video.
	Text     string          `json:"text,omitempty"`
	Image    string          `json:"image,omitempty"`
	Document string          `json:"document,omitempty"`
	Video    string          `json:"video,omitempty"`
	Caption  string          `json:"caption,omitempty"`
	Filename string          `json:"filename,omitempty"`
	Buttons  []events.Button `json:"buttons,omitempty"`
	List     *events.List    `json:"list,omitempty"`
	// SkipIfEmpty skips a send when any placeholder in it renders empty
	// (BuilderBot's `referralCode ? "…" : ""` idiom).
	SkipIfEmpty bool `json:"skip_if_empty,omitempty"`

	// template: a WhatsApp template message.
	Template   string           `json:"template,omitempty"`
	Language   string           `json:"language,omitempty"`
	Params     []string         `json:"params,omitempty"`
	Components []map[string]any `json:"components,omitempty"`
	FlowButton *FlowButton      `json:"flow_button,omitempty"`
	// WaitCompletion makes a template with a flow button wait for the
	// WhatsApp Flow's completion, like a whatsapp_flow step.
	WaitCompletion bool `json:"wait_completion,omitempty"`

	// whatsapp_flow: an interactive WhatsApp Flow message (Text is its body).
	FlowID         string         `json:"flow_id,omitempty"`
	FlowName       string         `json:"flow_name,omitempty"`
	CTA            string         `json:"cta,omitempty"`
	Header         string         `json:"header,omitempty"`
	Footer         string         `json:"footer,omitempty"`
	Screen         string         `json:"screen,omitempty"`
	Action         string         `json:"action,omitempty"`
	Mode           string         `json:"mode,omitempty"`
	FlowActionData map[string]any `json:"flow_action_data,omitempty"`
	// FlowToken correlates the completion (nfm_reply) with this run; when
	// empty a deterministic token is derived from run id, step and sequence.
	FlowToken string `json:"flow_token,omitempty"`

	// ask (and WhatsApp Flow completions): where the answer goes.
	Attribute string      `json:"attribute,omitempty"`
	Validate  *Validation `json:"validate,omitempty"`
	// Retries is how many times an invalid answer is re-asked before giving
	// up (nil means DefaultRetries).
	Retries *int `json:"retries,omitempty"`
	// RetryText is sent instead of the prompt when re-asking.
	RetryText string `json:"retry_text,omitempty"`
	// OnInvalid is where to go after the last invalid answer; without it
	// the run fails.
	OnInvalid string `json:"on_invalid,omitempty"`
	// Timeout bounds a wait for a reply, a Flow completion or an HTTP call.
	Timeout Duration `json:"timeout,omitempty"`
	// OnTimeout is where to go when Timeout passes; without it the run expires.
	OnTimeout string `json:"on_timeout,omitempty"`

	// set: attribute and run variable values, as expressions.
	Attributes map[string]string `json:"attributes,omitempty"`
	Vars       map[string]string `json:"vars,omitempty"`

	// branch: the first condition that is true wins, else Default (or the
	// following step).
	Conditions []Condition `json:"conditions,omitempty"`
	Default    string      `json:"default,omitempty"`

	// wait
	Duration Duration `json:"duration,omitempty"`

	// http
	Method  string            `json:"method,omitempty"`
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// Body is sent as is when it is a string, JSON-encoded otherwise;
	// placeholders are rendered in every string inside it.
	Body any `json:"body,omitempty"`
	// Map copies values from a JSON response (http) or Flow completion
	// (whatsapp_flow, template) into attributes: attribute → path.
	Map     map[string]string `json:"map,omitempty"`
	OnError string            `json:"on_error,omitempty"`

	// goto: exactly one of Step (this flow) and Flow (another flow).
	Step string `json:"step,omitempty"`
	Flow string `json:"flow,omitempty"`

	// end
	Status string `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// FlowButton is the Flow button of a template (sub_type "flow").
type FlowButton struct {
	Index          string         `json:"index,omitempty"`
	FlowToken      string         `json:"flow_token,omitempty"`
	FlowActionData map[string]any `json:"flow_action_data,omitempty"`
}

// Validation says what an ask accepts. Written as an object, or in YAML and
// JSON as a bare type name (validate: number).
type Validation struct {
	// Type is one of text, number, email, phone, regex, button.
	Type string `json:"type"`
	// Regex is the pattern (RE2 syntax) a regex answer must match.
	Regex string `json:"regex,omitempty"`
	// Min and Max bound a number, or the length in characters of a text.
	Min *float64 `json:"min,omitempty"`
	Max *float64 `json:"max,omitempty"`
}

// Validation types.
const (
	ValidateText   = "text"
	ValidateNumber = "number"
	ValidateEmail  = "email"
	ValidatePhone  = "phone"
	ValidateRegex  = "regex"
	ValidateButton = "button"
)

// DefaultRetries is how many times an ask re-asks when it sets no retries.
const DefaultRetries = 2

// Condition is one arm of a branch.
type Condition struct {
	When string `json:"when"`
	Next string `json:"next"`
}

// Duration is a time.Duration written as a string: Go syntax ("90s",
// "1h30m") plus whole days ("2d").
type Duration time.Duration

// MarshalJSON writes the canonical Go form, e.g. "1h30m0s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts the forms ParseDuration accepts.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"10m\"")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// maxDuration bounds every duration in a flow: longer waits are almost
// certainly typos, and it keeps deadline arithmetic far from overflow.
const maxDuration = 366 * 24 * time.Hour

// ParseDuration parses Go duration syntax plus a whole-day form ("7d").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 366 {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use e.g. \"30s\", \"10m\", \"2h\", \"1d\")", s)
	}
	return v, nil
}

// JSON returns the canonical JSON encoding of the definition: the form the
// store keeps. Parse(JSON()) yields an equal Definition.
func (d *Definition) JSON() ([]byte, error) {
	return json.Marshal(d)
}

// StepByID returns the step with the given id.
func (d *Definition) StepByID(id string) (*Step, bool) {
	i, ok := d.index[id]
	if !ok {
		return nil, false
	}
	return &d.Steps[i], true
}

// maxSteps is the effective step budget.
func (d *Definition) maxSteps() int {
	if d.MaxSteps > 0 {
		return d.MaxSteps
	}
	return DefaultMaxSteps
}

// successor is where a step goes when it finishes normally: its Next, else
// the following step, else "" (the run completes).
func (d *Definition) successor(i int) string {
	s := &d.Steps[i]
	if s.Next != "" {
		return s.Next
	}
	if i+1 < len(d.Steps) {
		return d.Steps[i+1].ID
	}
	return ""
}

// retries is the effective retry count of an ask.
func (s *Step) retries() int {
	if s.Retries != nil {
		return *s.Retries
	}
	return DefaultRetries
}

// waitsForCompletion reports whether the step suspends the run until a
// WhatsApp Flow completion arrives.
func (s *Step) waitsForCompletion() bool {
	return s.Type == StepWhatsAppFlow || (s.Type == StepTemplate && s.WaitCompletion)
}
