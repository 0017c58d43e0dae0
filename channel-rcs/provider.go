package rcs

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// DefaultRate is an agent's default pace, messages per second: Google
// publishes no per-agent figure; aggregators default to about 80
// (providers.md, UNCONFIRMED: set the bot's rate_per_second).
const DefaultRate = 80

// Provider is the RCS (Google RBM) channel, registered under
// events.ChannelRCS.
var Provider = provider.Provider{
	Name: events.ChannelRCS,
	Rate: DefaultRate,
	// RBM ignores a messageId it has seen: a resend is harmless.
	Capabilities: provider.Capabilities{IdempotentSends: true},
	Account: func(bot store.Bot) (provider.Account, bool) {
		a := bot.Channels.RCS
		if a == nil {
			return provider.Account{}, false
		}
		return provider.Account{Key: a.AgentID, Rate: a.RatePerSecond}, true
	},
	CheckAccounts: func(ch store.ChannelAccounts) error {
		a := ch.RCS
		if a == nil {
			return nil
		}
		if strings.TrimSpace(a.AgentID) == "" {
			return provider.Missing("channels.rcs.agent_id")
		}
		return provider.CheckAPIBase(a.APIBase, "channels.rcs.api_base")
	},
	AccountView: func(ch store.ChannelAccounts) map[string]any {
		a := ch.RCS
		if a == nil {
			return nil
		}
		return map[string]any{"configured": true, "agent_id": a.AgentID, "rate_per_second": a.RatePerSecond,
			"api_base": a.APIBase, "service_account_json_set": a.ServiceAccountJSON != "", "client_token_set": a.ClientToken != ""}
	},
	MergeAccount: func(ch *store.ChannelAccounts, raw json.RawMessage) (err error) {
		ch.RCS, err = provider.MergeJSON(ch.RCS, raw)
		return err
	},
	Webhook: webhook,
	NewSender: func(d provider.SenderDeps) (channel.Sender, error) {
		if d.Links == nil {
			return NewSender()
		}
		links, err := d.Links()
		if err != nil {
			return nil, err
		}
		if links == nil {
			return NewSender() // uploaded files are refused
		}
		return NewSender(WithMediaLinks(links))
	},
}

func init() { provider.MustRegister(Provider) }

// webhook takes RBM's setup handshake and its signed Pub/Sub envelopes.
func webhook(_ context.Context, bot store.Bot, r provider.Request) (provider.Notification, error) {
	acct := bot.Channels.RCS
	if acct == nil {
		return provider.Notification{}, provider.NoAccount()
	}
	if r.Method != http.MethodPost {
		return provider.Notification{}, provider.NotAllowed(r.Method)
	}
	if secret, ok := HandshakeResponse(r.Body); ok {
		tok := HandshakeClientToken(r.Body)
		if acct.ClientToken == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(acct.ClientToken)) != 1 {
			return provider.Notification{}, provider.Forbidden("client token mismatch")
		}
		return provider.Notification{Reply: &provider.Reply{ContentType: "text/plain; charset=utf-8", Body: []byte(secret)}}, nil
	}
	sig := r.Header.Get(SignatureHeader)
	if sig == "" {
		return provider.Notification{}, provider.BadSignature(nil)
	}
	decoded, ev, err := ParseEnvelope(bot.ID, r.Body)
	if err != nil {
		return provider.Notification{}, provider.Malformed(err)
	}
	if err := VerifySignature(decoded, sig, acct.ClientToken); err != nil {
		return provider.Notification{}, provider.BadSignature(err)
	}
	if ev.AgentID != "" && ev.AgentID != acct.AgentID {
		return provider.Notification{Ignored: "agent " + ev.AgentID + " is not the bot's"}, nil
	}
	switch ev.Kind {
	case EventMessage:
		return provider.Notification{Inbound: []events.Inbound{*ev.Inbound}}, nil
	case EventDelivery:
		return provider.Notification{Deliveries: []events.Delivery{*ev.Delivery}}, nil
	}
	return provider.Notification{}, nil
}
