package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	telegram "github.com/flowgate/flowgate/channel-telegram"
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
