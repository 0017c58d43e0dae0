package telegram_test

import (
	"context"
	"fmt"

	telegram "github.com/flowgate/flowgate/channel-telegram"
	"github.com/flowgate/flowgate/shared/events"
	telegramdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
	"github.com/flowgate/flowgate/shared/store"
)

// A Sender sends one message with an inline keyboard; here against the
// double instead of api.telegram.org.
func ExampleSender_Send() {
	api := telegramdouble.New()
	defer api.Close()
	api.AddBot("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")

	sender, err := telegram.NewSender()
	if err != nil {
		panic(err)
	}
	bot := store.Bot{ID: "acme", Channels: store.ChannelAccounts{Telegram: &store.TelegramAccount{
		BotToken: "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", APIBase: api.URL,
	}}}
	account, _ := sender.Account(bot)
	res, err := sender.Send(context.Background(), bot,
		events.Outbound{BotID: "acme", To: "7000000001"},
		events.OutboundMessage{ID: "run1:1", Content: events.Content{
			Type: events.ContentButtons, Text: "Did it arrive?",
			Buttons: []events.Button{{ID: "yes", Title: "Yes"}, {ID: "no", Title: "No"}},
		}})
	fmt.Println(account, res.ProviderMessageID, err)
	// Output: 123456789 7000000001:1 <nil>
}
