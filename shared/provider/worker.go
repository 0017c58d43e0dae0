package provider

import (
	"context"
	"log/slog"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/channel/pacer"
	"github.com/flowgate/flowgate/shared/media"
	"github.com/flowgate/flowgate/shared/store"
)

// WorkerConfig configures a channel worker; main fills it from flags and
// the environment.
type WorkerConfig struct {
	Runner channel.RunnerConfig
	// Replicas is the replica count of the pacer's KV bucket.
	Replicas int
	// WebhookBase, when set, asks the provider to point every bot's
	// webhook at WebhookBase/webhooks/{channel}/{bot} at start (Telegram's
	// setWebhook); providers without such a call ignore it.
	WebhookBase string
	// Poll asks the provider to read updates by polling instead of a
	// webhook (Telegram's getUpdates); providers without polling ignore it.
	Poll bool
}

// WorkerDeps are a channel worker's collaborators.
type WorkerDeps struct {
	Store store.Store
	Bus   *bus.Bus
	// Links returns the signer of public links to uploaded files (nil:
	// none); see SenderDeps.
	Links  func() (*media.Signer, error)
	Logger *slog.Logger
}

// Background is what a provider's background task gets.
type Background struct {
	Store       store.Store
	Bus         Bus
	Sender      channel.Sender
	Logger      *slog.Logger
	WebhookBase string
	Poll        bool
}

// PacerConfig is the pacer configuration the provider declares: its
// default rate, per-recipient rate and the bot's own account rate.
func (p Provider) PacerConfig() pacer.Config {
	per := p.Capabilities.RecipientRate
	if per == 0 {
		per = -1 // none
	}
	return pacer.Config{Channel: p.Name, Rate: p.Rate, PerRecipient: per, AccountRate: func(bot store.Bot) float64 {
		if a, ok := p.Account(bot); ok {
			return a.Rate
		}
		return 0
	}}
}

// Run runs the provider's channel worker until ctx ends: the shared
// runner with the provider's sender (paced unless the provider's Rate is
// 0) and, beside it, the provider's background task.
func (p Provider) Run(ctx context.Context, cfg WorkerConfig, d WorkerDeps) error {
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	s, err := p.NewSender(SenderDeps{Store: d.Store, Links: d.Links})
	if err != nil {
		return err
	}
	var pc channel.Pacer
	if p.Rate > 0 {
		c := p.PacerConfig()
		c.Replicas, c.Logger = cfg.Replicas, log
		pp, err := pacer.New(ctx, d.Bus.JetStream(), c)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting
			}
			return err
		}
		pc = pp
	}
	r, err := channel.NewRunner(cfg.Runner, channel.RunnerDeps{Sender: s, Capabilities: p.Capabilities.Runner(),
		Bus: d.Bus, Store: d.Store, Pacer: pc, Logger: log})
	if err != nil {
		return err
	}
	if p.Background == nil {
		return r.Run(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- r.Run(ctx) }()
	go func() {
		errc <- p.Background(ctx, Background{Store: d.Store, Bus: d.Bus, Sender: s, Logger: log, WebhookBase: cfg.WebhookBase, Poll: cfg.Poll})
	}()
	// The first error stops both; a task that ends without one leaves the
	// other running.
	var first error
	for range 2 {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
