// Package telegram owns Flowgate's Telegram Bot API channel: a
// channel.Sender that turns channel-neutral messages into sendMessage,
// sendPhoto, sendDocument and sendVideo calls and classifies the Bot API's
// answers as retryable or permanent; the webhook helpers (secret-token
// check, update parsing into one channel-neutral Notification, used by the
// webhook and the poller alike); a getUpdates long-polling Poller for bots
// that cannot expose a public URL; and Provider, the channel's one value in
// shared/provider's registry.
//
// The bot token is a secret. The pacing account key is the bot id, the
// digits before ':' in the token, and errors never carry the token (the
// request URL is redacted).
package telegram
