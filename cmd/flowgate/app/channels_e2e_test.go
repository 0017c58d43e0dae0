package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/events"
	tgdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
	wadouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

const (
	waPhoneID   = "106540352242922"
	waAppSecret = "meta-app-secret-e2e"
)

// waBot creates bot id on WhatsApp against double d and returns its key.
func waBot(c client, d *wadouble.Server, id string) string {
	return createBot(c, id, map[string]any{
		"default_channel": "whatsapp",
		"whatsapp": map[string]any{"phone_number_id": waPhoneID, "access_token": wadouble.DefaultToken,
			"app_secret": waAppSecret, "verify_token": "vt", "api_base": d.APIBase()},
	})
}

// waWebhook posts a notification signed as Meta would.
func waWebhook(t *testing.T, c client, bot string, n *wadouble.Notification) {
	t.Helper()
	body, sig := wadouble.SignedWebhook(waAppSecret, n)
	req, err := http.NewRequest(http.MethodPost, c.base+"/webhooks/whatsapp/"+bot, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", sig)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// waTexts are the bodies of the free-form texts the double accepted for to.
func waTexts(d *wadouble.Server, to string) []string {
	var out []string
	for _, m := range d.Accepted() {
		if m.To == to && m.Type == "text" {
			out = append(out, m.Map()["text"].(map[string]any)["body"].(string))
		}
	}
	return out
}

func waAccepted(d *wadouble.Server, to string) []wadouble.AcceptedMessage {
	var out []wadouble.AcceptedMessage
	for _, m := range d.Accepted() {
		if m.To == to {
			out = append(out, m)
		}
	}
	return out
}

func runStatus(t *testing.T, d *app.Dev, bot, id string) store.Run {
	t.Helper()
	r, err := d.Store.GetRun(context.Background(), bot, id)
	if err != nil {
		return store.Run{}
	}
	return r
}

// The Recrubo seed over WhatsApp: the contact never wrote, so the run first
// sends the template initialMessage (a free-form message would be refused
// with 131047: the double enforces the window); the reply opens the window
// and the flow continues with free-form messages.
func TestRecruboOutsideWindowOverWhatsApp(t *testing.T) {
	wa := wadouble.New(wadouble.WithWindowEnforcement())
	defer wa.Close()
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := waBot(c, wa, "recruit")
	c.must("PUT", "/v1/bots/recruit/flows/eb3c92e9-2548-4e4c-95d5-adfb94270c3f", key,
		`{"steps":[{"id":"q","type":"ask","text":"Hi {{ contact.name }}! Are you still looking for a job?","attribute":"answer"},
		 {"id":"t","type":"send","text":"Thanks: {{ answer }}"}]}`, 200)
	jsonapi := func(method, path, body string, want int) map[string]any {
		return c.must(method, path, key, body, want, "Content-Type", "application/vnd.api+json")
	}
	thread := jsonapi("POST", "/public/v2/message-threads",
		`{"data": {"type": "messageThreads", "attributes": {"channel": "whatsapp", "identifier": "31612345678"}}}`, 201)
	threadID := thread["data"].(map[string]any)["id"].(string)
	// The seed's document as written: the template names no language, so
	// the number's default ("en") is used.
	run := jsonapi("POST", "/public/v2/flow-runs", `{"data": {"type": "flowRuns", "attributes": {
	  "flowId": "eb3c92e9-2548-4e4c-95d5-adfb94270c3f", "messageThreadId": "`+threadID+`", "state": {},
	  "initialMessage": {"type": "template", "template": {"id": "candidate_invite",
	    "components": [{"type": "body", "parameters": [{"type": "text", "text": "John"}]}]}}}}}`, 202)
	id := run["data"].(map[string]any)["id"].(string)

	const to = "+31612345678"
	require.Eventually(t, func() bool { return len(waAccepted(wa, to)) == 1 }, 10*time.Second, 20*time.Millisecond)
	first := waAccepted(wa, to)[0]
	require.Equal(t, "template", first.Type)
	tpl := first.Map()["template"].(map[string]any)
	require.Equal(t, "candidate_invite", tpl["name"])
	require.Equal(t, "en", tpl["language"].(map[string]any)["code"])
	require.Equal(t, "John", tpl["components"].([]any)[0].(map[string]any)["parameters"].([]any)[0].(map[string]any)["text"])
	require.Eventually(t, func() bool { return runStatus(t, d, "recruit", id).Status == store.RunWaiting }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, waAccepted(wa, to), 1, "nothing free-form before the contact answers")
	require.Zero(t, wa.Stats().Rejected[131047])

	// Meta reports the template delivered and read: the message record follows.
	waWebhook(t, c, "recruit", wadouble.NewNotification(waPhoneID).
		AddStatus(wadouble.StatusUpdate(first.WAMID, "delivered", to, time.Now())).
		AddStatus(wadouble.StatusUpdate(first.WAMID, "read", to, time.Now())))
	require.Eventually(t, func() bool {
		ms, err := d.Store.ListRunMessages(context.Background(), "recruit", id)
		return err == nil && len(ms) == 1 && ms[0].Status == events.StatusRead && ms[0].ProviderMessageID == first.WAMID
	}, 10*time.Second, 20*time.Millisecond)

	// The candidate answers the template: the window opens, the flow starts.
	now := time.Now()
	wa.UserWrote(to, now)
	waWebhook(t, c, "recruit", wadouble.NewNotification(waPhoneID).
		AddMessage("John", wadouble.TextMessage(to, wadouble.MessageID(), "Hello!", now)))
	require.Eventually(t, func() bool { return len(waTexts(wa, to)) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"Hi John! Are you still looking for a job?"}, waTexts(wa, to))

	reply := wadouble.NewNotification(waPhoneID).AddMessage("John", wadouble.TextMessage(to, wadouble.MessageID(), "yes", time.Now()))
	waWebhook(t, c, "recruit", reply)
	waWebhook(t, c, "recruit", reply) // Meta's retry changes nothing
	require.Eventually(t, func() bool { return runStatus(t, d, "recruit", id).Status == store.RunCompleted }, 10*time.Second, 20*time.Millisecond)
	want := []string{"Hi John! Are you still looking for a job?", "Thanks: yes"}
	require.Eventually(t, func() bool { return len(waTexts(wa, to)) == 2 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, want, waTexts(wa, to))
	require.Zero(t, wa.Stats().Rejected[131047], "no free-form message was ever sent outside the window")

	// Progress counts on the trigger (the run id is the trigger id).
	require.Eventually(t, func() bool {
		tr, err := d.Store.GetTrigger(context.Background(), "recruit", id)
		return err == nil && tr.Counters.Sent == 3 && tr.Counters.Delivered == 1
	}, 10*time.Second, 20*time.Millisecond)
}

// The WhatsApp Flow launch seed: a template with a Flow button carrying
// flow_token and flow_action_data; the nfm_reply webhook resumes the run
// with the submitted data.
func TestWhatsAppFlowLaunchByTemplate(t *testing.T) {
	wa := wadouble.New(wadouble.WithWindowEnforcement())
	defer wa.Close()
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := waBot(c, wa, "school")
	c.must("PUT", "/v1/bots/school/flows/signup", key, `{"steps":[
	  {"id":"invite","type":"template","template":"registration_invite","language":"en_US",
	   "flow_button":{"index":"0","flow_token":"flow_demo_00001",
	     "flow_action_data":{"fname":"{{ data.fname }}","lname":"{{ data.lname }}","age":"{{ data.age }}"}},
	   "wait_completion":true,"timeout":"2d","attribute":"signup","map":{"course":"course"}},
	  {"id":"ok","type":"send","text":"Thanks {{ attributes.signup.fname }}, you're signed up for {{ course }}."}]}`, 200)
	c.must("PUT", "/v1/bots/school/events/SIGNUP", key, `{"flow":"signup"}`, 201)
	const to = "+37120000001"
	c.must("POST", "/v1/bots/school/dispatch/SIGNUP", key, `{"from":"`+to+`","fname":"Anna","lname":"Stakina","age":"30"}`, 202)

	require.Eventually(t, func() bool { return len(waAccepted(wa, to)) == 1 }, 10*time.Second, 20*time.Millisecond)
	m := waAccepted(wa, to)[0]
	require.Equal(t, "template", m.Type)
	comps := m.Map()["template"].(map[string]any)["components"].([]any)
	btn := comps[len(comps)-1].(map[string]any)
	require.Equal(t, "button", btn["type"])
	require.Equal(t, "flow", btn["sub_type"])
	require.Equal(t, "0", btn["index"])
	action := btn["parameters"].([]any)[0].(map[string]any)["action"].(map[string]any)
	require.Equal(t, "flow_demo_00001", action["flow_token"])
	require.Equal(t, map[string]any{"fname": "Anna", "lname": "Stakina", "age": "30"}, action["flow_action_data"])

	runs, _, err := d.Store.ListRuns(context.Background(), store.RunFilter{BotID: "school"})
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Eventually(t, func() bool { return runStatus(t, d, "school", runs[0].ID).Status == store.RunWaiting }, 10*time.Second, 20*time.Millisecond)

	// A completion with another token is not this run's.
	now := time.Now()
	wa.UserWrote(to, now)
	waWebhook(t, c, "school", wadouble.NewNotification(waPhoneID).
		AddMessage("Anna", wadouble.FlowReply(to, wadouble.MessageID(), "someone_else", map[string]any{"fname": "X"}, now)))
	// The user submits the Flow.
	waWebhook(t, c, "school", wadouble.NewNotification(waPhoneID).
		AddMessage("Anna", wadouble.FlowReply(to, wadouble.MessageID(), "flow_demo_00001",
			map[string]any{"fname": "Anna", "course": "Go 101"}, now)))
	require.Eventually(t, func() bool { return runStatus(t, d, "school", runs[0].ID).Status == store.RunCompleted }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(waTexts(wa, to)) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"Thanks Anna, you're signed up for Go 101."}, waTexts(wa, to))
	contact, err := d.Store.GetContactByExternalID(context.Background(), "school", events.ChannelWhatsApp, to)
	require.NoError(t, err)
	require.Equal(t, "Go 101", contact.Attributes["course"])
}

// A first message the provider refuses for good fails the run with the
// provider's reason, and an undeliverable number marks the contact
// unreachable; a failure Meta reports later by webhook fails the run too.
func TestWhatsAppDeliveryFailuresFailTheRun(t *testing.T) {
	wa := wadouble.New()
	defer wa.Close()
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := waBot(c, wa, "shop")
	c.must("PUT", "/v1/bots/shop/flows/promo", key, `{"steps":[
	  {"id":"t","type":"template","template":"promo","language":"en"},
	  {"id":"q","type":"ask","text":"Interested?","attribute":"answer"}]}`, 200)
	c.must("PUT", "/v1/bots/shop/events/PROMO", key, `{"flow":"promo"}`, 201)

	const gone = "+4915100000001"
	wa.FailRecipient(gone, 131026)
	c.must("POST", "/v1/bots/shop/dispatch/PROMO", key, `{"from":"`+gone+`"}`, 202)
	contactRun := func(ext string) store.Run {
		ct, err := d.Store.GetContactByExternalID(context.Background(), "shop", events.ChannelWhatsApp, ext)
		if err != nil {
			return store.Run{}
		}
		runs, _, err := d.Store.ListRuns(context.Background(), store.RunFilter{BotID: "shop", ContactID: ct.ID})
		if err != nil || len(runs) == 0 {
			return store.Run{}
		}
		return runs[0]
	}
	require.Eventually(t, func() bool { return contactRun(gone).Status == store.RunFailed }, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, contactRun(gone).Error, "131026")
	ct, err := d.Store.GetContactByExternalID(context.Background(), "shop", events.ChannelWhatsApp, gone)
	require.NoError(t, err)
	require.True(t, ct.Unreachable)
	require.Contains(t, ct.UnreachableReason, "131026")
	require.Eventually(t, func() bool {
		tr, err := d.Store.GetTrigger(context.Background(), "shop", contactRun(gone).TriggerID)
		// The bundle's two messages: the refused template and the question
		// that was then never sent.
		return err == nil && tr.Counters.Failed == 2 && tr.Counters.Sent == 0
	}, 10*time.Second, 20*time.Millisecond)

	// Accepted at send time, failed later (Meta's status webhook).
	// This contact wrote first, so the question after the template may go.
	const later = "+4915100000002"
	waWebhook(t, c, "shop", wadouble.NewNotification(waPhoneID).
		AddMessage("Lu", wadouble.TextMessage(later, wadouble.MessageID(), "hi", time.Now())))
	require.Eventually(t, func() bool {
		_, err := d.Store.GetContactByExternalID(context.Background(), "shop", events.ChannelWhatsApp, later)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	c.must("POST", "/v1/bots/shop/dispatch/PROMO", key, `{"from":"`+later+`"}`, 202)
	require.Eventually(t, func() bool { return contactRun(later).Status == store.RunWaiting }, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return len(waAccepted(wa, later)) == 2 }, 10*time.Second, 20*time.Millisecond)
	wamid := waAccepted(wa, later)[0].WAMID
	waWebhook(t, c, "shop", wadouble.NewNotification(waPhoneID).
		AddStatus(wadouble.FailedStatus(wamid, later, time.Now(), 131049, "Message not delivered", "ecosystem engagement")))
	require.Eventually(t, func() bool { return contactRun(later).Status == store.RunFailed }, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, contactRun(later).Error, "131049")
}

// The Telegram worker's getUpdates alternative: updates are read by long
// polling (the webhook is deleted first) and handled as the webhook does.
func TestTelegramWorkerPollsUpdates(t *testing.T) {
	tg := tgdouble.Start(t)
	const token = "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
	tg.AddBot(token)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, b := bustest.Bus(t, bus.Config{Source: "/test"})
	st := sqlitetest.Open(t)
	require.NoError(t, st.CreateBot(ctx, store.Bot{ID: "tgbot", Name: "tgbot", CreatedAt: time.Now().UTC(),
		Channels: store.ChannelAccounts{Telegram: &store.TelegramAccount{BotToken: token, WebhookSecret: "s", APIBase: tg.URL}}}))
	contact, _, err := st.UpsertContact(ctx, store.ContactUpsert{BotID: "tgbot", Channel: events.ChannelTelegram,
		ExternalID: "555", NewID: "c555", Now: time.Now().UTC()})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		done <- app.RunChannel(ctx, app.Config{TelegramPoll: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
			events.ChannelTelegram, st, b)
	}()

	user := tgdouble.User{ID: 555, FirstName: "Ivan"}
	tg.PushUpdate(token, tgdouble.TextUpdate(0, user, 1, "hello"))
	cb := tg.PushUpdate(token, tgdouble.CallbackUpdate(0, user, 2, "opt_a"))
	tg.PushUpdate(token, tgdouble.BlockedUpdate(0, user, 7012345678))
	inbound := func() []events.Inbound {
		s, err := b.JetStream().Stream(ctx, bus.StreamEvents)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		var out []events.Inbound
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			var in events.Inbound
			require.NoError(t, json.Unmarshal(m.Data, &in))
			out = append(out, in)
		}
		return out
	}
	require.Eventually(t, func() bool { return len(inbound()) == 2 }, 10*time.Second, 20*time.Millisecond)
	in := inbound()
	require.Equal(t, "hello", in[0].Text)
	require.Equal(t, "555", in[0].From)
	require.Equal(t, "opt_a", in[1].ButtonID)
	require.Eventually(t, func() bool {
		return len(tg.AnsweredCallbacks(token)) == 1 && tg.AnsweredCallbacks(token)[0] == cb.CallbackQuery.ID
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		c, err := st.GetContact(ctx, "tgbot", contact.ID)
		return err == nil && c.Unreachable
	}, 10*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

// A run waiting for the WhatsApp window is cancelled, not failed, when a
// newer trigger for the same contact supersedes it.
func TestAwaitingWindowRunIsSuperseded(t *testing.T) {
	wa := wadouble.New(wadouble.WithWindowEnforcement())
	defer wa.Close()
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := waBot(c, wa, "recruit")
	c.must("PUT", "/v1/bots/recruit/flows/f", key, `{"steps":[{"id":"q","type":"ask","text":"Still looking?","attribute":"a"}]}`, 200)
	post := func(path, body string, want int) map[string]any {
		return c.must("POST", path, key, body, want, "Content-Type", "application/vnd.api+json")["data"].(map[string]any)
	}
	thread := post("/public/v2/message-threads", `{"data":{"type":"messageThreads","attributes":{"channel":"whatsapp","identifier":"+31612345670"}}}`, 201)["id"].(string)
	run := func() string {
		return post("/public/v2/flow-runs", `{"data":{"type":"flowRuns","attributes":{"flowId":"f","messageThreadId":"`+thread+`",
		  "initialMessage":{"type":"template","template":{"id":"invite","language":"en"}}}}}`, 202)["id"].(string)
	}
	first := run()
	require.Eventually(t, func() bool { return runStatus(t, d, "recruit", first).Status == store.RunWaiting }, 10*time.Second, 20*time.Millisecond)
	second := run()
	require.Eventually(t, func() bool { return runStatus(t, d, "recruit", second).Status == store.RunWaiting }, 10*time.Second, 20*time.Millisecond)
	r := runStatus(t, d, "recruit", first)
	require.Equal(t, store.RunCancelled, r.Status, r.Error)
	require.Contains(t, r.Error, "superseded")
	require.Eventually(t, func() bool { return len(waAccepted(wa, "+31612345670")) == 2 }, 10*time.Second, 20*time.Millisecond)
	require.Zero(t, wa.Stats().Rejected[131047])
}
