// Package telegram owns Flowgate's Telegram Bot API channel: a
// channel.Sender that turns channel-neutral messages into sendMessage,
// sendPhoto, sendDocument and sendVideo calls and classifies the Bot API's
// answers as retryable or permanent; the webhook helpers the ingress uses
// (secret-token check, update parsing); and a getUpdates long-polling Poller
// for bots that cannot expose a public URL.
//
// The bot token is a secret. The pacing account key is the bot id, the
// digits before ':' in the token, and errors never carry the token (the
// request URL is redacted).
package telegram
