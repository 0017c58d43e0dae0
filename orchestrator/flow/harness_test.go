package flow

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"

	"github.com/flowgate/flowgate/shared/events"
)

// t0 is when every test run starts.
var t0 = testclock.Date(2026, 3, 2, 9, 0, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

// conversation drives one run through Apply the way the runner does,
// storing the state as JSON between events so that every test also proves
// the state survives serialisation.
type conversation struct {
	t       testing.TB
	def     *Definition
	st      State
	effects []Effect
	// transcript is every applied event with its effects and the state
	// after it, compared with a golden file by TestScenarios.
	transcript []goldenStep
}

func startRun(t testing.TB, def *Definition, start Start) *conversation {
	t.Helper()
	if start.Now.IsZero() {
		start.Now = t0
	}
	if start.RunID == "" {
		start.RunID = "run1"
	}
	c := &conversation{t: t, def: def}
	c.apply(start)
	return c
}

// apply applies ev and returns the effects it produced.
func (c *conversation) apply(ev Event) []Effect {
	c.t.Helper()
	st, effs, err := Apply(c.def, c.st, ev)
	if err != nil {
		c.t.Fatalf("Apply(%T): %v", ev, err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		c.t.Fatalf("state does not marshal: %v", err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		c.t.Fatalf("state does not unmarshal: %v", err)
	}
	c.st = back
	c.effects = append(c.effects, effs...)
	c.record(ev, effs, b)
	return effs
}

// sends summarises every message sent so far.
func (c *conversation) sends() []string {
	var out []string
	for _, e := range c.effects {
		if s, ok := e.(Send); ok {
			out = append(out, summary(s.Content))
		}
	}
	return out
}

// summary is a one-line rendering of a message for comparisons.
func summary(c events.Content) string {
	switch c.Type {
	case events.ContentText:
		return c.Text
	case events.ContentImage, events.ContentVideo, events.ContentDocument:
		s := c.Type + " " + c.MediaURL
		if c.Caption != "" {
			s += " | " + c.Caption
		}
		if c.Filename != "" {
			s += " | " + c.Filename
		}
		return s
	case events.ContentButtons:
		var bs []string
		for _, b := range c.Buttons {
			if b.URL != "" {
				bs = append(bs, b.Title+"->"+b.URL)
			} else {
				bs = append(bs, b.ID+":"+b.Title)
			}
		}
		return c.Text + " [" + strings.Join(bs, " ") + "]"
	case events.ContentList:
		var rows []string
		for _, s := range c.List.Sections {
			for _, r := range s.Rows {
				rows = append(rows, r.ID+":"+r.Title)
			}
		}
		return fmt.Sprintf("%s {%s: %s}", c.Text, c.List.Button, strings.Join(rows, " "))
	case events.ContentTemplate:
		s := fmt.Sprintf("template %s/%s(%s)", c.Template.Name, c.Template.Language, strings.Join(c.Template.BodyParams, ", "))
		if fb := c.Template.FlowButton; fb != nil {
			d, _ := json.Marshal(fb.FlowActionData)
			s += fmt.Sprintf(" flow[%s %s %s]", fb.Index, fb.FlowToken, d)
		}
		return s
	case events.ContentWhatsAppFlow:
		d, _ := json.Marshal(c.Flow.Data)
		return fmt.Sprintf("flow %s %q cta=%s token=%s screen=%s %s", c.Flow.FlowID, c.Text, c.Flow.CTA, c.Flow.Token, c.Flow.Screen, d)
	}
	return "?" + c.Type
}

func (c *conversation) effectsOf(kind string) []Effect {
	var out []Effect
	for _, e := range c.effects {
		if fmt.Sprintf("%T", e) == "flow."+kind {
			out = append(out, e)
		}
	}
	return out
}
