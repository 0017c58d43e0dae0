package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/store"
)

// Update is one raw update from getUpdates; pass Raw to ParseUpdate, exactly
// as a webhook body would be.
type Update struct {
	ID  int64
	Raw json.RawMessage
}

// PollerConfig configures a Poller. Zero fields take defaults.
type PollerConfig struct {
	// Timeout is the long-poll wait per getUpdates call (default 30s;
	// Telegram allows up to 50s).
	Timeout time.Duration
	// Limit is the largest batch (default 100, Telegram's maximum).
	Limit int
	// AllowedUpdates defaults to WebhookUpdates.
	AllowedUpdates []string
	// Offset is the first update id to fetch (0: whatever Telegram holds).
	// Persist Offset() across restarts to avoid re-reading confirmed updates.
	Offset int64
	// RetryDelay is the first wait after a failure; it doubles up to MaxRetryDelay.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
}

func (c *PollerConfig) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Limit == 0 {
		c.Limit = 100
	}
	if c.AllowedUpdates == nil {
		c.AllowedUpdates = WebhookUpdates
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = time.Second
	}
	if c.MaxRetryDelay == 0 {
		c.MaxRetryDelay = 30 * time.Second
	}
}

// Validate reports a configuration Telegram would refuse.
func (c *PollerConfig) Validate() error {
	if c.Timeout < 0 || c.Timeout > 50*time.Second {
		return errors.New("telegram: poll timeout must be within 0-50s")
	}
	if c.Limit < 1 || c.Limit > 100 {
		return errors.New("telegram: poll limit must be within 1-100")
	}
	if c.RetryDelay < 0 || c.MaxRetryDelay < c.RetryDelay {
		return errors.New("telegram: bad retry delays")
	}
	return nil
}

// Poller reads a bot's updates with getUpdates long polling, for bots that
// cannot expose a webhook URL. Telegram refuses getUpdates while a webhook
// is set (409): call DeleteWebhook first.
type Poller struct {
	sender *Sender
	acct   store.TelegramAccount
	cfg    PollerConfig
	offset atomic.Int64
}

// NewPoller returns a Poller for acct.
func (s *Sender) NewPoller(acct store.TelegramAccount, cfg PollerConfig) (*Poller, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if _, err := BotID(acct.BotToken); err != nil {
		return nil, err
	}
	p := &Poller{sender: s, acct: acct, cfg: cfg}
	p.offset.Store(cfg.Offset)
	return p, nil
}

// Offset is the next update id the poller asks for: every update below it
// was handled.
func (p *Poller) Offset() int64 { return p.offset.Load() }

// Run polls until ctx ends, handing each non-empty batch to handle in
// order. The offset advances only after handle returns nil, so a failed
// batch is fetched again (at-least-once: deduplicate on Update.ID). Run
// returns nil when ctx ends, or the error that makes polling pointless (bad
// token, webhook set).
func (p *Poller) Run(ctx context.Context, handle func([]Update) error) error {
	delay := p.cfg.RetryDelay
	backoff := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		batch, err := p.fetch(ctx, p.cfg.Timeout, p.cfg.Limit)
		if err == nil && len(batch) > 0 {
			if herr := handle(batch); herr != nil {
				err = fmt.Errorf("telegram poller: handler: %w", herr)
			} else {
				p.offset.Store(batch[len(batch)-1].ID + 1)
			}
		}
		if err == nil {
			delay = p.cfg.RetryDelay
			continue
		}
		if ctx.Err() != nil {
			break
		}
		var ra *channel.RetryAfterError
		switch {
		case errors.As(err, &ra):
			if !backoff(ra.Wait) {
				return p.confirm()
			}
		case channel.IsPermanent(err):
			return err
		default:
			p.sender.opts.logger.Warn("telegram poller: retrying", "error", err, "in", delay)
			if !backoff(delay) {
				return p.confirm()
			}
			delay = min(2*delay, p.cfg.MaxRetryDelay)
		}
	}
	return p.confirm()
}

// confirm tells Telegram which updates were handled (getUpdates with the
// current offset and no wait) so that they are not served again after a
// restart. Best effort: a failure only means duplicates, which are deduped.
func (p *Poller) confirm() error {
	if p.offset.Load() == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = p.fetch(ctx, 0, 1)
	return nil
}

func (p *Poller) fetch(ctx context.Context, wait time.Duration, limit int) ([]Update, error) {
	req := map[string]any{
		"timeout":         int(wait / time.Second),
		"limit":           limit,
		"allowed_updates": p.cfg.AllowedUpdates,
	}
	if off := p.offset.Load(); off != 0 {
		req["offset"] = off
	}
	ctx, cancel := context.WithTimeout(ctx, wait+p.sender.opts.requestTimeout)
	defer cancel()
	var raws []json.RawMessage
	if err := p.sender.call(ctx, p.acct, "getUpdates", req, &raws); err != nil {
		return nil, err
	}
	out := make([]Update, 0, len(raws))
	for _, r := range raws {
		var head struct {
			UpdateID int64 `json:"update_id"`
		}
		if err := json.Unmarshal(r, &head); err != nil {
			return nil, fmt.Errorf("telegram getUpdates: undecodable update: %w", err)
		}
		out = append(out, Update{ID: head.UpdateID, Raw: r})
	}
	return out, nil
}
