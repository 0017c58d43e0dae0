package whatsapp_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/events"
	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
)

// A contact who never wrote may get a template but no free-form message
// until it writes; the double plays the Cloud API.
func ExampleSender_Send() {
	api := whatsappdouble.New(whatsappdouble.WithWindowEnforcement())
	defer api.Close()

	sender, err := whatsapp.NewSender(whatsapp.WithAPIBase(api.APIBase()))
	if err != nil {
		panic(err)
	}
	bot := store.Bot{ID: "acme", Channels: store.ChannelAccounts{WhatsApp: &store.WhatsAppAccount{
		PhoneNumberID: "106540352242922", AccessToken: whatsappdouble.DefaultToken,
	}}}
	out := events.Outbound{
		BotID: "acme", RunID: "run-1", To: "31612345678",
		Messages: []events.OutboundMessage{
			// The trigger's initial template opens the window (the
			// orchestrator sends it first to a contact outside it).
			{ID: "run-1:0", Seq: 0, Content: events.Content{Type: events.ContentTemplate, Template: &events.Template{
				Name: "welcome", Language: "en", BodyParams: []string{"John"},
			}}},
			{ID: "run-1:1", Seq: 1, Content: events.Content{Type: events.ContentText, Text: "Ready?"}},
		},
	}
	for _, m := range out.Messages {
		res, err := sender.Send(context.Background(), bot, out, m)
		fmt.Println(m.ID, strings.HasPrefix(res.ProviderMessageID, "wamid."), err)
	}

	// The user answers: the window is open for 24 hours.
	last := time.Now()
	api.UserWrote(out.To, last)
	out.LastInboundAt = &last
	res, err := sender.Send(context.Background(), bot, out, out.Messages[1])
	fmt.Println("run-1:1", strings.HasPrefix(res.ProviderMessageID, "wamid."), err)
	for _, a := range api.Accepted() {
		fmt.Println(a.Type)
	}
	// Output:
	// run-1:0 true <nil>
	// run-1:1 false permanent failure outside_window: the contact has never written: free-form messages need an open 24-hour window
	// run-1:1 true <nil>
	// template
	// text
}
