package flow

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError is one problem found in a flow document. Path names the
// offending field, e.g. "steps[2].next" or "steps[0].validate.regex"; it is
// empty for problems with the document as a whole (syntax, size).
type FieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// ValidationErrors lists every problem [Parse] found. The ingress maps it to
// a 422 response whose field is the first Path.
type ValidationErrors []FieldError

// Error joins the problems into one line per field.
func (v ValidationErrors) Error() string {
	var b strings.Builder
	b.WriteString("invalid flow: ")
	for i, e := range v {
		if i > 0 {
			b.WriteString("; ")
		}
		if e.Path != "" {
			b.WriteString(e.Path)
			b.WriteString(": ")
		}
		b.WriteString(e.Message)
	}
	return b.String()
}

// maxFieldErrors caps the list: a hostile document could otherwise make the
// error (and the 422 body) as large as the document itself many times over.
const maxFieldErrors = 100

// add records a problem; it is a no-op beyond maxFieldErrors.
func (v *ValidationErrors) add(path, format string, args ...any) {
	if len(*v) >= maxFieldErrors {
		return
	}
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	*v = append(*v, FieldError{Path: path, Message: msg})
}

// Errors returned by [Apply] when the caller, not the flow, is at fault.
// Problems caused by the flow or by run data never surface as errors: they
// end the run with status failed and State.Error set.
var (
	// ErrNotParsed: the Definition was not produced by Parse, so its
	// expressions were never compiled.
	ErrNotParsed = errors.New("flow: definition was not produced by Parse")
	// ErrAlreadyStarted: a Start event was applied to a state that already ran.
	ErrAlreadyStarted = errors.New("flow: run already started")
	// ErrNotStarted: an event other than Start was applied to a fresh state.
	ErrNotStarted = errors.New("flow: run not started")
	// ErrUnknownEvent: the event is not one of this package's event types.
	ErrUnknownEvent = errors.New("flow: unknown event type")
)
