package whatsapp

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// DefaultRate is a business number's default throughput, messages per
// second (providers.md; Meta raises it up to 1,000/s).
const DefaultRate = 80

// Provider is the WhatsApp channel, registered under events.ChannelWhatsApp.
var Provider = provider.Provider{
	Name: events.ChannelWhatsApp,
	Rate: DefaultRate,
	// No idempotency key: a resend is a second message.
	Capabilities: provider.Capabilities{ReplyWindow: Window},
	Account: func(bot store.Bot) (provider.Account, bool) {
		a := bot.Channels.WhatsApp
		if a == nil {
			return provider.Account{}, false
		}
		return provider.Account{Key: a.PhoneNumberID, Rate: a.RatePerSecond}, true
	},
	CheckAccounts: checkAccount,
	AccountView: func(ch store.ChannelAccounts) map[string]any {
		a := ch.WhatsApp
		if a == nil {
			return nil
		}
		return map[string]any{"configured": true, "phone_number_id": a.PhoneNumberID,
			"rate_per_second": a.RatePerSecond, "template_language": a.TemplateLanguage, "api_base": a.APIBase,
			"access_token_set": a.AccessToken != "", "app_secret_set": a.AppSecret != "", "verify_token_set": a.VerifyToken != ""}
	},
	MergeAccount: func(ch *store.ChannelAccounts, raw json.RawMessage) (err error) {
		ch.WhatsApp, err = provider.MergeJSON(ch.WhatsApp, raw)
		return err
	},
	Webhook:        webhook,
	WebhookMethods: []string{http.MethodGet, http.MethodPost},
	NewSender: func(d provider.SenderDeps) (channel.Sender, error) {
		if d.Store == nil {
			return NewSender()
		}
		return NewSender(WithMedia(d.Store))
	},
}

func init() { provider.MustRegister(Provider) }

// checkAccount refuses a number without its access token (nothing can be
// sent) or app secret (no webhook can be verified), or with a phone number
// where its Cloud API id belongs.
func checkAccount(ch store.ChannelAccounts) error {
	a := ch.WhatsApp
	if a == nil {
		return nil
	}
	const p = "channels.whatsapp."
	switch {
	case strings.TrimSpace(a.PhoneNumberID) == "":
		return provider.Missing(p + "phone_number_id")
	case !digitsOnly(a.PhoneNumberID):
		return provider.Invalid(p+"phone_number_id", p+"phone_number_id is the number's id in the Cloud API (digits), not the phone number")
	case strings.TrimSpace(a.AccessToken) == "":
		return provider.Missing(p + "access_token")
	case strings.TrimSpace(a.AppSecret) == "":
		return provider.Missing(p + "app_secret")
	}
	return provider.CheckAPIBase(a.APIBase, p+"api_base")
}

func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// webhook answers Meta's subscription check (GET) with the challenge when
// the verify token is the bot's, and turns its signed notifications (POST)
// into Inbound and Delivery events.
func webhook(_ context.Context, bot store.Bot, r provider.Request) (provider.Notification, error) {
	acct := bot.Channels.WhatsApp
	if acct == nil {
		return provider.Notification{}, provider.NoAccount()
	}
	switch r.Method {
	case http.MethodGet:
		challenge, ok := VerifyChallenge(r.Query, acct.VerifyToken)
		if !ok {
			return provider.Notification{}, provider.Forbidden("verify token mismatch")
		}
		return provider.Notification{Reply: &provider.Reply{ContentType: "text/plain; charset=utf-8", Body: []byte(challenge)}}, nil
	case http.MethodPost:
	default:
		return provider.Notification{}, provider.NotAllowed(r.Method)
	}
	if err := VerifySignature(r.Body, r.Header.Get(SignatureHeader), acct.AppSecret); err != nil {
		return provider.Notification{}, provider.BadSignature(err)
	}
	p, err := ParseWebhook(bot.ID, r.Body)
	if err != nil {
		return provider.Notification{}, provider.Malformed(err)
	}
	for _, id := range p.PhoneNumberIDs {
		if id != acct.PhoneNumberID {
			// One Meta app can serve several numbers; events of a number
			// that is not this bot's cannot be routed. Answered 200 so
			// that Meta does not retry them for days.
			return provider.Notification{Ignored: "phone_number_id " + id + " is not the bot's"}, nil
		}
	}
	return provider.Notification{Inbound: p.Inbound, Deliveries: p.Deliveries}, nil
}
