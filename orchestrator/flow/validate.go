package flow

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"

	"github.com/flowgate/flowgate/shared/egress"
	"github.com/flowgate/flowgate/shared/media"
)

// DefaultHTTPTimeout applies to http steps that set no timeout.
const DefaultHTTPTimeout = 10 * time.Second

// maxHTTPTimeout bounds http step timeouts: a run waiting on a slow
// endpoint holds the contact's conversation.
const maxHTTPTimeout = 2 * time.Minute

var (
	stepIDPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$`)
	namePattern   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
)

// reservedNames cannot be attribute or variable names: they are the roots
// placeholders and expressions use, so such a name could never be read back.
var reservedNames = map[string]bool{
	rootData: true, rootAttributes: true, rootVars: true, rootContact: true, rootNow: true, rootLastRequest: true,
}

// validator checks the semantics of a structurally sound Definition and
// compiles its expressions and regexps into it.
type validator struct {
	d    *Definition
	errs *ValidationErrors
}

func validate(d *Definition, errs *ValidationErrors) {
	d.index = make(map[string]int, len(d.Steps))
	d.programs = make(map[string]*vm.Program)
	d.regexps = make(map[string]*regexp.Regexp)
	v := &validator{d: d, errs: errs}
	for i := range d.Steps {
		s := &d.Steps[i]
		p := fmt.Sprintf("steps[%d]", i)
		switch {
		case s.ID == "":
			errs.add(p+".id", "is required")
		case !stepIDPattern.MatchString(s.ID):
			errs.add(p+".id", "%q is not a valid step id (letters, digits, _ . : -; at most 64)", s.ID)
		default:
			if j, dup := d.index[s.ID]; dup {
				errs.add(p+".id", "duplicate step id %q (also steps[%d])", s.ID, j)
			} else {
				d.index[s.ID] = i
			}
		}
	}
	for i := range d.Steps {
		v.step(i)
	}
	if len(*errs) > 0 {
		// The graph checks assume every reference resolves.
		return
	}
	v.graph()
}

func (v *validator) step(i int) {
	s := &v.d.Steps[i]
	p := fmt.Sprintf("steps[%d]", i)
	if s.If != "" {
		v.expr(p+".if", s.If)
	}
	v.ref(p+".next", s.Next)
	switch s.Type {
	case StepSend:
		v.content(p, s)
	case StepAsk:
		v.content(p, s)
		v.ask(p, s)
	case StepTemplate:
		v.template(p, s)
	case StepWhatsAppFlow:
		v.whatsAppFlow(p, s)
	case StepSet:
		if len(s.Attributes) == 0 && len(s.Vars) == 0 {
			v.errs.add(p, "a set step needs attributes or vars")
		}
		for _, k := range sortedKeys(s.Attributes) {
			v.name(p+".attributes."+k, k)
			v.expr(p+".attributes."+k, s.Attributes[k])
		}
		for _, k := range sortedKeys(s.Vars) {
			v.name(p+".vars."+k, k)
			v.expr(p+".vars."+k, s.Vars[k])
		}
	case StepBranch:
		if len(s.Conditions) == 0 {
			v.errs.add(p+".conditions", "a branch needs at least one condition")
		}
		for j, c := range s.Conditions {
			cp := fmt.Sprintf("%s.conditions[%d]", p, j)
			v.expr(cp+".when", c.When)
			if c.Next == "" {
				v.errs.add(cp+".next", "is required")
			}
			v.ref(cp+".next", c.Next)
		}
		v.ref(p+".default", s.Default)
	case StepWait:
		if s.Duration == 0 {
			v.errs.add(p+".duration", "is required")
		}
	case StepHTTP:
		v.http(p, s)
	case StepGoto:
		switch {
		case s.Step == "" && s.Flow == "":
			v.errs.add(p, "a goto step needs step or flow")
		case s.Step != "" && s.Flow != "":
			v.errs.add(p+".flow", "a goto step has either step or flow, not both")
		}
		v.ref(p+".step", s.Step)
	case StepEnd:
		if s.Status != "" && s.Status != string(StatusCompleted) && s.Status != string(StatusFailed) {
			v.errs.add(p+".status", "must be completed or failed")
		}
		v.text(p+".reason", s.Reason)
	}
}

// content checks the message fields shared by send and ask.
func (v *validator) content(p string, s *Step) {
	media := 0
	for _, m := range []struct{ field, value string }{
		{"image", s.Image}, {"document", s.Document}, {"video", s.Video},
	} {
		if m.value != "" {
			media++
			if media > 1 {
				v.errs.add(p+"."+m.field, "a message has one of image, document or video")
			}
			v.text(p+"."+m.field, m.value)
			v.mediaValue(p+"."+m.field, m.value)
		}
	}
	if media > 0 {
		if s.Text != "" {
			v.errs.add(p+".text", "a media message has a caption, not text")
		}
		if len(s.Buttons) > 0 || s.List != nil {
			v.errs.add(p+".buttons", "buttons and lists need a text message, not media")
		}
		if s.Filename != "" && s.Document == "" {
			v.errs.add(p+".filename", "only a document has a filename")
		}
	} else {
		if s.Text == "" {
			v.errs.add(p+".text", "is required (or image, document, video)")
		}
		if s.Caption != "" {
			v.errs.add(p+".caption", "only media messages have a caption")
		}
		if s.Filename != "" {
			v.errs.add(p+".filename", "only a document has a filename")
		}
	}
	v.text(p+".text", s.Text)
	v.text(p+".caption", s.Caption)
	v.text(p+".filename", s.Filename)
	if len(s.Buttons) > 0 && s.List != nil {
		v.errs.add(p+".list", "a message has buttons or a list, not both")
	}
	seen := map[string]bool{}
	for j, b := range s.Buttons {
		bp := fmt.Sprintf("%s.buttons[%d]", p, j)
		if b.Title == "" {
			v.errs.add(bp+".title", "is required")
		}
		v.text(bp+".title", b.Title)
		v.text(bp+".url", b.URL)
		if b.ID == "" && b.URL == "" {
			v.errs.add(bp+".id", "is required (unless the button opens a url)")
		}
		if b.ID != "" && seen[b.ID] {
			v.errs.add(bp+".id", "duplicate button id %q", b.ID)
		}
		seen[b.ID] = true
	}
	if l := s.List; l != nil {
		if l.Button == "" {
			v.errs.add(p+".list.button", "is required (the label that opens the list)")
		}
		if len(l.Sections) == 0 {
			v.errs.add(p+".list.sections", "a list needs at least one section")
		}
		for j, sec := range l.Sections {
			sp := fmt.Sprintf("%s.list.sections[%d]", p, j)
			if len(sec.Rows) == 0 {
				v.errs.add(sp+".rows", "a section needs at least one row")
			}
			v.text(sp+".title", sec.Title)
			for k, r := range sec.Rows {
				rp := fmt.Sprintf("%s.rows[%d]", sp, k)
				if r.ID == "" {
					v.errs.add(rp+".id", "is required")
				} else if seen[r.ID] {
					v.errs.add(rp+".id", "duplicate row id %q", r.ID)
				}
				seen[r.ID] = true
				if r.Title == "" {
					v.errs.add(rp+".title", "is required")
				}
				v.text(rp+".title", r.Title)
				v.text(rp+".description", r.Description)
			}
		}
	}
}

func (v *validator) ask(p string, s *Step) {
	if s.Attribute != "" {
		v.name(p+".attribute", s.Attribute)
	}
	v.text(p+".retry_text", s.RetryText)
	v.ref(p+".on_invalid", s.OnInvalid)
	v.timeout(p, s)
	val := s.Validate
	if val == nil {
		return
	}
	vp := p + ".validate"
	switch val.Type {
	case ValidateText, ValidateNumber, ValidateEmail, ValidatePhone, ValidateButton:
		if val.Regex != "" {
			v.errs.add(vp+".regex", "only used with type regex")
		}
	case ValidateRegex:
		if val.Regex == "" {
			v.errs.add(vp+".regex", "is required for type regex")
			break
		}
		re, err := regexp.Compile(val.Regex)
		if err != nil {
			v.errs.add(vp+".regex", "invalid regular expression: %v", err)
			break
		}
		v.d.regexps[val.Regex] = re
	case "":
		v.errs.add(vp+".type", "is required")
	default:
		v.errs.add(vp+".type", "unknown validation %q (want text, number, email, phone, regex or button)", val.Type)
	}
	if val.Type == ValidateButton && len(s.Buttons) == 0 && s.List == nil {
		v.errs.add(vp+".type", "button validation needs buttons or a list on the step")
	}
	if val.Min != nil || val.Max != nil {
		if val.Type != ValidateNumber && val.Type != ValidateText {
			v.errs.add(vp, "min and max apply to number and text only")
		}
		if val.Min != nil && val.Max != nil && *val.Min > *val.Max {
			v.errs.add(vp+".min", "is greater than max")
		}
	}
}

func (v *validator) template(p string, s *Step) {
	if s.Template == "" {
		v.errs.add(p+".template", "is required (the approved template's name)")
	}
	if s.Language == "" {
		v.errs.add(p+".language", "is required (e.g. en_US)")
	}
	for j, prm := range s.Params {
		v.text(fmt.Sprintf("%s.params[%d]", p, j), prm)
	}
	for j, c := range s.Components {
		if err := checkPlaceholdersAny(c); err != nil {
			v.errs.add(fmt.Sprintf("%s.components[%d]", p, j), "%v", err)
		}
	}
	if fb := s.FlowButton; fb != nil {
		v.text(p+".flow_button.flow_token", fb.FlowToken)
		if err := checkPlaceholdersAny(fb.FlowActionData); err != nil {
			v.errs.add(p+".flow_button.flow_action_data", "%v", err)
		}
	}
	if s.WaitCompletion {
		if s.FlowButton == nil {
			v.errs.add(p+".wait_completion", "needs a flow_button")
		}
		v.completion(p, s)
		return
	}
	for _, f := range []struct {
		field string
		set   bool
	}{
		{"timeout", s.Timeout != 0}, {"on_timeout", s.OnTimeout != ""},
		{"attribute", s.Attribute != ""}, {"map", len(s.Map) > 0},
	} {
		if f.set {
			v.errs.add(p+"."+f.field, "only used with wait_completion: true")
		}
	}
}

func (v *validator) whatsAppFlow(p string, s *Step) {
	switch {
	case s.FlowID == "" && s.FlowName == "":
		v.errs.add(p+".flow_id", "flow_id or flow_name is required")
	case s.FlowID != "" && s.FlowName != "":
		v.errs.add(p+".flow_name", "use flow_id or flow_name, not both")
	}
	if s.CTA == "" {
		v.errs.add(p+".cta", "is required (the button label)")
	}
	if s.Text == "" {
		v.errs.add(p+".text", "is required (the message body)")
	}
	switch s.Action {
	case "", "navigate", "data_exchange":
	default:
		v.errs.add(p+".action", "must be navigate or data_exchange")
	}
	switch s.Mode {
	case "", "published", "draft":
	default:
		v.errs.add(p+".mode", "must be published or draft")
	}
	for _, f := range []struct{ field, value string }{
		{"text", s.Text}, {"cta", s.CTA}, {"header", s.Header}, {"footer", s.Footer},
		{"screen", s.Screen}, {"flow_token", s.FlowToken},
	} {
		v.text(p+"."+f.field, f.value)
	}
	if err := checkPlaceholdersAny(s.FlowActionData); err != nil {
		v.errs.add(p+".flow_action_data", "%v", err)
	}
	v.completion(p, s)
}

// completion checks what a step waiting for a WhatsApp Flow does with it.
func (v *validator) completion(p string, s *Step) {
	if s.Attribute != "" {
		v.name(p+".attribute", s.Attribute)
	}
	v.mapping(p, s)
	v.timeout(p, s)
}

func (v *validator) timeout(p string, s *Step) {
	if s.OnTimeout != "" && s.Timeout == 0 {
		v.errs.add(p+".on_timeout", "needs a timeout")
	}
	v.ref(p+".on_timeout", s.OnTimeout)
}

func (v *validator) mapping(p string, s *Step) {
	for _, k := range sortedKeys(s.Map) {
		v.name(p+".map."+k, k)
		if _, err := splitPath(s.Map[k], false); err != nil {
			v.errs.add(p+".map."+k, "%v", err)
		}
	}
}

func (v *validator) http(p string, s *Step) {
	switch s.Method {
	case "", "GET", "POST", "PUT", "PATCH", "DELETE":
	default:
		v.errs.add(p+".method", "must be GET, POST, PUT, PATCH or DELETE")
	}
	if s.URL == "" {
		v.errs.add(p+".url", "is required")
	} else if err := checkPlaceholders(s.URL); err != nil {
		v.errs.add(p+".url", "%v", err)
	} else if err := checkURLTemplate(s.URL); err != nil {
		v.errs.add(p+".url", "%v", err)
	}
	for _, k := range sortedKeys(s.Headers) {
		v.text(p+".headers."+k, s.Headers[k])
	}
	if err := checkPlaceholdersAny(s.Body); err != nil {
		v.errs.add(p+".body", "%v", err)
	}
	if time.Duration(s.Timeout) > maxHTTPTimeout {
		v.errs.add(p+".timeout", "must be at most %s", maxHTTPTimeout)
	}
	v.mapping(p, s)
	v.ref(p+".on_error", s.OnError)
}

// checkURLTemplate checks what can be checked of a URL before its
// placeholders are rendered: the scheme, and everything when it has none.
func checkURLTemplate(raw string) error {
	before, _, templated := strings.Cut(raw, "{{")
	if !templated {
		// Private addresses are the runner's policy (it knows the config).
		return egress.CheckURL(raw, true)
	}
	if before == "" {
		return nil // the whole base comes from run data
	}
	lower := strings.ToLower(before)
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") &&
		!strings.HasPrefix("http://", lower) && !strings.HasPrefix("https://", lower) {
		return fmt.Errorf("url must start with http:// or https://")
	}
	return nil
}

func (v *validator) text(path, s string) {
	if err := checkPlaceholders(s); err != nil {
		v.errs.add(path, "%v", err)
	}
}

func (v *validator) name(path, name string) {
	switch {
	case !namePattern.MatchString(name):
		v.errs.add(path, "%q is not a valid name (letters, digits and _, not starting with a digit)", name)
	case reservedNames[name]:
		v.errs.add(path, "%q is reserved", name)
	}
}

func (v *validator) ref(path, id string) {
	if id == "" {
		return
	}
	if _, ok := v.d.index[id]; !ok {
		v.errs.add(path, "no step with id %q", id)
	}
}

func (v *validator) expr(path, src string) {
	if _, done := v.d.programs[src]; done {
		return
	}
	p, err := compileExpr(src)
	if err != nil {
		v.errs.add(path, "invalid expression: %v", oneLine(err.Error()))
		return
	}
	v.d.programs[src] = p
}

// oneLine keeps the first line of expr's multi-line error (the rest is a
// caret diagram that does not survive JSON).
func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// edge is a possible transition between steps. guarded edges are taken
// only after the run waited (for a reply, a timer or a Flow completion).
type edge struct {
	to      int
	field   string
	guarded bool
}

// edges lists the transitions step i can make, for the graph checks.
func (d *Definition) edges(i int) []edge {
	s := &d.Steps[i]
	var out []edge
	add := func(field, id string, guarded bool) {
		if id == "" {
			return
		}
		if j, ok := d.index[id]; ok {
			out = append(out, edge{to: j, field: field, guarded: guarded})
		}
	}
	nextField := "next"
	if s.Next == "" {
		nextField = "(following step)"
	}
	if s.If != "" {
		// A skipped step never waits, even if it is an ask.
		add("if", d.successor(i), false)
	}
	switch s.Type {
	case StepSend, StepSet:
		add(nextField, d.successor(i), false)
	case StepHTTP:
		// An HTTP result is not a wait: a loop of calls would spin as fast
		// as the endpoint answers.
		add(nextField, d.successor(i), false)
		add("on_error", s.OnError, false)
	case StepTemplate:
		add(nextField, d.successor(i), s.WaitCompletion)
		add("on_timeout", s.OnTimeout, true)
	case StepAsk, StepWhatsAppFlow, StepWait:
		add(nextField, d.successor(i), true)
		add("on_timeout", s.OnTimeout, true)
		add("on_invalid", s.OnInvalid, true)
	case StepBranch:
		for j, c := range s.Conditions {
			add(fmt.Sprintf("conditions[%d].next", j), c.Next, false)
		}
		if s.Default != "" {
			add("default", s.Default, false)
		} else {
			add("(following step)", d.successor(i), false)
		}
	case StepGoto:
		add("step", s.Step, false)
	}
	return out
}

// graph reports unreachable steps and loops in which nothing waits: such a
// loop would spin through the step budget in a single Apply.
func (v *validator) graph() {
	d := v.d
	n := len(d.Steps)
	adj := make([][]edge, n)
	for i := range d.Steps {
		adj[i] = d.edges(i)
	}
	reached := make([]bool, n)
	queue := []int{0}
	reached[0] = true
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		for _, e := range adj[i] {
			if !reached[e.to] {
				reached[e.to] = true
				queue = append(queue, e.to)
			}
		}
	}
	for i, ok := range reached {
		if !ok {
			v.errs.add(fmt.Sprintf("steps[%d]", i), "step %q is unreachable", d.Steps[i].ID)
		}
	}

	// Depth-first search over unguarded edges; a back edge closes a loop
	// that never waits.
	const (
		white = iota
		grey
		black
	)
	color := make([]int, n)
	type frame struct{ node, next int }
	for root := 0; root < n; root++ {
		if color[root] != white {
			continue
		}
		stack := []frame{{node: root}}
		color[root] = grey
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.next >= len(adj[top.node]) {
				color[top.node] = black
				stack = stack[:len(stack)-1]
				continue
			}
			e := adj[top.node][top.next]
			top.next++
			if e.guarded {
				continue
			}
			switch color[e.to] {
			case white:
				color[e.to] = grey
				stack = append(stack, frame{node: e.to})
			case grey:
				var ids []string
				for k := range stack {
					if stack[k].node == e.to {
						for _, f := range stack[k:] {
							ids = append(ids, d.Steps[f.node].ID)
						}
						break
					}
				}
				ids = append(ids, d.Steps[e.to].ID)
				path := fmt.Sprintf("steps[%d]", top.node)
				if !strings.HasPrefix(e.field, "(") {
					path += "." + e.field
				}
				v.errs.add(path, "loop without a wait: %s (add an ask, wait or whatsapp_flow step to it)",
					strings.Join(ids, " → "))
			}
		}
	}
}

// mediaValue checks where a message's file comes from: an absolute http(s)
// URL or an uploaded file ("media:<id>"; the ingress checks that the bot
// has it). A server cannot read the caller's local path, and a bare value
// must never reach a provider as a media id. A value with placeholders is
// checked once rendered, at send time.
func (v *validator) mediaValue(path, s string) {
	if strings.Contains(s, "{{") || media.IsURL(s) {
		return
	}
	if _, ok := media.ParseRef(s); ok {
		return
	}
	v.errs.add(path, "%q is neither an absolute http(s) URL nor an uploaded file (media:<id>); upload local files with POST /v1/bots/{bot}/media", s)
}
