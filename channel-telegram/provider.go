package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// Default rates, messages per second (providers.md): about 30 per bot for
// broadcasts, about 1 per chat.
const (
	DefaultRate     = 30
	DefaultChatRate = 1
)

// Provider is the Telegram channel, registered under events.ChannelTelegram.
var Provider = newProvider()

func init() { provider.MustRegister(Provider) }

func newProvider() provider.Provider {
	// api answers button presses of webhook updates. It holds no
	// credentials: each call uses the bot's account (token and API base).
	// With no options NewSender cannot fail.
	api, _ := NewSender()
	return provider.Provider{
		Name: events.ChannelTelegram,
		Rate: DefaultRate,
		// No idempotency key; one message per second per chat.
		Capabilities: provider.Capabilities{RecipientRate: DefaultChatRate},
		Account: func(bot store.Bot) (provider.Account, bool) {
			a := bot.Channels.Telegram
			if a == nil {
				return provider.Account{}, false
			}
			id, _ := BotID(a.BotToken) // a bad token fails the sends
			return provider.Account{Key: id, Rate: a.RatePerSecond}, true
		},
		CheckAccounts: checkAccount,
		AccountView: func(ch store.ChannelAccounts) map[string]any {
			a := ch.Telegram
			if a == nil {
				return nil
			}
			return map[string]any{"configured": true, "rate_per_second": a.RatePerSecond, "api_base": a.APIBase,
				"bot_token_set": a.BotToken != "", "webhook_secret_set": a.WebhookSecret != ""}
		},
		MergeAccount: func(ch *store.ChannelAccounts, raw json.RawMessage) (err error) {
			ch.Telegram, err = provider.MergeJSON(ch.Telegram, raw)
			return err
		},
		Webhook: func(_ context.Context, bot store.Bot, r provider.Request) (provider.Notification, error) {
			acct := bot.Channels.Telegram
			if acct == nil {
				return provider.Notification{}, provider.NoAccount()
			}
			if r.Method != http.MethodPost {
				return provider.Notification{}, provider.NotAllowed(r.Method)
			}
			if err := VerifySecret(r.Header.Get(SecretHeader), acct.WebhookSecret); err != nil {
				return provider.Notification{}, provider.BadSignature(err)
			}
			n, err := api.Notification(bot, r.Body)
			if err != nil {
				return provider.Notification{}, provider.Malformed(err)
			}
			return n, nil
		},
		NewSender: func(d provider.SenderDeps) (channel.Sender, error) {
			if d.Store == nil {
				return NewSender()
			}
			return NewSender(WithMedia(d.Store))
		},
		Background: background,
	}
}

// secretPattern is what Telegram's setWebhook accepts as secret_token: 1
// to 256 of A-Z a-z 0-9 _ -. Telegram refuses anything else, so a bot
// holding such a secret could never receive an update.
var secretPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

// tokenPattern is a bot token from @BotFather: "<bot id>:<secret>".
var tokenPattern = regexp.MustCompile(`^[0-9]{1,20}:[A-Za-z0-9_-]{1,200}$`)

// checkAccount refuses a bot token of the wrong shape, or a webhook
// secret Telegram refuses.
func checkAccount(ch store.ChannelAccounts) error {
	a := ch.Telegram
	if a == nil {
		return nil
	}
	const p = "channels.telegram."
	switch {
	case strings.TrimSpace(a.BotToken) == "":
		return provider.Missing(p + "bot_token")
	case !tokenPattern.MatchString(a.BotToken):
		return provider.Invalid(p+"bot_token", p+"bot_token must be a token from @BotFather (<bot id>:<secret>)")
	case a.WebhookSecret != "" && !secretPattern.MatchString(a.WebhookSecret):
		return provider.Invalid(p+"webhook_secret", p+"webhook_secret must be 1 to 256 characters of A-Z, a-z, 0-9, _ and - (what Telegram accepts)")
	}
	return provider.CheckAPIBase(a.APIBase, p+"api_base")
}

// Notification turns one update of bot (from the webhook or getUpdates)
// into channel-neutral events: messages and button presses are Inbound
// events (a press is answered once they are queued), blocks and unblocks
// change the contact's reachability.
func (s *Sender) Notification(bot store.Bot, raw []byte) (provider.Notification, error) {
	u, err := ParseUpdate(bot.ID, raw)
	if err != nil {
		return provider.Notification{}, err
	}
	var n provider.Notification
	switch u.Kind {
	case UpdateMessage, UpdateCallback:
		n.Inbound = []events.Inbound{*u.Inbound}
		if u.Kind == UpdateCallback && bot.Channels.Telegram != nil {
			acct, id := *bot.Channels.Telegram, u.CallbackQueryID
			n.After = func(ctx context.Context) error { return s.AnswerCallbackQuery(ctx, acct, id) }
		}
	case UpdateBlocked:
		n.Reachability = []provider.Reachability{{ExternalID: u.ChatID, Reachable: false, Reason: "blocked the bot"}}
	case UpdateUnblocked:
		n.Reachability = []provider.Reachability{{ExternalID: u.ChatID, Reachable: true}}
	}
	return n, nil
}

// background sets every bot's webhook (w.WebhookBase) or polls for every
// bot's updates (w.Poll) while the worker runs.
func background(ctx context.Context, w provider.Background) error {
	s, ok := w.Sender.(*Sender)
	if !ok {
		return errors.New("telegram: the worker's sender is not Telegram's")
	}
	if w.WebhookBase != "" {
		if err := s.setWebhooks(ctx, w, w.WebhookBase); err != nil {
			return err
		}
	}
	if w.Poll {
		return s.poll(ctx, w)
	}
	return nil
}

// setWebhooks calls setWebhook for every bot with a Telegram account:
// base/webhooks/telegram/{bot}, with the bot's webhook secret.
func (s *Sender) setWebhooks(ctx context.Context, w provider.Background, base string) error {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("telegram webhook base %q is not an absolute URL", base)
	}
	bots, err := w.Store.ListBots(ctx)
	if err != nil {
		return err
	}
	n := 0
	for _, b := range bots {
		acct := b.Channels.Telegram
		if acct == nil || acct.BotToken == "" {
			continue
		}
		if acct.WebhookSecret == "" {
			w.Logger.Warn("telegram bot has no webhook_secret: webhook not set", "bot", b.ID)
			continue
		}
		hook := strings.TrimRight(base, "/") + "/webhooks/" + events.ChannelTelegram + "/" + url.PathEscape(b.ID)
		if err := s.SetWebhook(ctx, *acct, hook, acct.WebhookSecret); err != nil {
			return fmt.Errorf("telegram setWebhook for bot %s: %w", b.ID, err)
		}
		w.Logger.Info("telegram webhook set", "bot", b.ID, "url", hook)
		n++
	}
	w.Logger.Info("telegram webhooks set", "bots", n)
	return nil
}

// poll reads the updates of every bot with a Telegram account by
// getUpdates long polling, for bots that cannot expose a webhook URL, and
// publishes them as the ingress's webhook does (the same events, the same
// Nats-Msg-Ids). Bots created later need a restart of the worker.
func (s *Sender) poll(ctx context.Context, w provider.Background) error {
	bots, err := w.Store.ListBots(ctx)
	if err != nil {
		return err
	}
	errc := make(chan error, len(bots))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	for _, bot := range bots {
		acct := bot.Channels.Telegram
		if acct == nil || acct.BotToken == "" {
			continue
		}
		// Telegram refuses getUpdates while a webhook is set.
		if err := s.DeleteWebhook(ctx, *acct); err != nil {
			return fmt.Errorf("telegram deleteWebhook for bot %s: %w", bot.ID, err)
		}
		p, err := s.NewPoller(*acct, PollerConfig{})
		if err != nil {
			return fmt.Errorf("telegram poller for bot %s: %w", bot.ID, err)
		}
		n++
		go func() {
			errc <- p.Run(ctx, func(batch []Update) error {
				for _, u := range batch {
					note, err := s.Notification(bot, u.Raw)
					if err != nil {
						w.Logger.Warn("telegram: unreadable update skipped", "bot", bot.ID, "err", err)
						continue
					}
					if err := provider.Publish(ctx, w.Bus, w.Store, bot.ID, events.ChannelTelegram, note); err != nil {
						return err
					}
					if note.After != nil {
						if err := note.After(ctx); err != nil {
							w.Logger.Warn("telegram answerCallbackQuery failed", "bot", bot.ID, "err", err)
						}
					}
				}
				return nil
			})
		}()
		w.Logger.Info("telegram: polling for updates", "bot", bot.ID)
	}
	var first error
	for range n {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
