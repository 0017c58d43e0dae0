// Package channel owns what every channel worker shares: the Sender contract
// a provider package implements, the error types that decide how a failed
// send is retried, and the runner that consumes outbound messages.
package channel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// Sender delivers messages to one provider. Implementations are safe for
// concurrent use and do no pacing or retrying of their own: the runner does.
type Sender interface {
	// Channel is the channel name (events.ChannelWhatsApp, ...).
	Channel() string
	// Account is the pacing key of the bot's sender account on this channel
	// (WhatsApp phone-number id, Telegram bot id, RCS agent id). It fails
	// with a *PermanentError when the bot has no account on this channel.
	Account(bot store.Bot) (string, error)
	// Send delivers one message of out. The error decides the retry:
	// *PermanentError never retries, *RetryAfterError retries after Wait,
	// anything else retries with exponential backoff.
	Send(ctx context.Context, bot store.Bot, out events.Outbound, msg events.OutboundMessage) (Result, error)
}

// BundleSender is the extension of a sender whose provider declares
// Capabilities.Bundles (and IdempotentSends): it takes a bundle's messages
// in one call (the sandbox: one write). The runner uses it when the channel
// has no pacer; results are in the order of msgs. An error means none was
// accepted, or (the sender being idempotent) that sending them again is
// harmless.
type BundleSender interface {
	SendBundle(ctx context.Context, bot store.Bot, out events.Outbound, msgs []events.OutboundMessage) ([]Result, error)
}

// Result is a provider's acceptance of a message.
type Result struct {
	ProviderMessageID string
}

// PermanentError is a failure that no retry can fix.
type PermanentError struct {
	// Code is the provider's error code ("131026", "404", "403"...) or a
	// Flowgate reason such as "outside_window" or "no_account".
	Code string
	// Reason is a short human-readable explanation.
	Reason string
	// Unreachable marks the contact as unreachable (blocked the bot, not on
	// the platform): broadcasts skip it afterwards.
	Unreachable bool
	Err         error
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("permanent failure %s: %s", e.Code, e.Reason)
}

func (e *PermanentError) Unwrap() error { return e.Err }

// RetryAfterError asks for a retry after Wait.
type RetryAfterError struct {
	Wait time.Duration
	Code string
	// Throttled means the provider said the account sends too fast: the
	// pacer slows down for the whole account.
	Throttled bool
	Err       error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s (code %s): %v", e.Wait, e.Code, e.Err)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is (or wraps) a *PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
