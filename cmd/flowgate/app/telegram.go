package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	telegram "github.com/flowgate/flowgate/channel-telegram"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// setTelegramWebhooks calls setWebhook for every bot with a Telegram
// account: base/webhooks/telegram/{bot}, with the bot's webhook secret.
func setTelegramWebhooks(ctx context.Context, s *telegram.Sender, st store.Store, base string, log *slog.Logger) error {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("telegram webhook base %q is not an absolute URL", base)
	}
	bots, err := st.ListBots(ctx)
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
			log.Warn("telegram bot has no webhook_secret: webhook not set", "bot", b.ID)
			continue
		}
		hook := strings.TrimRight(base, "/") + "/webhooks/telegram/" + url.PathEscape(b.ID)
		if err := s.SetWebhook(ctx, *acct, hook, acct.WebhookSecret); err != nil {
			return fmt.Errorf("telegram setWebhook for bot %s: %w", b.ID, err)
		}
		log.Info("telegram webhook set", "bot", b.ID, "url", hook)
		n++
	}
	log.Info("telegram webhooks set", "bots", n)
	return nil
}

// pollTelegram reads the updates of every bot with a Telegram account by
// getUpdates long polling, for bots that cannot expose a webhook URL, and
// handles them as the ingress's webhook does. Bots created later need a
// restart of the worker.
func pollTelegram(ctx context.Context, s *telegram.Sender, st store.Store, b *bus.Bus, log *slog.Logger) error {
	bots, err := st.ListBots(ctx)
	if err != nil {
		return err
	}
	var polls []func(context.Context) error
	for _, bot := range bots {
		acct := bot.Channels.Telegram
		if acct == nil || acct.BotToken == "" {
			continue
		}
		// Telegram refuses getUpdates while a webhook is set.
		if err := s.DeleteWebhook(ctx, *acct); err != nil {
			return fmt.Errorf("telegram deleteWebhook for bot %s: %w", bot.ID, err)
		}
		p, err := s.NewPoller(*acct, telegram.PollerConfig{})
		if err != nil {
			return fmt.Errorf("telegram poller for bot %s: %w", bot.ID, err)
		}
		polls = append(polls, func(ctx context.Context) error {
			return p.Run(ctx, func(batch []telegram.Update) error {
				for _, u := range batch {
					if err := handleTelegramUpdate(ctx, s, st, b, bot, u.Raw, log); err != nil {
						return err
					}
				}
				return nil
			})
		})
		log.Info("telegram: polling for updates", "bot", bot.ID)
	}
	if len(polls) == 0 {
		<-ctx.Done()
		return nil
	}
	return waitAll(ctx, polls...)
}

// handleTelegramUpdate is the ingress webhook's handling of one update:
// messages and button presses become Inbound events (with the same
// Nats-Msg-Id as through the webhook), presses are answered, blocks mark
// the contact unreachable.
func handleTelegramUpdate(ctx context.Context, s *telegram.Sender, st store.Store, b *bus.Bus, bot store.Bot, raw []byte, log *slog.Logger) error {
	u, err := telegram.ParseUpdate(bot.ID, raw)
	if err != nil {
		log.Warn("telegram: unreadable update skipped", "bot", bot.ID, "err", err)
		return nil
	}
	switch u.Kind {
	case telegram.UpdateMessage, telegram.UpdateCallback:
		in := *u.Inbound
		ev, err := bus.NewEvent(fmt.Sprintf("in:%s:%s:%s", in.BotID, in.Channel, in.ProviderMessageID),
			events.TypeInbound, in.Channel+":"+in.From, in)
		if err != nil {
			return err
		}
		if _, err := b.Publish(ctx, events.InboundSubject(in.Channel, in.BotID), ev); err != nil {
			return err
		}
		if u.Kind == telegram.UpdateCallback {
			if err := s.AnswerCallbackQuery(ctx, *bot.Channels.Telegram, u.CallbackQueryID); err != nil {
				log.Warn("telegram answerCallbackQuery failed", "bot", bot.ID, "err", err)
			}
		}
	case telegram.UpdateBlocked, telegram.UpdateUnblocked:
		c, err := st.GetContactByExternalID(ctx, bot.ID, events.ChannelTelegram, u.ChatID)
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return nil
		}
		if err != nil {
			return err
		}
		blocked := u.Kind == telegram.UpdateBlocked
		reason := ""
		if blocked {
			reason = "blocked the bot"
		}
		return st.SetContactReachability(ctx, bot.ID, c.ID, blocked, reason)
	}
	return nil
}
