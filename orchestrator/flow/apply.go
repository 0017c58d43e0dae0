package flow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/flowgate/flowgate/shared/egress"
	"github.com/flowgate/flowgate/shared/events"
)

// httpGrace is added to an http step's timeout for the timer that guards
// the wait: the runner normally reports the timeout itself as an
// HTTPResult; the timer only rescues runs whose result was lost (a crash
// between storing the state and performing the call).
const httpGrace = 30 * time.Second

// Apply is the interpreter. It applies one event to a run's state and
// returns the new state and the effects the runner must perform, in order.
// It does no I/O, reads no clock (time is ev's Now) and never modifies st's
// maps or slices, so the same inputs always produce the same outputs.
//
// Events that do not apply to the state — a reply while the run is not
// asking, a stale or early timer, anything after the run ended — leave it
// unchanged: Apply returns st, no effects and no error (see Accepts).
// Problems caused by the flow or its data end the run with status failed
// and State.Error set; Apply returns an error only when the call itself is
// wrong (ErrNotParsed, ErrAlreadyStarted, ErrNotStarted, ErrUnknownEvent).
//
// The interrupts — Cancel, Expire, Fail and DeliveryFailed — need no
// definition (def may be nil: the runner applies them to runs whose flow
// is gone) and end a run that has not started too.
func Apply(def *Definition, st State, ev Event) (State, []Effect, error) {
	if ev == nil {
		return st, nil, ErrUnknownEvent
	}
	if _, ok := eventName(ev); !ok {
		return st, nil, ErrUnknownEvent
	}
	if (def == nil && NeedsDefinition(ev)) || (def != nil && def.index == nil) {
		return st, nil, ErrNotParsed
	}
	if start, ok := ev.(Start); ok {
		if !startable(st) {
			return st, nil, ErrAlreadyStarted
		}
		if start.RunID == "" {
			start.RunID = st.RunID // the runner may have put it in the state
		}
		r := newRun(def, State{}, start.Now)
		if start.OpenWindow != nil {
			r.openWindow(start)
		} else {
			r.start(start)
		}
		return r.done()
	}
	if fresh(st.Status) && NeedsDefinition(ev) {
		return st, nil, ErrNotStarted
	}
	if !Accepts(st, ev) {
		return st, nil, nil
	}
	r := newRun(def, st.clone(), ev.at())
	switch e := ev.(type) {
	case Reply:
		r.reply(e)
	case TimerFired:
		r.timerFired()
	case HTTPResult:
		r.httpResult(e)
	case FlowCompleted:
		r.flowCompleted(e)
	case DeliveryFailed:
		reason := "message could not be delivered"
		switch {
		case st.WaitingFor == WaitWindow:
			reason = "initial message could not be delivered"
		case e.Seq > 0:
			reason = fmt.Sprintf("message %d could not be delivered", e.Seq)
		}
		if e.Reason != "" {
			reason += ": " + e.Reason
		}
		r.interrupt(StatusFailed, "delivery failed", reason)
	case Cancel:
		r.interrupt(StatusCancelled, "cancelled", orDefault(e.Reason, "cancelled"))
	case Expire:
		r.interrupt(StatusExpired, "expired", orDefault(e.Reason, "expired"))
	case Fail:
		r.interrupt(StatusFailed, "failed", orDefault(e.Reason, "failed"))
	}
	return r.done()
}

// NeedsDefinition reports whether applying ev needs the run's flow
// definition: every event but the interrupts (Cancel, Expire, Fail,
// DeliveryFailed), which end a run wherever it is.
func NeedsDefinition(ev Event) bool {
	switch ev.(type) {
	case Cancel, Expire, Fail, DeliveryFailed:
		return false
	}
	return true
}

// Accepts reports whether Apply would act on ev in state st; when it is
// false Apply returns st unchanged, and the runner need not store anything.
func Accepts(st State, ev Event) bool {
	if _, ok := ev.(Start); ok {
		return startable(st)
	}
	switch ev.(type) {
	case DeliveryFailed:
		// Messages are delivered after the Apply that sent them, so a short
		// flow has usually completed by the time a failure is reported: a
		// failed message fails a completed run too.
		return !st.Status.Terminal() || st.Status == StatusCompleted
	case Cancel, Expire, Fail:
		return !st.Status.Terminal()
	}
	if fresh(st.Status) {
		return false
	}
	switch e := ev.(type) {
	case Reply:
		return st.Status == StatusWaiting && st.WaitingFor == WaitReply
	case TimerFired:
		return st.Status == StatusWaiting && !st.WaitDeadline.IsZero() && !e.Now.Before(st.WaitDeadline)
	case HTTPResult:
		return st.Status == StatusWaiting && st.WaitingFor == WaitHTTP
	case FlowCompleted:
		return st.Status == StatusWaiting && st.WaitingFor == WaitFlowCompletion &&
			(e.FlowToken == "" || e.FlowToken == st.FlowToken)
	}
	return false
}

// fresh reports whether a state with status s has not started.
func fresh(s Status) bool {
	return s == "" || s == StatusCreated || s == StatusQueued
}

// startable reports whether Start applies to st: a run that has not
// started, or one that waits for its contact to open the reply window.
func startable(st State) bool {
	return fresh(st.Status) || (st.Status == StatusWaiting && st.WaitingFor == WaitWindow)
}

func eventName(ev Event) (string, bool) {
	switch ev.(type) {
	case Start:
		return "start", true
	case Reply:
		return "reply", true
	case TimerFired:
		return "timer", true
	case HTTPResult:
		return "http_result", true
	case FlowCompleted:
		return "flow_completed", true
	case DeliveryFailed:
		return "delivery_failed", true
	case Cancel:
		return "cancel", true
	case Expire:
		return "expire", true
	case Fail:
		return "fail", true
	}
	return "", false
}

// run is one Apply call in progress.
type run struct {
	def     *Definition
	st      State
	now     time.Time
	sc      scope
	effects []Effect
}

func newRun(def *Definition, st State, now time.Time) *run {
	r := &run{def: def, st: st, now: now}
	r.sc = scope{st: &r.st, now: now}
	return r
}

func (r *run) done() (State, []Effect, error) {
	r.st.UpdatedAt = r.now
	return r.st, r.effects, nil
}

func (r *run) start(e Start) {
	r.st.RunID = e.RunID
	r.st.Contact = Contact{ID: e.Contact.ID, Name: e.Contact.Name, ExternalID: e.Contact.ExternalID, Channel: e.Contact.Channel}
	r.st.NextSeq = max(e.NextSeq, 1)
	r.st.StepsExecuted = max(e.StepsExecuted, 0)
	r.st.StartedAt = r.now
	// Copy the inputs in the shape they will have once the state has been
	// stored as JSON (numbers as float64, …): a run must behave the same
	// whether or not its state went through the store, and must not share
	// maps with the caller.
	for _, in := range []struct {
		name string
		src  map[string]any
		dst  *map[string]any
	}{
		{"trigger data", e.Data, &r.st.Data},
		{"contact attributes", e.Contact.Attributes, &r.st.Attributes},
		{"last_request", e.Contact.LastRequest, &r.st.LastRequest},
		{"variables", e.Vars, &r.st.Vars},
	} {
		if len(in.src) == 0 {
			continue
		}
		v, err := jsonValue(in.src)
		if err != nil {
			r.st.Cursor = r.def.Steps[0].ID
			r.finish(StatusFailed, fmt.Sprintf("%s: %v", in.name, err))
			return
		}
		*in.dst = v.(map[string]any)
	}
	r.execFrom(r.def.Steps[0].ID)
}

// openWindow sends the template that opens the contact's reply window and
// waits for the contact: the flow starts with the next Start.
func (r *run) openWindow(e Start) {
	r.st.RunID = e.RunID
	r.st.Contact = Contact{ID: e.Contact.ID, Name: e.Contact.Name, ExternalID: e.Contact.ExternalID, Channel: e.Contact.Channel}
	r.st.StartedAt = r.now
	r.st.Status = StatusWaiting
	r.st.WaitingFor = WaitWindow
	r.effects = append(r.effects, Send{Seq: InitialMessageSeq, Step: InitialMessageStep, Content: *e.OpenWindow})
}

// InitialMessageSeq and InitialMessageStep are the sequence number and step
// name of the template Start.OpenWindow sends; the flow's own messages
// start at 1.
const (
	InitialMessageSeq  = 0
	InitialMessageStep = "initial_message"
)

// execFrom runs steps from id until the run waits or ends.
func (r *run) execFrom(id string) {
	st := &r.st
	st.Status = StatusRunning
	st.WaitingFor, st.WaitDeadline, st.FlowToken = "", time.Time{}, ""
	last := st.Cursor
	st.Cursor = id
	for st.Status == StatusRunning {
		if st.Cursor == "" {
			// Ran off the end: keep the cursor on the last step executed.
			st.Cursor = last
			r.finish(StatusCompleted, "")
			return
		}
		last = st.Cursor
		i, ok := r.def.index[st.Cursor]
		if !ok {
			r.finish(StatusFailed, fmt.Sprintf("step %q is not in this flow", st.Cursor))
			return
		}
		s := &r.def.Steps[i]
		if budget := r.def.maxSteps(); st.StepsExecuted >= budget {
			r.fail(s, fmt.Sprintf("step budget exceeded: the run executed %d steps (max_steps %d); stopped at step %q",
				st.StepsExecuted, budget, s.ID))
			return
		}
		st.StepsExecuted++
		if s.If != "" {
			ok, err := r.def.evalBool(s.If, &r.sc)
			if err != nil {
				r.fail(s, err.Error())
				return
			}
			if !ok {
				r.record(s, "skipped (if is false)")
				st.Cursor = r.def.successor(i)
				continue
			}
		}
		r.exec(i, s)
	}
}

// exec executes step i; it moves the cursor, or makes the run wait or end.
func (r *run) exec(i int, s *Step) {
	st := &r.st
	next := r.def.successor(i)
	switch s.Type {
	case StepSend:
		c, empty := r.content(s)
		if s.SkipIfEmpty && empty {
			r.record(s, "skipped (empty placeholder)")
		} else {
			r.record(s, "sent #"+strconv.Itoa(r.send(s, c)))
		}
		st.Cursor = next
	case StepAsk:
		c, _ := r.content(s)
		st.Retries = 0
		r.record(s, "asked #"+strconv.Itoa(r.send(s, c)))
		r.wait(s, WaitReply, time.Duration(s.Timeout))
	case StepTemplate:
		r.template(s, next)
	case StepWhatsAppFlow:
		r.whatsAppFlow(s)
	case StepSet:
		r.set(s, next)
	case StepBranch:
		for j, c := range s.Conditions {
			ok, err := r.def.evalBool(c.When, &r.sc)
			if err != nil {
				r.fail(s, err.Error())
				return
			}
			if ok {
				r.record(s, fmt.Sprintf("condition %d → %s", j, c.Next))
				st.Cursor = c.Next
				return
			}
		}
		if s.Default != "" {
			next = s.Default
		}
		r.record(s, "default → "+orDefault(next, "(end)"))
		st.Cursor = next
	case StepWait:
		r.record(s, "waiting "+time.Duration(s.Duration).String())
		r.wait(s, WaitTimer, time.Duration(s.Duration))
	case StepHTTP:
		r.http(s)
	case StepGoto:
		if s.Flow != "" {
			r.record(s, "goto flow "+s.Flow)
			r.gotoFlow(s.Flow)
			return
		}
		r.record(s, "goto "+s.Step)
		st.Cursor = s.Step
	case StepEnd:
		reason, _ := render(s.Reason, &r.sc)
		status := StatusCompleted
		if s.Status == string(StatusFailed) {
			status = StatusFailed
		}
		outcome := string(status)
		if reason != "" {
			outcome += ": " + reason
		}
		r.record(s, outcome)
		r.finish(status, reason)
	default:
		r.fail(s, fmt.Sprintf("unknown step type %q", s.Type))
	}
}

// content renders a send or ask step's message. empty reports whether any
// placeholder rendered empty.
func (r *run) content(s *Step) (events.Content, bool) {
	var empty bool
	txt := func(v string) string {
		out, e := render(v, &r.sc)
		empty = empty || e
		return out
	}
	var c events.Content
	switch {
	case s.Image != "":
		c = events.Content{Type: events.ContentImage, MediaURL: txt(s.Image), Caption: txt(s.Caption)}
	case s.Video != "":
		c = events.Content{Type: events.ContentVideo, MediaURL: txt(s.Video), Caption: txt(s.Caption)}
	case s.Document != "":
		c = events.Content{Type: events.ContentDocument, MediaURL: txt(s.Document),
			Caption: txt(s.Caption), Filename: txt(s.Filename)}
	case s.List != nil:
		l := &events.List{Button: txt(s.List.Button), Sections: make([]events.ListSection, len(s.List.Sections))}
		for i, sec := range s.List.Sections {
			rows := make([]events.ListRow, len(sec.Rows))
			for j, row := range sec.Rows {
				rows[j] = events.ListRow{ID: row.ID, Title: txt(row.Title), Description: txt(row.Description)}
			}
			l.Sections[i] = events.ListSection{Title: txt(sec.Title), Rows: rows}
		}
		c = events.Content{Type: events.ContentList, Text: txt(s.Text), List: l}
	case len(s.Buttons) > 0:
		bs := make([]events.Button, len(s.Buttons))
		for i, b := range s.Buttons {
			bs[i] = events.Button{ID: b.ID, Title: txt(b.Title), URL: txt(b.URL)}
		}
		c = events.Content{Type: events.ContentButtons, Text: txt(s.Text), Buttons: bs}
	default:
		c = events.Content{Type: events.ContentText, Text: txt(s.Text)}
	}
	return c, empty
}

// send emits a message and returns its sequence number.
func (r *run) send(s *Step, c events.Content) int {
	seq := r.st.NextSeq
	r.st.NextSeq++
	r.effects = append(r.effects, Send{Seq: seq, Step: s.ID, Content: c})
	return seq
}

// wait suspends the run; a positive timeout sets a deadline and a timer.
func (r *run) wait(s *Step, kind WaitKind, timeout time.Duration) {
	r.st.Status = StatusWaiting
	r.st.WaitingFor = kind
	r.st.WaitDeadline = time.Time{}
	if timeout > 0 {
		at := r.now.Add(timeout)
		r.st.WaitDeadline = at
		r.effects = append(r.effects, ScheduleTimer{At: at, Step: s.ID})
	}
}

// flowToken is the default correlation token of a WhatsApp Flow message:
// derived from the run, the step and the message sequence, so it is
// deterministic and unique per message of a run.
func (r *run) flowToken(s *Step, seq int) string {
	tok := s.ID + ":" + strconv.Itoa(seq)
	if r.st.RunID != "" {
		tok = r.st.RunID + ":" + tok
	}
	return "fg:" + tok
}

func (r *run) template(s *Step, next string) {
	var empty bool
	txt := func(v string) string {
		out, e := render(v, &r.sc)
		empty = empty || e
		return out
	}
	t := &events.Template{Name: s.Template, Language: s.Language}
	if len(s.Params) > 0 {
		t.BodyParams = make([]string, len(s.Params))
		for i, p := range s.Params {
			t.BodyParams[i] = txt(p)
		}
	}
	for _, c := range s.Components {
		t.Components = append(t.Components, renderAny(c, &r.sc, &empty).(map[string]any))
	}
	var token string
	if fb := s.FlowButton; fb != nil {
		token = txt(fb.FlowToken)
		if token == "" {
			token = r.flowToken(s, r.st.NextSeq)
		}
		t.FlowButton = &events.FlowButton{Index: orDefault(fb.Index, "0"), FlowToken: token}
		if fb.FlowActionData != nil {
			t.FlowButton.FlowActionData = renderAny(fb.FlowActionData, &r.sc, &empty).(map[string]any)
		}
	}
	if s.SkipIfEmpty && empty {
		r.record(s, "skipped (empty placeholder)")
		r.st.Cursor = next
		return
	}
	seq := r.send(s, events.Content{Type: events.ContentTemplate, Template: t})
	r.record(s, "sent #"+strconv.Itoa(seq))
	if !s.WaitCompletion {
		r.st.Cursor = next
		return
	}
	r.wait(s, WaitFlowCompletion, time.Duration(s.Timeout))
	r.st.FlowToken = token
}

func (r *run) whatsAppFlow(s *Step) {
	txt := func(v string) string {
		out, _ := render(v, &r.sc)
		return out
	}
	token := txt(s.FlowToken)
	if token == "" {
		token = r.flowToken(s, r.st.NextSeq)
	}
	f := &events.InteractiveFlow{
		FlowID: s.FlowID, FlowName: s.FlowName, CTA: txt(s.CTA), Token: token,
		Action: orDefault(s.Action, "navigate"), Screen: txt(s.Screen), Mode: s.Mode,
		Header: txt(s.Header), FooterText: txt(s.Footer),
	}
	if s.FlowActionData != nil {
		var empty bool
		f.Data = renderAny(s.FlowActionData, &r.sc, &empty).(map[string]any)
	}
	seq := r.send(s, events.Content{Type: events.ContentWhatsAppFlow, Text: txt(s.Text), Flow: f})
	r.record(s, "sent #"+strconv.Itoa(seq))
	r.wait(s, WaitFlowCompletion, time.Duration(s.Timeout))
	r.st.FlowToken = token
}

func (r *run) set(s *Step, next string) {
	// Every value is computed against the state before the step, so the
	// order of keys cannot matter.
	attrs := make(map[string]any, len(s.Attributes))
	for _, k := range sortedKeys(s.Attributes) {
		v, err := r.evalValue(s.Attributes[k])
		if err != nil {
			r.fail(s, fmt.Sprintf("attribute %s: %v", k, err))
			return
		}
		attrs[k] = v
	}
	vars := make(map[string]any, len(s.Vars))
	for _, k := range sortedKeys(s.Vars) {
		v, err := r.evalValue(s.Vars[k])
		if err != nil {
			r.fail(s, fmt.Sprintf("var %s: %v", k, err))
			return
		}
		vars[k] = v
	}
	r.setAttributes(attrs)
	for k, v := range vars {
		r.setVar(k, v)
	}
	r.record(s, "set")
	r.st.Cursor = next
}

func (r *run) evalValue(src string) (any, error) {
	v, err := r.def.eval(src, &r.sc)
	if err != nil {
		return nil, err
	}
	return jsonValue(v)
}

func (r *run) setAttributes(values map[string]any) {
	if len(values) == 0 {
		return
	}
	if r.st.Attributes == nil {
		r.st.Attributes = make(map[string]any, len(values))
	}
	maps.Copy(r.st.Attributes, values)
	r.sc.changed()
	r.effects = append(r.effects, SetAttributes{Values: values})
}

func (r *run) setVar(k string, v any) {
	if r.st.Vars == nil {
		r.st.Vars = make(map[string]any)
	}
	r.st.Vars[k] = v
	r.sc.changed()
}

func (r *run) http(s *Step) {
	url, _ := render(s.URL, &r.sc)
	if err := egress.CheckURL(url, true); err != nil {
		r.httpError(s, err.Error())
		return
	}
	var headers map[string]string
	if len(s.Headers) > 0 {
		headers = make(map[string]string, len(s.Headers))
		for k, v := range s.Headers {
			headers[k], _ = render(v, &r.sc)
		}
	}
	var body []byte
	switch b := s.Body.(type) {
	case nil:
	case string:
		out, _ := render(b, &r.sc)
		body = []byte(out)
	default:
		var empty bool
		enc, err := json.Marshal(renderAny(b, &r.sc, &empty))
		if err != nil {
			r.fail(s, "cannot encode body: "+err.Error())
			return
		}
		body = enc
		if !hasHeader(headers, "Content-Type") {
			if headers == nil {
				headers = make(map[string]string, 1)
			}
			headers["Content-Type"] = "application/json"
		}
	}
	method := s.Method
	if method == "" {
		method = "GET"
		if body != nil {
			method = "POST"
		}
	}
	timeout := time.Duration(s.Timeout)
	if timeout == 0 {
		timeout = DefaultHTTPTimeout
	}
	r.effects = append(r.effects, CallHTTP{Step: s.ID, Method: method, URL: url, Headers: headers, Body: body, Timeout: timeout})
	r.record(s, method+" "+url)
	r.wait(s, WaitHTTP, timeout+httpGrace)
}

func hasHeader(h map[string]string, name string) bool {
	for k := range h {
		if len(k) == len(name) && bytes.EqualFold([]byte(k), []byte(name)) {
			return true
		}
	}
	return false
}

func (r *run) httpError(s *Step, msg string) {
	r.record(s, "error: "+msg)
	r.setVar("http_error", msg)
	if s.OnError != "" {
		r.execFrom(s.OnError)
		return
	}
	r.fail(s, "http: "+msg)
}

func (r *run) httpResult(e HTTPResult) {
	s, ok := r.current()
	if !ok {
		return
	}
	r.setVar("http_status", float64(e.StatusCode))
	switch {
	case e.Err != "":
		r.httpError(s, e.Err)
		return
	case e.StatusCode < 200 || e.StatusCode > 299:
		r.httpError(s, fmt.Sprintf("status %d", e.StatusCode))
		return
	}
	if len(s.Map) > 0 {
		var doc any
		if err := json.Unmarshal(e.Body, &doc); err != nil {
			r.httpError(s, "response is not JSON: "+err.Error())
			return
		}
		r.setAttributes(mapValues(s.Map, doc))
	}
	r.record(s, "status "+strconv.Itoa(e.StatusCode))
	r.execFrom(r.def.successor(r.def.index[s.ID]))
}

// mapValues picks attribute values out of a JSON document; paths that do
// not exist leave their attribute unchanged.
func mapValues(m map[string]string, doc any) map[string]any {
	out := make(map[string]any, len(m))
	for attr, path := range m {
		if v, ok := descend(doc, path); ok {
			out[attr] = v
		}
	}
	return out
}

func (r *run) flowCompleted(e FlowCompleted) {
	s, ok := r.current()
	if !ok {
		return
	}
	data, err := jsonValue(e.Data)
	if err != nil || data == nil {
		data = map[string]any{}
	}
	r.setVar("flow_response", data)
	attrs := mapValues(s.Map, data)
	if s.Attribute != "" {
		attrs[s.Attribute] = data
	}
	r.setAttributes(attrs)
	r.record(s, "flow completed")
	r.execFrom(r.def.successor(r.def.index[s.ID]))
}

func (r *run) reply(e Reply) {
	s, ok := r.current()
	if !ok {
		return
	}
	value, input, problem := checkAnswer(r.def, s, e, &r.sc)
	r.setVar("last_reply", input)
	if problem == "" {
		r.st.Retries = 0
		r.record(s, "answered")
		if s.Attribute != "" {
			r.setAttributes(map[string]any{s.Attribute: value})
		}
		r.execFrom(r.def.successor(r.def.index[s.ID]))
		return
	}
	r.st.Retries++
	if r.st.Retries > s.retries() {
		r.record(s, "gave up: "+problem)
		r.st.Retries = 0
		if s.OnInvalid != "" {
			r.execFrom(s.OnInvalid)
			return
		}
		r.fail(s, fmt.Sprintf("no valid answer after %d attempts (%s)", s.retries()+1, problem))
		return
	}
	// Re-ask: the retry text if there is one, else the prompt again. The
	// deadline stays: a wrong answer does not buy more time.
	var c events.Content
	if s.RetryText != "" {
		txt, _ := render(s.RetryText, &r.sc)
		c = events.Content{Type: events.ContentText, Text: txt}
	} else {
		c, _ = r.content(s)
	}
	r.record(s, fmt.Sprintf("invalid (%s), re-asked #%d", problem, r.send(s, c)))
}

func (r *run) timerFired() {
	s, ok := r.current()
	if !ok {
		return
	}
	switch r.st.WaitingFor {
	case WaitTimer:
		r.record(s, "timer fired")
		r.execFrom(r.def.successor(r.def.index[s.ID]))
	case WaitHTTP:
		r.httpError(s, "no result before the timeout")
	default: // WaitReply, WaitFlowCompletion
		r.record(s, "timed out")
		r.st.Retries = 0
		if s.OnTimeout != "" {
			r.execFrom(s.OnTimeout)
			return
		}
		r.finish(StatusExpired, fmt.Sprintf("step %q: no answer within %s", s.ID, time.Duration(s.Timeout)))
	}
}

func (r *run) gotoFlow(flowID string) {
	st := &r.st
	contact := st.Contact
	contact.Attributes = maps.Clone(st.Attributes)
	contact.LastRequest = st.LastRequest
	r.finish(StatusCompleted, "")
	r.effects = append(r.effects, GotoFlow{FlowID: flowID, Start: Start{
		Now: r.now, RunID: st.RunID, Contact: contact, Data: st.Data,
		Vars: maps.Clone(st.Vars), NextSeq: st.NextSeq, StepsExecuted: st.StepsExecuted,
	}})
}

// current is the step the run is at; a cursor that names no step (a state
// from another flow version) fails the run.
func (r *run) current() (*Step, bool) {
	i, ok := r.def.index[r.st.Cursor]
	if !ok {
		r.finish(StatusFailed, fmt.Sprintf("step %q is not in this flow", r.st.Cursor))
		return nil, false
	}
	return &r.def.Steps[i], true
}

// interrupt ends a run from outside (cancel, expire, delivery failure).
func (r *run) interrupt(status Status, outcome, reason string) {
	if r.def != nil {
		if i, ok := r.def.index[r.st.Cursor]; ok {
			r.record(&r.def.Steps[i], outcome)
		}
	}
	r.finish(status, reason)
}

func (r *run) fail(s *Step, reason string) {
	r.record(s, "failed")
	r.finish(StatusFailed, fmt.Sprintf("step %q: %s", s.ID, reason))
}

func (r *run) finish(status Status, reason string) {
	st := &r.st
	st.Status = status
	st.WaitingFor, st.WaitDeadline, st.FlowToken, st.Retries = "", time.Time{}, "", 0
	if status != StatusCompleted {
		st.Error = reason
	}
	st.EndedAt = r.now
}

func (r *run) record(s *Step, outcome string) {
	r.st.record(s, r.now, outcome)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
