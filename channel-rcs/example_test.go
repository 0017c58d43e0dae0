package rcs_test

import (
	"context"
	"fmt"

	rcs "github.com/flowgate/flowgate/channel-rcs"
	"github.com/flowgate/flowgate/shared/events"
	rcsdouble "github.com/flowgate/flowgate/shared/providerdouble/rcs"
	"github.com/flowgate/flowgate/shared/store"
)

// A Sender sends a rich card; the service-account key's token_uri points at
// the double's token endpoint, so no Google endpoint is involved.
func ExampleSender_Send() {
	api := rcsdouble.New()
	defer api.Close()
	key, err := api.NewServiceAccountKey("my-agent")
	if err != nil {
		panic(err)
	}
	sender, err := rcs.NewSender()
	if err != nil {
		panic(err)
	}
	bot := store.Bot{ID: "acme", Channels: store.ChannelAccounts{RCS: &store.RCSAccount{
		AgentID: "my-agent", ServiceAccountJSON: string(key), APIBase: api.URL,
	}}}
	res, err := sender.Send(context.Background(), bot,
		events.Outbound{BotID: "acme", To: "+14155550100"},
		events.OutboundMessage{ID: "run1:1", Content: events.Content{
			Type: events.ContentImage, MediaURL: "https://cdn.example.com/shoe.jpg", Caption: "New in",
		}})
	fmt.Println(res.ProviderMessageID == rcs.MessageID("run1:1"), err, len(api.Accepted()))
	// Output: true <nil> 1
}
