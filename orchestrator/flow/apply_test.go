package flow

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/testclock"
)

// scenario is one conversation over a testdata flow.
type scenario struct {
	name    string
	flow    string
	start   Start
	events  []Event
	sends   []string
	status  Status
	waiting WaitKind
	cursor  string
	attrs   map[string]any // must be present in State.Attributes
	err     string         // substring of State.Error
	check   func(t *testing.T, c *conversation)
}

var (
	john       = Contact{ID: "c1", Name: "John Doe", ExternalID: "+15550001", Channel: "whatsapp"}
	registered = []string{"What is your name?", "What is your age?"}
	retryAge   = "Please answer with a number, e.g. 30."

	openingTemplate = events.Content{Type: events.ContentTemplate,
		Template: &events.Template{Name: "job_offer", Language: "en", BodyParams: []string{"driver"}}}
)

func scenarios() []scenario {
	return []scenario{
		// REGISTER_FLOW (BuilderBot): ask name, ask age, thank.
		{
			name: "register happy path", flow: "register.yaml", start: Start{Contact: john},
			events: []Event{Reply{Now: at(time.Minute), Text: "Anna"}, Reply{Now: at(2 * time.Minute), Text: " 30 "}},
			sends:  append(registered, "Anna, thanks for your information! Your age: 30"),
			status: StatusCompleted, cursor: "thanks",
			attrs: map[string]any{"name": "Anna", "age": 30.0},
		},
		{
			name: "register re-asks on invalid age, then accepts", flow: "register.yaml", start: Start{Contact: john},
			events: []Event{Reply{Now: at(1), Text: "Anna"}, Reply{Now: at(2), Text: "thirty"}, Reply{Now: at(3), Text: "31"}},
			sends:  append(registered, retryAge, "Anna, thanks for your information! Your age: 31"),
			status: StatusCompleted, attrs: map[string]any{"age": 31.0},
		},
		{
			name: "register gives up after the retries", flow: "register.yaml", start: Start{Contact: john},
			events: []Event{Reply{Now: at(1), Text: "Anna"}, Reply{Now: at(2), Text: "thirty"},
				Reply{Now: at(3), Text: "forty"}, Reply{Now: at(4), Text: "old"}},
			sends:  append(registered, retryAge, retryAge),
			status: StatusFailed, cursor: "ask_age", err: `step "ask_age": no valid answer after 3 attempts (not a number)`,
		},
		{
			name: "cancel mid-wait, later replies ignored", flow: "register.yaml", start: Start{Contact: john},
			events: []Event{Reply{Now: at(1), Text: "Anna"}, Cancel{Now: at(2), Reason: "superseded by trigger t2"},
				Reply{Now: at(3), Text: "30"}},
			sends:  registered,
			status: StatusCancelled, cursor: "ask_age", err: "superseded by trigger t2",
			attrs: map[string]any{"name": "Anna"},
		},
		{
			name: "delivery failure fails the run", flow: "register.yaml", start: Start{Contact: john},
			events: []Event{DeliveryFailed{Now: at(1), Seq: 1, Reason: "131026 undeliverable"}, Reply{Now: at(2), Text: "Anna"}},
			sends:  registered[:1], status: StatusFailed,
			err: "message 1 could not be delivered: 131026 undeliverable",
		},
		{
			name: "expire mid-wait", flow: "register.yaml", start: Start{Contact: john},
			events: []Event{Expire{Now: at(1)}},
			sends:  registered[:1], status: StatusExpired, err: "expired",
		},
		{
			name: "stale timer while waiting for a reply without deadline", flow: "register.yaml", start: Start{Contact: john},
			events: []Event{TimerFired{Now: at(time.Hour)}, HTTPResult{Now: at(time.Hour), StatusCode: 200},
				FlowCompleted{Now: at(time.Hour)}},
			sends: registered[:1], status: StatusWaiting, waiting: WaitReply, cursor: "ask_name",
		},

		// WELCOME_NEW_USER (BuilderBot): three messages, the last conditional.
		{
			name: "welcome with referral code", flow: "welcome.yaml",
			start:  Start{Contact: Contact{Name: "John Doe"}, Data: map[string]any{"name": "John Doe", "plan": "Premium", "referralCode": "REF123"}},
			sends:  []string{"Welcome John Doe! 🎉", "You've signed up for the Premium plan.", "Referral code: REF123"},
			status: StatusCompleted, cursor: "referral",
		},
		{
			name: "welcome without referral code", flow: "welcome.yaml",
			start:  Start{Contact: Contact{Name: "John Doe"}, Data: map[string]any{"plan": "Premium"}},
			sends:  []string{"Welcome John Doe! 🎉", "You've signed up for the Premium plan."},
			status: StatusCompleted,
			check: func(t *testing.T, c *conversation) {
				h := c.st.History[len(c.st.History)-1]
				if h.Step != "referral" || !strings.HasPrefix(h.Outcome, "skipped") {
					t.Errorf("last history entry %+v", h)
				}
			},
		},
		{
			name: "welcome with empty referral code and no plan", flow: "welcome.yaml",
			start:  Start{Contact: Contact{Name: "Jo"}, Data: map[string]any{"referralCode": ""}},
			sends:  []string{"Welcome Jo! 🎉", "You've signed up for the  plan."},
			status: StatusCompleted,
		},

		// The WhatsApp reply window (Recrubo's initialMessage): a contact
		// outside it gets the template first; the flow starts when they answer.
		{
			name: "window: template, then the flow starts on the answer", flow: "register.yaml",
			start: Start{Contact: john, Data: map[string]any{"job": "driver"}, OpenWindow: &openingTemplate},
			events: []Event{
				Reply{Now: at(1), Text: "hello"}, // the runner turns the answer into a Start
				Start{Now: at(2), Contact: john, Data: map[string]any{"job": "driver"}},
				Reply{Now: at(3), Text: "Anna"},
			},
			sends:  []string{"template job_offer/en(driver)", "What is your name?", "What is your age?"},
			status: StatusWaiting, waiting: WaitReply, cursor: "ask_age",
			check: func(t *testing.T, c *conversation) {
				if s := c.effects[0].(Send); s.Seq != InitialMessageSeq || s.Step != InitialMessageStep {
					t.Errorf("initial message %+v", s)
				}
				if s := c.effects[1].(Send); s.Seq != 1 {
					t.Errorf("the flow's first message has seq %d, want 1", s.Seq)
				}
			},
		},
		{
			name: "window: cancelled before the contact answers", flow: "register.yaml",
			start:  Start{Contact: john, OpenWindow: &openingTemplate},
			events: []Event{TimerFired{Now: at(time.Hour)}, Cancel{Now: at(2 * time.Hour), Reason: "superseded by run r2"}},
			sends:  []string{"template job_offer/en(driver)"},
			status: StatusCancelled, err: "superseded by run r2",
		},
		{
			name: "window: the template could not be delivered", flow: "register.yaml",
			start:  Start{Contact: john, OpenWindow: &openingTemplate},
			events: []Event{DeliveryFailed{Now: at(1), Seq: 0, Reason: "131047: re-engagement message"}},
			sends:  []string{"template job_offer/en(driver)"},
			status: StatusFailed, err: "initial message could not be delivered: 131047: re-engagement message",
		},
		{
			name: "fail: the runner gives up on a waiting run", flow: "register.yaml", start: Start{Contact: john},
			events: []Event{Fail{Now: at(1), Reason: "flow register v1 was deleted"}, Reply{Now: at(2), Text: "Anna"}},
			sends:  registered[:1], status: StatusFailed, cursor: "ask_name", err: "flow register v1 was deleted",
		},

		// VIP branch (Engati decision node) from trigger data or attributes.
		{
			name: "vip from trigger data", flow: "vip.json",
			start:  Start{Contact: john, Data: map[string]any{"user_type": "vip"}},
			sends:  []string{"Welcome back, John Doe. Your VIP concierge is on the way."},
			status: StatusCompleted, cursor: "done",
		},
		{
			name: "trial from contact attribute", flow: "vip.json",
			start: Start{Contact: Contact{Name: "Ann", Attributes: map[string]any{"user_type": "trial"}}},
			sends: []string{"Enjoy your trial, Ann!"}, status: StatusCompleted, cursor: "done",
		},
		{
			name: "attribute wins over trigger data", flow: "vip.json",
			start: Start{Contact: Contact{Name: "Ann", Attributes: map[string]any{"user_type": "vip"}},
				Data: map[string]any{"user_type": "standard"}},
			sends: []string{"Welcome back, Ann. Your VIP concierge is on the way."}, status: StatusCompleted,
		},
		{
			name: "standard by default", flow: "vip.json", start: Start{Contact: john},
			sends: []string{"Hello John Doe, thanks for reaching out."}, status: StatusCompleted, cursor: "done",
		},

		// wait
		{
			name: "wait a day", flow: "reminder.yaml", start: Start{Data: map[string]any{"when": "Monday 10:00"}},
			events: []Event{TimerFired{Now: at(time.Hour)}, TimerFired{Now: at(24 * time.Hour)}, TimerFired{Now: at(25 * time.Hour)}},
			sends:  []string{"Your appointment is booked for Monday 10:00.", "Reminder: your appointment is Monday 10:00."},
			status: StatusCompleted, cursor: "remind",
			check: func(t *testing.T, c *conversation) {
				timers := c.effectsOf("ScheduleTimer")
				if len(timers) != 1 || !timers[0].(ScheduleTimer).At.Equal(at(24*time.Hour)) || timers[0].(ScheduleTimer).Step != "pause" {
					t.Errorf("timers %+v", timers)
				}
			},
		},
		{
			name: "waiting on a timer", flow: "reminder.yaml", start: Start{Data: map[string]any{"when": "Monday"}},
			events: []Event{TimerFired{Now: at(time.Hour)}, Reply{Now: at(time.Hour), Text: "ok"}},
			sends:  []string{"Your appointment is booked for Monday."},
			status: StatusWaiting, waiting: WaitTimer, cursor: "pause",
			check: func(t *testing.T, c *conversation) {
				if !c.st.WaitDeadline.Equal(at(24 * time.Hour)) {
					t.Errorf("deadline %v", c.st.WaitDeadline)
				}
			},
		},

		// send: media, buttons, list, conditional step.
		{
			name: "media, buttons and list for a vip", flow: "media.yaml",
			start: Start{Contact: john, Data: map[string]any{"invoice": 42, "user_type": "vip", "plan": "Premium"}},
			sends: []string{
				"💪 I'll send you a lot of files...",
				"image https://cdn.example.com/sample.png | Sample for John Doe",
				"video https://example.com/video.mp4",
				"document https://cdn.example.com/42.pdf | Your invoice | invoice-42.pdf",
				"VIP extras are in your inbox.",
				"What next? [more:More samples stop:Stop Docs->https://example.com/docs]",
				"Or pick a product {Products: basic:Basic premium:Premium}",
			},
			status: StatusCompleted,
		},
		{
			name: "conditional step skipped", flow: "media.yaml",
			start:  Start{Contact: john, Data: map[string]any{"invoice": "A-7"}},
			status: StatusCompleted,
			check: func(t *testing.T, c *conversation) {
				s := c.sends()
				if len(s) != 6 || strings.Contains(strings.Join(s, "\n"), "VIP") {
					t.Errorf("sends %q", s)
				}
				if s[5] != "Or pick a product {Products: basic:Basic premium:}" {
					t.Errorf("list %q", s[5])
				}
				seqs := []int{}
				for _, e := range c.effectsOf("Send") {
					seqs = append(seqs, e.(Send).Seq)
				}
				if !reflect.DeepEqual(seqs, []int{1, 2, 3, 4, 5, 6}) || c.st.NextSeq != 7 {
					t.Errorf("seqs %v next %d", seqs, c.st.NextSeq)
				}
			},
		},

		// ask: every validation, retries, on_invalid, timeouts.
		{
			name: "survey happy path with a pressed button", flow: "survey.yaml", start: Start{Contact: john},
			events: []Event{
				Reply{Now: at(1), ButtonID: "yes"},
				Reply{Now: at(2), Text: "ann@example.com"},
				Reply{Now: at(3), Text: "+49 (30) 1234-567"},
				Reply{Now: at(4), Text: "10115"},
				Reply{Now: at(5), Text: "4"},
			},
			sends: []string{
				"May we ask you three questions? [yes:Yes no:No]",
				"Your email?", "Your phone number?", "Your postcode (5 digits)?",
				"From 1 to 5, how likely are you to recommend us?",
				"Thanks! ann@example.com / +49301234567 / 10115 / 4",
			},
			status: StatusCompleted, cursor: "done",
			attrs: map[string]any{"consent": "yes", "email": "ann@example.com", "phone": "+49301234567", "zip": "10115", "rating": 4.0},
			check: func(t *testing.T, c *conversation) {
				if c.st.Vars["last_reply"] != "4" {
					t.Errorf("last_reply %v", c.st.Vars["last_reply"])
				}
			},
		},
		{
			name: "button answered by typing its title", flow: "survey.yaml", start: Start{Contact: john},
			events: []Event{Reply{Now: at(1), Text: "no"}},
			sends:  []string{"May we ask you three questions? [yes:Yes no:No]", "Maybe another time."},
			status: StatusCompleted, cursor: "done", attrs: map[string]any{"consent": "no"},
		},
		{
			name: "invalid button twice goes to on_invalid", flow: "survey.yaml", start: Start{Contact: john},
			events: []Event{Reply{Now: at(1), Text: "maybe"}, Reply{Now: at(2), ButtonID: "later"}},
			sends: []string{"May we ask you three questions? [yes:Yes no:No]",
				"May we ask you three questions? [yes:Yes no:No]", "Maybe another time."},
			status: StatusCompleted,
			check: func(t *testing.T, c *conversation) {
				if _, ok := c.st.Attributes["consent"]; ok {
					t.Error("invalid answer stored")
				}
			},
		},
		{
			name: "retry text, retries 0, regex timeout to on_timeout", flow: "survey.yaml", start: Start{Contact: john},
			events: []Event{
				Reply{Now: at(time.Minute), Text: "Yes"},
				Reply{Now: at(2 * time.Minute), Text: "ann at example"},
				Reply{Now: at(3 * time.Minute), Text: "ann@example.com"},
				Reply{Now: at(4 * time.Minute), Text: "call me"}, // retries 0 → zip at 4m, deadline 14m
				TimerFired{Now: at(13 * time.Minute)},
				TimerFired{Now: at(14 * time.Minute)},
			},
			sends: []string{"May we ask you three questions? [yes:Yes no:No]", "Your email?",
				"That does not look like an email address, try again.", "Your phone number?",
				"Your postcode (5 digits)?", "No worries, we'll ask another time."},
			status: StatusCompleted, cursor: "done",
			check: func(t *testing.T, c *conversation) {
				timers := c.effectsOf("ScheduleTimer")
				if len(timers) != 1 || !timers[0].(ScheduleTimer).At.Equal(at(14*time.Minute)) {
					t.Errorf("timers %+v", timers)
				}
			},
		},
		{
			name: "number out of range re-asked, timeout without on_timeout expires", flow: "survey.yaml", start: Start{Contact: john},
			events: []Event{
				Reply{Now: at(1), ButtonID: "yes"}, Reply{Now: at(2), Text: "a@b.io"}, Reply{Now: at(3), Text: "5550100"},
				Reply{Now: at(4), Text: "12345"}, Reply{Now: at(5), Text: "9"},
				TimerFired{Now: at(time.Hour + 4)},
			},
			status: StatusExpired, cursor: "rating", err: `step "rating": no answer within 1h0m0s`,
			check: func(t *testing.T, c *conversation) {
				s := c.sends()
				if s[len(s)-1] != s[len(s)-2] || !strings.HasPrefix(s[len(s)-1], "From 1 to 5") {
					t.Errorf("not re-asked: %q", s)
				}
				if c.st.Attributes["phone"] != "5550100" {
					t.Errorf("phone %v", c.st.Attributes["phone"])
				}
			},
		},

		// template with a WhatsApp Flow button.
		{
			name: "template flow completed", flow: "template.yaml",
			start: Start{Contact: john, Data: map[string]any{"course": "Go 101"}},
			events: []Event{
				FlowCompleted{Now: at(time.Hour), FlowToken: "someone-else", Data: map[string]any{"fname": "Eve"}},
				FlowCompleted{Now: at(time.Hour), FlowToken: "fg:run1:invite:1",
					Data: map[string]any{"fname": "Anna", "address": map[string]any{"city": "Berlin"}}},
			},
			sends: []string{
				`template registration_invite/en_US(John Doe, Go 101) flow[0 fg:run1:invite:1 {"course":"Go 101","fname":"John Doe","seats":3}]`,
				"Thanks Anna from Berlin, you're signed up.",
			},
			status: StatusCompleted, cursor: "done",
			attrs: map[string]any{"first_name": "Anna", "city": "Berlin",
				"signup": map[string]any{"fname": "Anna", "address": map[string]any{"city": "Berlin"}}},
		},
		{
			name: "template waiting for completion", flow: "template.yaml", start: Start{Contact: john},
			status: StatusWaiting, waiting: WaitFlowCompletion, cursor: "invite",
			check: func(t *testing.T, c *conversation) {
				if c.st.FlowToken != "fg:run1:invite:1" || !c.st.WaitDeadline.Equal(at(48*time.Hour)) {
					t.Errorf("token %q deadline %v", c.st.FlowToken, c.st.WaitDeadline)
				}
			},
		},
		{
			name: "template timeout sends the reminder", flow: "template.yaml",
			start:  Start{Contact: john, Data: map[string]any{"course": "Go", "deadline": "Friday"}},
			events: []Event{TimerFired{Now: at(48 * time.Hour)}},
			status: StatusCompleted, cursor: "done",
			check: func(t *testing.T, c *conversation) {
				s := c.sends()
				if len(s) != 2 || s[1] != "template registration_reminder/en_US(Friday)" {
					t.Errorf("sends %q", s)
				}
			},
		},
		{
			name: "template reminder skipped when its parameter is empty", flow: "template.yaml",
			start:  Start{Contact: john},
			events: []Event{TimerFired{Now: at(49 * time.Hour)}},
			status: StatusCompleted,
			check: func(t *testing.T, c *conversation) {
				if len(c.sends()) != 1 {
					t.Errorf("sends %q", c.sends())
				}
			},
		},

		// whatsapp_flow
		{
			name: "interactive flow completed", flow: "whatsapp_flow.yaml",
			start: Start{Contact: john, Data: map[string]any{"department": "Cardiology"}},
			events: []Event{FlowCompleted{Now: at(time.Minute),
				Data: map[string]any{"slot": "10:00", "department": "Cardiology"}}},
			sends: []string{
				`flow 1234567890 "Book your appointment, John Doe" cta=Book now token=fg:run1:form:1 screen=APPOINTMENT {"department":"Cardiology","slots":["09:00","10:00"]}`,
				"See you at 10:00 (Cardiology).",
			},
			status: StatusCompleted, attrs: map[string]any{"slot": "10:00"},
			check: func(t *testing.T, c *conversation) {
				f := c.effects[0].(Send).Content.Flow
				if f.Header != "Booking" || f.FooterText != "Takes one minute" || f.Action != "navigate" {
					t.Errorf("flow %+v", f)
				}
				if !reflect.DeepEqual(c.st.Vars["flow_response"], map[string]any{"slot": "10:00", "department": "Cardiology"}) {
					t.Errorf("flow_response %v", c.st.Vars["flow_response"])
				}
			},
		},
		{
			name: "interactive flow times out", flow: "whatsapp_flow.yaml", start: Start{Contact: john},
			events: []Event{TimerFired{Now: at(time.Hour)}},
			status: StatusExpired, err: "no answer within 1h0m0s",
		},

		// http, set, branch on the response.
		{
			name: "http shipped", flow: "http.yaml",
			start: Start{Contact: john, Data: map[string]any{"order_id": "42", "lang": "en", "token": "s3cret"}},
			events: []Event{HTTPResult{Now: at(time.Second), StatusCode: 200,
				Body: json.RawMessage(`{"status":"shipped","delivery":{"eta":"Friday"},"items":[{"name":"lamp"}]}`)}},
			sends:  []string{"Your lamp is on its way, arriving Friday."},
			status: StatusCompleted, cursor: "done",
			attrs: map[string]any{"order_state": "shipped", "eta": "Friday", "first_item": "lamp", "orders_checked": 1.0},
			check: func(t *testing.T, c *conversation) {
				calls := c.effectsOf("CallHTTP")
				if len(calls) != 1 {
					t.Fatalf("calls %v", calls)
				}
				call := calls[0].(CallHTTP)
				want := CallHTTP{Step: "lookup", Method: "POST", URL: "https://api.example.com/orders/42?lang=en",
					Headers: map[string]string{"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
					Body:    []byte(`{"contact":"+15550001","flags":[1,2],"order":"42"}`), Timeout: 5 * time.Second}
				if !reflect.DeepEqual(call, want) {
					t.Errorf("call\n got %+v\nwant %+v", call, want)
				}
				timers := c.effectsOf("ScheduleTimer")
				if len(timers) != 1 || !timers[0].(ScheduleTimer).At.Equal(at(35*time.Second)) {
					t.Errorf("timers %+v", timers)
				}
				if c.st.Vars["http_status"] != 200.0 || c.st.Vars["shipped"] != true {
					t.Errorf("vars %v", c.st.Vars)
				}
			},
		},
		{
			name: "http pending counts checks", flow: "http.yaml",
			start:  Start{Contact: Contact{Attributes: map[string]any{"orders_checked": 2.0}}, Data: map[string]any{"order_id": 7}},
			events: []Event{HTTPResult{Now: at(time.Second), StatusCode: 201, Body: json.RawMessage(`{"status":"packing"}`)}},
			sends:  []string{"Order 7 is packing."}, status: StatusCompleted,
			attrs: map[string]any{"orders_checked": 3.0, "order_state": "packing"},
			check: func(t *testing.T, c *conversation) {
				sets := c.effectsOf("SetAttributes")
				if len(sets) != 2 || !reflect.DeepEqual(sets[1].(SetAttributes).Values, map[string]any{"orders_checked": 3.0}) {
					t.Errorf("set attributes %+v", sets)
				}
			},
		},
		{
			name: "http network error goes to on_error", flow: "http.yaml", start: Start{Data: map[string]any{"order_id": "42"}},
			events: []Event{HTTPResult{Now: at(time.Second), Err: "connection refused"}},
			sends:  []string{"We could not look up your order (connection refused)."},
			status: StatusFailed, cursor: "failed", err: "order lookup failed for 42",
		},
		{
			name: "http 500 goes to on_error", flow: "http.yaml", start: Start{Data: map[string]any{"order_id": "42"}},
			events: []Event{HTTPResult{Now: at(time.Second), StatusCode: 500, Body: json.RawMessage(`oops`)}},
			sends:  []string{"We could not look up your order (status 500)."}, status: StatusFailed,
			err: "order lookup failed for 42",
		},
		{
			name: "http non-JSON answer goes to on_error", flow: "http.yaml", start: Start{Data: map[string]any{"order_id": "42"}},
			events: []Event{HTTPResult{Now: at(time.Second), StatusCode: 200, Body: json.RawMessage(`<html>`)}},
			status: StatusFailed, err: "order lookup failed for 42",
			check: func(t *testing.T, c *conversation) {
				if s := c.sends(); len(s) != 1 || !strings.Contains(s[0], "response is not JSON") {
					t.Errorf("sends %q", s)
				}
			},
		},
		{
			name: "lost http result rescued by the timer", flow: "http.yaml", start: Start{Data: map[string]any{"order_id": "42"}},
			events: []Event{TimerFired{Now: at(34 * time.Second)}, TimerFired{Now: at(35 * time.Second)},
				HTTPResult{Now: at(36 * time.Second), StatusCode: 200, Body: json.RawMessage(`{}`)}},
			sends: []string{"We could not look up your order (no result before the timeout)."}, status: StatusFailed,
			err: "order lookup failed for 42",
		},

		// goto (step and flow), end failed.
		{
			name: "menu loops through goto, then quits", flow: "goto.yaml", start: Start{Contact: john},
			events: []Event{Reply{Now: at(1), Text: "1"}, Reply{Now: at(2), Text: "7"}, Reply{Now: at(3), Text: "3"}},
			sends: []string{"Menu: 1) plans 2) support 3) quit", "We have Basic and Premium.",
				"Menu: 1) plans 2) support 3) quit", "Menu: 1) plans 2) support 3) quit"},
			status: StatusFailed, cursor: "quit", err: "user quit at choice 3",
		},
		{
			name: "goto another flow", flow: "goto.yaml", start: Start{Contact: john, Data: map[string]any{"plan": "Gold"}},
			events: []Event{Reply{Now: at(1), Text: "2"}},
			status: StatusCompleted, cursor: "support",
			check: func(t *testing.T, c *conversation) {
				g := c.effectsOf("GotoFlow")
				if len(g) != 1 {
					t.Fatalf("effects %+v", c.effects)
				}
				gf := g[0].(GotoFlow)
				if gf.FlowID != "support_flow" || gf.Start.RunID != "run1" || gf.Start.NextSeq != 2 ||
					gf.Start.StepsExecuted != 3 || gf.Start.Contact.Attributes["choice"] != "2" ||
					gf.Start.Data["plan"] != "Gold" || gf.Start.Contact.Name != "John Doe" {
					t.Fatalf("goto %+v", gf)
				}
				// The runner starts the other flow with the carried state:
				// message numbering continues, so message ids stay unique.
				next := startRun(t, loadFlow(t, "welcome.yaml"), gf.Start)
				sends := next.effectsOf("Send")
				if len(sends) != 2 || sends[0].(Send).Seq != 2 || next.st.StepsExecuted != 6 ||
					summary(sends[1].(Send).Content) != "You've signed up for the Gold plan." {
					t.Errorf("continued run: %+v %+v", sends, next.st)
				}
			},
		},

		// runaway guard
		{
			name: "step budget stops a flow that loops through a wait", flow: "runaway.yaml", start: Start{},
			events: []Event{TimerFired{Now: at(time.Minute)}, TimerFired{Now: at(2 * time.Minute)}, TimerFired{Now: at(3 * time.Minute)}},
			sends:  []string{"ping ", "ping 1", "ping 2"},
			status: StatusFailed, cursor: "pause",
			err: `step "pause": step budget exceeded: the run executed 10 steps (max_steps 10); stopped at step "pause"`,
			check: func(t *testing.T, c *conversation) {
				if c.st.StepsExecuted != 10 {
					t.Errorf("steps %d", c.st.StepsExecuted)
				}
			},
		},
	}
}

func TestScenarios(t *testing.T) {
	covered := map[StepType]bool{}
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			def := loadFlow(t, sc.flow)
			c := startRun(t, def, sc.start)
			for _, ev := range sc.events {
				c.apply(ev)
			}
			if sc.sends != nil {
				if got := c.sends(); !reflect.DeepEqual(got, sc.sends) {
					t.Errorf("sends\n got %q\nwant %q", got, sc.sends)
				}
			}
			if c.st.Status != sc.status {
				t.Errorf("status %q, want %q (error %q)", c.st.Status, sc.status, c.st.Error)
			}
			if c.st.WaitingFor != sc.waiting {
				t.Errorf("waiting for %q, want %q", c.st.WaitingFor, sc.waiting)
			}
			if sc.cursor != "" && c.st.Cursor != sc.cursor {
				t.Errorf("cursor %q, want %q", c.st.Cursor, sc.cursor)
			}
			for k, want := range sc.attrs {
				if got := c.st.Attributes[k]; !reflect.DeepEqual(got, want) {
					t.Errorf("attribute %s = %#v, want %#v", k, got, want)
				}
			}
			if !strings.Contains(c.st.Error, sc.err) || (sc.err == "" && c.st.Error != "") {
				t.Errorf("error %q, want %q", c.st.Error, sc.err)
			}
			if sc.status.Terminal() && (c.st.EndedAt.IsZero() || c.st.WaitingFor != "") {
				t.Errorf("terminal state %+v", c.st)
			}
			if sc.check != nil {
				sc.check(t, c)
			}
			c.golden(t, sc.name)
			for _, h := range c.st.History {
				covered[h.Type] = true
			}
		})
	}
	for _, typ := range StepTypes {
		if !covered[typ] {
			t.Errorf("no scenario executes a %s step", typ)
		}
	}
}

func TestRunnerCanLowerTheBudget(t *testing.T) {
	def := loadFlow(t, "media.yaml")
	def.MaxSteps = 3
	c := startRun(t, def, Start{Contact: john})
	if c.st.Status != StatusFailed || len(c.sends()) != 3 || !strings.Contains(c.st.Error, "max_steps 3") {
		t.Fatalf("state %+v sends %q", c.st, c.sends())
	}
}

func TestHistoryIsBounded(t *testing.T) {
	def, err := Parse([]byte(`
max_steps: 100000
steps:
  - {id: q, type: ask, text: "Again?"}
  - {id: loop, type: goto, step: q}
`))
	if err != nil {
		t.Fatal(err)
	}
	c := startRun(t, def, Start{})
	for i := 0; i < 300; i++ {
		c.apply(Reply{Now: at(time.Duration(i+1) * time.Second), Text: "yes"})
	}
	if len(c.st.History) != MaxHistory {
		t.Fatalf("history has %d entries", len(c.st.History))
	}
	last := c.st.History[len(c.st.History)-1]
	if last.Step != "q" || !last.At.Equal(at(300*time.Second)) {
		t.Fatalf("last entry %+v", last)
	}
	if c.st.StepsExecuted != 601 || c.st.NextSeq != 302 {
		t.Fatalf("steps %d seq %d", c.st.StepsExecuted, c.st.NextSeq)
	}
}

func TestApplyIsPureAndDeterministic(t *testing.T) {
	def := loadFlow(t, "survey.yaml")
	st, _, err := Apply(def, State{}, Start{Now: t0, RunID: "r", Contact: Contact{Attributes: map[string]any{"x": 1.0}}})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := json.Marshal(st)
	ev := Reply{Now: at(time.Second), ButtonID: "yes"}
	st1, eff1, err1 := Apply(def, st, ev)
	st2, eff2, err2 := Apply(def, st, ev)
	after, _ := json.Marshal(st)
	if string(before) != string(after) {
		t.Fatalf("Apply modified its input:\n%s\n%s", before, after)
	}
	if err1 != nil || err2 != nil || !reflect.DeepEqual(st1, st2) || !reflect.DeepEqual(eff1, eff2) {
		t.Fatalf("not deterministic:\n%+v\n%+v", st1, st2)
	}
	if st1.Attributes["consent"] != "yes" || st.Attributes["consent"] != nil {
		t.Fatalf("attributes %v / %v", st1.Attributes, st.Attributes)
	}
}

func TestIgnoredEventsLeaveStateAlone(t *testing.T) {
	def := loadFlow(t, "reminder.yaml")
	c := startRun(t, def, Start{})
	for _, ev := range []Event{
		Reply{Now: at(time.Hour), Text: "hi"},
		TimerFired{Now: at(time.Hour)},
		HTTPResult{Now: at(time.Hour), StatusCode: 200},
		FlowCompleted{Now: at(time.Hour)},
	} {
		if Accepts(c.st, ev) {
			t.Errorf("Accepts(%T) = true", ev)
		}
		st, effs, err := Apply(def, c.st, ev)
		if err != nil || effs != nil || !reflect.DeepEqual(st, c.st) {
			t.Errorf("%T changed the state: %v %v", ev, effs, err)
		}
	}
	done := c.apply(TimerFired{Now: at(24 * time.Hour)})
	if len(done) != 1 || c.st.Status != StatusCompleted {
		t.Fatalf("effects %v state %+v", done, c.st)
	}
	for _, ev := range []Event{Cancel{Now: at(25 * time.Hour)}, Expire{}, TimerFired{Now: at(100 * time.Hour)}, Reply{Text: "x"}} {
		if Accepts(c.st, ev) {
			t.Errorf("a completed run accepts %T", ev)
		}
		if st, _, _ := Apply(def, c.st, ev); st.Status != StatusCompleted {
			t.Errorf("%T changed a completed run", ev)
		}
	}
}

type bogusEvent struct{ Start }

func TestApplyCallerErrors(t *testing.T) {
	def := loadFlow(t, "welcome.yaml")
	if _, _, err := Apply(&Definition{Steps: def.Steps}, State{}, Start{}); !errors.Is(err, ErrNotParsed) {
		t.Errorf("unparsed definition: %v", err)
	}
	if _, _, err := Apply(nil, State{}, Start{}); !errors.Is(err, ErrNotParsed) {
		t.Errorf("nil definition: %v", err)
	}
	if _, _, err := Apply(def, State{}, Reply{}); !errors.Is(err, ErrNotStarted) {
		t.Errorf("reply before start: %v", err)
	}
	// The interrupts need no definition and end a run that never started.
	for _, ev := range []Event{Cancel{Now: t0}, Expire{Now: t0}, Fail{Now: t0, Reason: "flow gone"}, DeliveryFailed{Now: t0}} {
		st, effs, err := Apply(nil, State{Status: StatusCreated}, ev)
		if err != nil || !st.Status.Terminal() || len(effs) != 0 || st.EndedAt != t0 {
			t.Errorf("%T on a created run without definition: %v %+v %v", ev, err, st, effs)
		}
	}
	if _, _, err := Apply(nil, State{Status: StatusWaiting}, Reply{}); !errors.Is(err, ErrNotParsed) {
		t.Errorf("reply without definition: %v", err)
	}
	waiting, _, err := Apply(def, State{}, Start{Now: t0, OpenWindow: &openingTemplate})
	if err != nil || waiting.Status != StatusWaiting || waiting.WaitingFor != WaitWindow {
		t.Fatalf("start with a window to open: %v %+v", err, waiting)
	}
	if Accepts(waiting, Reply{Text: "hi"}) || Accepts(waiting, TimerFired{Now: t0.Add(time.Hour)}) {
		t.Errorf("a run waiting for the window accepts a reply or a timer")
	}
	if _, _, err := Apply(def, State{}, nil); !errors.Is(err, ErrUnknownEvent) {
		t.Errorf("nil event: %v", err)
	}
	if _, _, err := Apply(def, State{Status: StatusWaiting}, bogusEvent{}); !errors.Is(err, ErrUnknownEvent) {
		t.Errorf("foreign event: %v", err)
	}
	st, _, err := Apply(def, State{Status: StatusQueued}, Start{Now: t0})
	if err != nil || st.Status != StatusCompleted {
		t.Fatalf("start from queued: %v %+v", err, st)
	}
	if _, _, err := Apply(def, st, Start{Now: t0}); !errors.Is(err, ErrAlreadyStarted) {
		t.Errorf("second start: %v", err)
	}
}

func TestRuntimeErrorsFailTheRun(t *testing.T) {
	for name, tc := range map[string]struct{ doc, err string }{
		"non-boolean condition": {`
steps:
  - {id: b, type: branch, conditions: [{when: 'data.plan', next: e}]}
  - {id: e, type: end}`, `condition "data.plan" is a string, not true or false`},
		"failing expression": {`
steps:
  - {id: s, type: set, attributes: {n: 'int(data.plan)'}}`, `step "s": attribute n: expression "int(data.plan)"`},
		"non-boolean if": {`
steps:
  - {id: s, type: send, text: hi, if: '42'}`, `step "s": condition "42" is a int`},
		"http url rendered to garbage": {`
steps:
  - {id: h, type: http, url: "{{ data.plan }}"}`, `step "h": http: url scheme must be http or https`},
	} {
		t.Run(name, func(t *testing.T) {
			def, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			c := startRun(t, def, Start{Data: map[string]any{"plan": "pro"}})
			if c.st.Status != StatusFailed || !strings.Contains(c.st.Error, tc.err) {
				t.Fatalf("status %s error %q", c.st.Status, c.st.Error)
			}
		})
	}
}

func TestSetExpressionsSeeEventTimeAndPlaceholders(t *testing.T) {
	def, err := Parse([]byte(`
steps:
  - id: s
    type: set
    attributes:
      greeted_at: 'now'
      tags: '["a", "b"]'
      score: '2 * 21'
    vars:
      hour: 'now.Hour()'
      late: 'now.Hour() >= 17'
      first: 'name'
  - {id: t, type: send, text: "{{ hour }}h {{ vars.late }} {{ tags }} {{ score }} {{ attributes.tags.1 }} {{ contact.channel }} {{ missing }}|{{ data.deep.x }}|{{ first }}"}
`))
	if err != nil {
		t.Fatal(err)
	}
	at := testclock.Date(2026, 5, 1, 18, 30, 0)
	c := startRun(t, def, Start{Now: at, Contact: john})
	want := `18h true ["a","b"] 42 b whatsapp ||John Doe`
	if s := c.sends(); len(s) != 1 || s[0] != want {
		t.Fatalf("got %q want %q", s, want)
	}
	if c.st.Attributes["greeted_at"] != at.Format(time.RFC3339) {
		t.Fatalf("greeted_at %v", c.st.Attributes["greeted_at"])
	}
}

func TestClockBuiltinIsRefused(t *testing.T) {
	_, err := Parse([]byte(`{"steps":[{"id":"s","type":"set","vars":{"t":"now()"}}]}`))
	if err == nil || !strings.Contains(err.Error(), "steps[0].vars.t: invalid expression: unknown function now()") {
		t.Fatalf("now() accepted: %v", err)
	}
}

func TestDeliveryFailureFailsACompletedRun(t *testing.T) {
	def := loadFlow(t, "welcome.yaml")
	c := startRun(t, def, Start{Data: map[string]any{"plan": "Basic"}})
	if c.st.Status != StatusCompleted {
		t.Fatalf("status %s", c.st.Status)
	}
	c.apply(DeliveryFailed{Now: at(time.Second), Seq: 2, Reason: "blocked"})
	if c.st.Status != StatusFailed || c.st.Error != "message 2 could not be delivered: blocked" ||
		!c.st.EndedAt.Equal(at(time.Second)) {
		t.Fatalf("state %+v", c.st)
	}
	// A failed, cancelled or expired run stays as it is.
	for _, st := range []Status{StatusFailed, StatusCancelled, StatusExpired} {
		if Accepts(State{Status: st}, DeliveryFailed{}) {
			t.Errorf("%s run accepts a delivery failure", st)
		}
	}
}

func TestConcurrentRunsShareADefinition(t *testing.T) {
	def := loadFlow(t, "http.yaml")
	done := make(chan State)
	for i := 0; i < 8; i++ {
		go func() {
			st, _, _ := Apply(def, State{}, Start{Now: t0, Data: map[string]any{"order_id": i}})
			st, _, _ = Apply(def, st, HTTPResult{Now: at(time.Second), StatusCode: 200, Body: json.RawMessage(`{"status":"shipped","items":[{"name":"x"}]}`)})
			done <- st
		}()
	}
	for i := 0; i < 8; i++ {
		if st := <-done; st.Status != StatusCompleted || st.Cursor != "done" {
			t.Errorf("run %d: %+v", i, st)
		}
	}
}

func TestStartTakesRunIDFromState(t *testing.T) {
	def := loadFlow(t, "whatsapp_flow.yaml")
	st, _, err := Apply(def, State{RunID: "r-9", Status: StatusCreated}, Start{Now: t0})
	if err != nil || st.RunID != "r-9" || st.FlowToken != "fg:r-9:form:1" {
		t.Fatalf("%v %+v", err, st)
	}
}

func TestStartNormalisesInputs(t *testing.T) {
	def := loadFlow(t, "vip.json")
	data := map[string]any{"user_type": "vip", "n": 3, "tags": []string{"a"}}
	st, _, err := Apply(def, State{}, Start{Now: t0, Data: data})
	if err != nil || st.Status != StatusCompleted {
		t.Fatalf("%v %+v", err, st)
	}
	if st.Data["n"] != 3.0 || !reflect.DeepEqual(st.Data["tags"], []any{"a"}) {
		t.Fatalf("data %#v", st.Data)
	}
	data["user_type"] = "changed"
	if st.Data["user_type"] != "vip" {
		t.Fatal("state shares the caller's map")
	}
	st, _, _ = Apply(def, State{}, Start{Now: t0, Data: map[string]any{"bad": func() {}}})
	if st.Status != StatusFailed || !strings.Contains(st.Error, "trigger data") {
		t.Fatalf("%+v", st)
	}
}

// last_request (the contact's, Botmother's last_request.x) is readable in
// placeholders and in expressions, survives the state's JSON round trip and
// a hand-over to another flow, and is empty when the contact has none.
func TestLastRequestIsReadable(t *testing.T) {
	def, err := Parse([]byte(`
steps:
  - id: b
    type: branch
    conditions:
      - {when: 'last_request.plan == "pro" && last_request.seats > 2', next: pro}
    default: basic
  - {id: pro, type: send, text: "Pro: {{ last_request.plan }}, {{ last_request.seats }} seats, {{ last_request.owner.name }}", next: end}
  - {id: basic, type: send, text: "Basic: [{{ last_request.plan }}]"}
  - {id: end, type: end}
`))
	if err != nil {
		t.Fatal(err)
	}
	lr := map[string]any{"plan": "pro", "seats": 3, "owner": map[string]any{"name": "Ann"}}
	c := startRun(t, def, Start{Contact: Contact{ID: "c1", Name: "John", LastRequest: lr}, Data: map[string]any{"plan": "data-plan"}})
	if s := c.sends(); len(s) != 1 || s[0] != "Pro: pro, 3 seats, Ann" {
		t.Fatalf("got %q", s)
	}
	raw, err := json.Marshal(c.st)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.LastRequest, c.st.LastRequest) || back.LastRequest["seats"] != 3.0 {
		t.Fatalf("last_request after the round trip: %v", back.LastRequest)
	}
	c = startRun(t, def, Start{Contact: Contact{ID: "c2", Name: "Jo"}})
	if s := c.sends(); len(s) != 1 || s[0] != "Basic: []" {
		t.Fatalf("no last_request: got %q", s)
	}
	// last_request is a reserved name.
	if _, err := Parse([]byte(`{"steps":[{"id":"s","type":"set","attributes":{"last_request":"1"}}]}`)); err == nil {
		t.Fatal("an attribute named last_request was accepted")
	}
}
