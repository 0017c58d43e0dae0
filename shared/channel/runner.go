package channel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// Bus is what the runner needs of the message bus.
type Bus interface {
	Publish(ctx context.Context, subject string, e cloudevents.Event) (bus.PublishResult, error)
	Consume(ctx context.Context, spec bus.ConsumerSpec, h bus.Handler, o bus.ConsumeOptions) error
	// SubjectCounts lists the outbound lanes that hold messages.
	SubjectCounts(ctx context.Context, stream, filter string) (map[string]uint64, error)
	DeleteConsumer(ctx context.Context, stream, durable string) error
	// DeadLetterPart dead-letters one bundle of a batch message.
	DeadLetterPart(ctx context.Context, from bus.Message, e cloudevents.Event, reason error) error
}

// Store is what the runner needs of the store: the bot's credentials and
// the message records that make sends idempotent.
type Store interface {
	GetBot(ctx context.Context, id string) (store.Bot, error)
	GetMessage(ctx context.Context, botID, id string) (store.Message, error)
	ListRunMessages(ctx context.Context, botID, runID string) ([]store.Message, error)
	// MarkSent records accepted messages and counts them on their trigger,
	// once per message however often it is recorded.
	MarkSent(ctx context.Context, botID, triggerID string, ms []store.SentMessage) error
}

// Pacer spaces sends per sender account. Wait blocks until one send may
// go; Throttled tells it the provider said "too fast".
type Pacer interface {
	Wait(ctx context.Context, account string) error
	Throttled(account string, retryAfter time.Duration)
}

// progressEvery is how often a long bundle tells JetStream it is still
// being worked on; a per-message InProgress would be one more NATS message
// per send.
const progressEvery = 5 * time.Second

// MessagePacer is an optional extension of Pacer. When the runner's pacer
// implements it, the runner calls WaitMessage instead of Wait, so that the
// pacer can apply the bot's own rate for the account and pace per
// recipient as well (Telegram: one message per second per chat).
type MessagePacer interface {
	WaitMessage(ctx context.Context, bot store.Bot, account string, out events.Outbound) error
}

// RunnerConfig configures a channel runner.
type RunnerConfig struct {
	// Workers bounds the workers of one lane (one bot's high or bulk
	// lane) in this process, and an account's sends under way (default
	// 64). Messages of one contact in one lane are always sent one at a
	// time, in order.
	Workers int
	// BotCacheTTL bounds how long bot credentials are cached (default 10 s).
	BotCacheTTL time.Duration
	// Prefetch is the most bundles of one lane fetched ahead of the
	// senders (default 4 per worker); a paced lane fetches about Horizon
	// of its account's sends. A killed worker strands these until the
	// consumer's AckWait; more keeps every sender busy.
	Prefetch int
	// Horizon is how far ahead of its account's pace a lane is fetched
	// and how many of the account's sends may wait for a pacing slot at
	// once (default 500 ms: at 20/s, 10 bundles). It bounds how long a
	// high-priority message waits behind bulk ones already holding slots.
	Horizon time.Duration
	// DiscoverEvery is how often the stream is asked which lanes hold
	// messages (default 200 ms): the longest a bot's first message waits
	// before its lane is consumed.
	DiscoverEvery time.Duration
	// IdleAfter is how long a lane stays consumed without messages
	// (default 30 s).
	IdleAfter time.Duration
	// HighPerBulk is how many high-lane messages of a busy account go
	// before one waiting bulk message (default 4: bulk keeps at least a
	// fifth of the account's rate).
	HighPerBulk int
	// AckWait and MaxDeliver override the lane consumers'
	// (bus.OutboundAckWait, or bus.IdempotentOutboundAckWait for a sender
	// with idempotent sends; 20); tests shorten them.
	AckWait    time.Duration
	MaxDeliver int
	// MaxBackoff caps the delay before a bundle whose send failed
	// transiently (a provider 5xx, a timeout) is tried again (default
	// 1 min). Such failures are retried for as long as they last, never
	// dead-lettered for it.
	MaxBackoff time.Duration
	// MaxInFlightPerAccount bounds the sends of one sender account that
	// are between "request written to the provider" and "sent recorded in
	// the store". WhatsApp and Telegram have no idempotency key, so these
	// are exactly the messages a crash can make the redelivered bundle
	// send a second time: a kill duplicates at most this many messages
	// per account. 0 means DefaultMaxInFlightPerAccount, except for a
	// sender with idempotent sends (RCS, sandbox): no limit; a negative
	// value means no limit (Workers bounds it). 1 makes a crash duplicate
	// at most one message per account, at the price of one provider round
	// trip plus one store write per message and account (docs/channels.md).
	// main fills it from FLOWGATE_CHANNEL_MAX_IN_FLIGHT.
	MaxInFlightPerAccount int
}

// DefaultMaxInFlightPerAccount is RunnerConfig.MaxInFlightPerAccount's
// default: enough for a provider round trip of 200 ms at 80 messages/s
// (WhatsApp's default tier) with room to spare, and for more than 10,000
// messages/s per process against a local provider double; a crash
// duplicates at most this many messages per account.
const DefaultMaxInFlightPerAccount = 32

// Capabilities are what a provider declares about its sends, as data: the
// runner adapts its bookkeeping to them.
type Capabilities struct {
	// IdempotentSends: the provider deduplicates a repeated send of the
	// same message itself (RCS: the messageId; the sandbox: one transcript
	// entry per id). A redelivered bundle cannot make such a sender
	// deliver a message twice, so the runner does not bound its sends in
	// flight unless configured to, and records a bundle's sends in one
	// write.
	IdempotentSends bool
	// Bundles: the sender implements BundleSender and takes a bundle's
	// messages in one call (the sandbox: one write). Used only with
	// IdempotentSends and no pacer.
	Bundles bool
	// RecordsSent: the BundleSender records the messages it delivered as
	// sent (MarkSent's effect) in the same write as the delivery, so the
	// runner does not record them again: the sandbox delivers a bundle in
	// one store write instead of two.
	RecordsSent bool
}

// RunnerDeps are the runner's collaborators.
type RunnerDeps struct {
	Sender Sender
	// Capabilities are the sender's provider's (Provider.Capabilities).
	Capabilities Capabilities
	Bus          Bus
	Store        Store
	// Pacer may be nil: no pacing (the sandbox).
	Pacer  Pacer
	Logger *slog.Logger
}

// Runner consumes one channel's outbound bundles and sends them with a
// Sender: pacing per account, idempotent per message, retry by error type.
type Runner struct {
	cfg    RunnerConfig
	sender Sender
	bus    Bus
	store  Store
	pacer  Pacer
	log    *slog.Logger

	mu   sync.Mutex
	bots map[string]cachedBot

	inflightMu sync.Mutex
	gates      map[string]*gate // per account; nil: unbounded

	// idempotent: the sender's resends are harmless (IdempotentSender).
	idempotent bool
	// bundle is the sender's BundleSender side, when it is idempotent.
	bundle BundleSender
	// recordsSent: bundle records its deliveries as sent itself.
	recordsSent bool
	// progress is how often a waiting bundle tells JetStream it is still
	// worked on: progressEvery, or a third of a shorter AckWait.
	progress time.Duration

	// Metric children of this runner's channel, looked up once.
	sentCounter     prometheus.Counter
	providerLatency prometheus.Observer
	laneMetrics     [2]laneMetricSet // by laneIndex
}

type cachedBot struct {
	bot store.Bot
	exp time.Time
}

// NewRunner builds a runner. It reads no environment: main fills cfg.
func NewRunner(cfg RunnerConfig, d RunnerDeps) (*Runner, error) {
	s, b, st, pacer, log := d.Sender, d.Bus, d.Store, d.Pacer, d.Logger
	if s == nil || b == nil || st == nil {
		return nil, errors.New("channel: sender, bus and store are required")
	}
	if cfg.Workers == 0 {
		cfg.Workers = 64
	}
	if cfg.Prefetch == 0 {
		cfg.Prefetch = 4 * cfg.Workers
	}
	if cfg.BotCacheTTL == 0 {
		cfg.BotCacheTTL = 10 * time.Second
	}
	if cfg.Horizon <= 0 {
		cfg.Horizon = 500 * time.Millisecond
	}
	if cfg.DiscoverEvery <= 0 {
		cfg.DiscoverEvery = 200 * time.Millisecond
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = 30 * time.Second
	}
	if cfg.HighPerBulk <= 0 {
		cfg.HighPerBulk = 4
	}
	idempotent := d.Capabilities.IdempotentSends
	if cfg.MaxInFlightPerAccount == 0 {
		cfg.MaxInFlightPerAccount = DefaultMaxInFlightPerAccount
		if idempotent {
			// A resend is harmless: no bound needed on what a crash resends.
			cfg.MaxInFlightPerAccount = -1
		}
	}
	if log == nil {
		log = slog.Default()
	}
	ch := s.Channel()
	progress := progressEvery
	if ackWait := laneAckWait(cfg, idempotent); ackWait > 0 {
		progress = min(progress, ackWait/3)
	}
	var bundle BundleSender
	if d.Capabilities.Bundles && idempotent {
		bs, ok := s.(BundleSender)
		if !ok {
			return nil, fmt.Errorf("channel: the %s sender declares bundles but has no SendBundle", s.Channel())
		}
		bundle = bs
	}
	lm := [2]laneMetricSet{}
	for i, l := range []string{events.LaneHigh, events.LaneBulk} {
		lm[i] = laneMetricSet{sent: laneSent.WithLabelValues(ch, l), queue: laneLatency.WithLabelValues(ch, l)}
	}
	return &Runner{cfg: cfg, laneMetrics: lm, sender: s, bus: b, store: st, pacer: pacer, log: log.With("channel", ch), bots: map[string]cachedBot{},
		idempotent: idempotent, bundle: bundle, recordsSent: bundle != nil && d.Capabilities.RecordsSent, progress: progress,
		gates: map[string]*gate{}, sentCounter: sent.WithLabelValues(ch), providerLatency: providerSeconds.WithLabelValues(ch)}, nil
}

// laneAckWait is the AckWait of the runner's lane consumers: the
// configured one, or for a sender whose resends are harmless
// bus.IdempotentOutboundAckWait; 0 leaves bus.OutboundAckWait.
func laneAckWait(cfg RunnerConfig, idempotent bool) time.Duration {
	if cfg.AckWait > 0 {
		return cfg.AckWait
	}
	if idempotent {
		return bus.IdempotentOutboundAckWait
	}
	return 0
}

// Config is the runner's configuration with its defaults applied.
func (r *Runner) Config() RunnerConfig { return r.cfg }

func (r *Runner) bot(ctx context.Context, id string) (store.Bot, error) {
	r.mu.Lock()
	c, ok := r.bots[id]
	r.mu.Unlock()
	if ok && time.Now().Before(c.exp) {
		return c.bot, nil
	}
	b, err := r.store.GetBot(ctx, id)
	if err != nil {
		return b, err
	}
	r.mu.Lock()
	r.bots[id] = cachedBot{bot: b, exp: time.Now().Add(r.cfg.BotCacheTTL)}
	r.mu.Unlock()
	return b, nil
}

// Handle sends one outbound bundle: its messages in order, skipping those
// the provider already accepted (a redelivery after a crash). The lane is
// the bundle's own (high when it names none).
func (r *Runner) Handle(ctx context.Context, m bus.Message) error {
	return r.handle(ctx, m, "")
}

func (r *Runner) handle(ctx context.Context, m bus.Message, laneName string) error {
	bundles, err := events.Bundles(m.Event.Type(), m.Event.Data())
	if err != nil {
		return bus.Permanent(fmt.Errorf("outbound payload: %w", err))
	}
	if m.Event.Type() == events.TypeOutboundBatch {
		return r.deliverBatch(ctx, m, bundles, laneName)
	}
	if wait := time.Until(bus.NotBefore(m.Event)); wait > 0 {
		// Handed on after the provider's retry-after (handOn): it waits
		// out the rest, as a bundle alone would have. Never a failure.
		return bus.Transient(bus.RetryAfter(fmt.Errorf("bundle held back for the provider's retry-after, %s left", wait.Round(time.Millisecond)), wait))
	}
	return r.deliver(ctx, m, bundles[0], laneName)
}

// deliver sends one bundle, carried by m (alone, or in a batch).
func (r *Runner) deliver(ctx context.Context, m bus.Message, out events.Outbound, laneName string) error {
	if laneName == "" {
		laneName = out.Lane
	}
	if !events.KnownLane(laneName) {
		laneName = events.LaneHigh
	}
	bot, err := r.bot(ctx, out.BotID)
	if errors.Is(err, store.ErrNotFound) {
		return bus.Permanent(fmt.Errorf("bot %s: %w", out.BotID, err))
	}
	if err != nil {
		return err
	}
	account, err := r.sender.Account(bot)
	if err != nil {
		r.failRest(ctx, out, 0, err)
		return bus.Permanent(err)
	}
	// The bundle was (re)delivered just now: AckWait (20 s) runs from here.
	// Whatever it waits for (a gate slot, a pacing slot, a provider's
	// retry-after), it tells JetStream every 5 s that it is still being
	// worked on: waiting is not failing, and never counts as a delivery.
	progressAt := time.Now()
	heartbeat := func() {
		if time.Since(progressAt) > r.progress {
			m.InProgress()
			progressAt = time.Now()
		}
	}
	// One read tells which of the bundle's messages were sent before. A
	// bundle's first delivery to a BundleSender skips it: sending again is
	// harmless there, and MarkSent never moves a status back.
	var recs map[string]store.Message
	if r.bundle == nil || r.pacer != nil || m.Delivered > 1 {
		var err error
		if recs, err = r.records(ctx, out); err != nil {
			return err
		}
	}
	// A sender whose resends are harmless (the provider or the transcript
	// de-duplicates by message id) records the bundle's sends together at
	// the end: one write per bundle. Any other records each send before
	// the next, so a crash finds at most the one in flight unrecorded.
	var pending []store.SentMessage
	recordPending := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := r.store.MarkSent(ctx, out.BotID, out.TriggerID, pending)
		pending = pending[:0]
		return err
	}
	if r.bundle != nil && r.pacer == nil {
		return r.sendBundle(ctx, bot, account, out, recs, laneName, m.Event.Time())
	}
	g := r.gateFor(account, bot)
	for i := 0; i < len(out.Messages); i++ {
		msg := out.Messages[i]
		rec, ok := recs[msg.ID]
		if ok && rec.Status != events.StatusQueued {
			continue // accepted (or failed) before: never send twice
		}
		// The gate's slot is taken before the pacer's, so that a slot
		// granted by the pacer is used at once (a sender queued at the
		// gate with a pacing slot already taken would send late, in a
		// burst). The gate serves the high lane first.
		if g != nil {
			if err := g.acquire(ctx, laneName, r.progress, heartbeat); err != nil {
				return err
			}
		}
		release := func() {
			if g != nil {
				g.release()
			}
		}
		if err := r.pace(ctx, bot, account, out, heartbeat); err != nil {
			release()
			return err
		}
		heartbeat()
		start := time.Now()
		res, err := r.sender.Send(ctx, bot, out, msg)
		now := time.Now()
		r.providerLatency.Observe(now.Sub(start).Seconds())
		if err != nil {
			release()
			if rerr := recordPending(); rerr != nil {
				return rerr
			}
			if r.throttled(account, err) && ctx.Err() == nil {
				// The account is sending too fast: the pacer now holds its
				// sends back for the provider's retry-after; this message
				// waits for its next slot like any other (no redelivery).
				i--
				continue
			}
			return r.sendFailed(ctx, out, i, account, err)
		}
		r.sentCounter.Inc()
		r.observeLane(laneName, m.Event.Time(), now, 1)
		// Record before acking: this is what makes a redelivery skip it.
		// The record also counts the message on its trigger's "sent" (once,
		// however often a redelivery records it). The gate's slot is held
		// until the record is stored: an accepted message without a record
		// is what a crash sends twice.
		pending = append(pending, store.SentMessage{ID: msg.ID, ProviderMessageID: res.ProviderMessageID, At: now.UTC()})
		if !r.idempotent {
			err = recordPending()
		}
		release()
		if err != nil {
			return err
		}
	}
	return recordPending()
}

// throttled reports a provider's "too fast" answer, after telling the
// pacer (which slows the account down for every replica).
func (r *Runner) throttled(account string, err error) bool {
	var retry *RetryAfterError
	if !errors.As(err, &retry) || !retry.Throttled || r.pacer == nil {
		return false
	}
	ch := r.sender.Channel()
	rateLimited.WithLabelValues(ch).Inc()
	failed.WithLabelValues(ch, "throttled").Inc()
	r.pacer.Throttled(account, retry.Wait)
	return true
}

// observeLane records n messages of lane sent at now, published at queued.
func (r *Runner) observeLane(laneName string, queued, now time.Time, n int) {
	m := r.laneMetrics[laneIndex(laneName)]
	m.sent.Add(float64(n))
	if !queued.IsZero() {
		d := now.Sub(queued).Seconds()
		for range n {
			m.queue.Observe(d)
		}
	}
}

// laneMetricSet is the metric children of one lane of the runner's channel.
type laneMetricSet struct {
	sent  prometheus.Counter
	queue prometheus.Observer
}

// sendBundle sends a bundle's unsent messages in one call of a
// BundleSender (idempotent, unpaced: the sandbox) and records them in one
// write (none, when the sender's delivery is its record).
func (r *Runner) sendBundle(ctx context.Context, bot store.Bot, account string, out events.Outbound, recs map[string]store.Message, laneName string, queued time.Time) error {
	first := -1
	var msgs []events.OutboundMessage
	for i, msg := range out.Messages {
		if rec, ok := recs[msg.ID]; ok && rec.Status != events.StatusQueued {
			continue // accepted (or failed) before
		}
		if first < 0 {
			first = i
		}
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 {
		return nil
	}
	start := time.Now()
	res, err := r.bundle.SendBundle(ctx, bot, out, msgs)
	now := time.Now()
	r.providerLatency.Observe(now.Sub(start).Seconds())
	if err != nil {
		return r.sendFailed(ctx, out, first, account, err)
	}
	sent := make([]store.SentMessage, len(msgs))
	for i, msg := range msgs {
		sent[i] = store.SentMessage{ID: msg.ID, ProviderMessageID: res[i].ProviderMessageID, At: now.UTC()}
	}
	r.sentCounter.Add(float64(len(msgs)))
	r.observeLane(laneName, queued, now, len(msgs))
	if r.recordsSent {
		return nil // recorded by the delivery itself
	}
	return r.store.MarkSent(ctx, out.BotID, out.TriggerID, sent)
}

// records returns the stored records of a bundle's messages by id.
func (r *Runner) records(ctx context.Context, out events.Outbound) (map[string]store.Message, error) {
	if len(out.Messages) == 1 {
		rec, err := r.store.GetMessage(ctx, out.BotID, out.Messages[0].ID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return map[string]store.Message{rec.ID: rec}, nil
	}
	list, err := r.store.ListRunMessages(ctx, out.BotID, out.RunID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	recs := make(map[string]store.Message, len(list))
	for _, m := range list {
		recs[m.ID] = m
	}
	return recs, nil
}

// pace waits for a pacing slot of the account. A slot further away than
// the pacer waits at once (its MaxWait, after a provider's long
// retry-after) is waited for here, in steps, keeping the bundle: a message
// that waits for pacing is never redelivered or dead-lettered for it.
func (r *Runner) pace(ctx context.Context, bot store.Bot, account string, out events.Outbound, heartbeat func()) error {
	if r.pacer == nil {
		return nil
	}
	for {
		var err error
		if mp, ok := r.pacer.(MessagePacer); ok {
			err = mp.WaitMessage(ctx, bot, account, out)
		} else {
			err = r.pacer.Wait(ctx, account)
		}
		var far *bus.RetryAfterError
		if err == nil || !errors.As(err, &far) {
			return err
		}
		farWaits.WithLabelValues(r.sender.Channel()).Inc()
		heartbeat()
		t := time.NewTimer(min(max(far.Wait, 10*time.Millisecond), r.progress))
		select {
		case <-ctx.Done():
			t.Stop()
			// Shutting down: give the bundle back for another replica.
			return bus.RetryAfter(ctx.Err(), far.Wait)
		case <-t.C:
		}
		heartbeat()
	}
}

// sendFailed turns a send error into the bundle's fate.
func (r *Runner) sendFailed(ctx context.Context, out events.Outbound, i int, account string, err error) error {
	var perm *PermanentError
	var retry *RetryAfterError
	ch := r.sender.Channel()
	switch {
	case errors.As(err, &perm):
		failed.WithLabelValues(ch, perm.Code).Inc()
		r.log.Warn("message failed permanently", "bot", out.BotID, "run", out.RunID, "code", perm.Code, "reason", perm.Reason)
		if rerr := r.failRest(ctx, out, i, err); rerr != nil {
			return rerr
		}
		return bus.Permanent(err)
	case errors.As(err, &retry):
		if retry.Throttled {
			rateLimited.WithLabelValues(ch).Inc()
		}
		failed.WithLabelValues(ch, "retry").Inc()
		// Transient: a provider that keeps answering "later" (429, 5xx
		// with Retry-After) is retried for as long as it does, never
		// dead-lettered for it (bus.retryTransient re-publishes the bundle
		// with a fresh delivery count).
		return bus.Transient(bus.RetryAfter(err, retry.Wait))
	default:
		// A 5xx, a timeout, a connection refused: says nothing about the
		// message. Retried with capped backoff, without a delivery cap.
		failed.WithLabelValues(ch, "transient").Inc()
		return bus.Transient(err)
	}
}

// failRest reports messages i.. of the bundle as failed: the run fails with
// the first one's reason, the others will never be sent.
func (r *Runner) failRest(ctx context.Context, out events.Outbound, i int, cause error) error {
	code, reason, unreachable := "error", cause.Error(), false
	var perm *PermanentError
	if errors.As(cause, &perm) {
		code, reason, unreachable = perm.Code, perm.Reason, perm.Unreachable
	}
	now := time.Now().UTC()
	for j := i; j < len(out.Messages); j++ {
		msg := out.Messages[j]
		d := events.Delivery{Status: events.StatusFailed, Code: code, Reason: reason, Unreachable: unreachable && j == i, At: now}
		if err := r.report(ctx, out, msg, d); err != nil {
			return err
		}
	}
	return nil
}

// report publishes a message status change for the orchestrator.
func (r *Runner) report(ctx context.Context, out events.Outbound, msg events.OutboundMessage, d events.Delivery) error {
	d.BotID, d.Channel, d.MessageID, d.RunID = out.BotID, out.Channel, msg.ID, out.RunID
	d.TriggerID, d.ContactID, d.Seq = out.TriggerID, out.ContactID, msg.Seq
	ev, err := bus.NewEvent("dlv:"+msg.ID+":"+d.Status, events.TypeDelivery, out.RunID, d)
	if err != nil {
		return bus.Permanent(err)
	}
	_, err = r.bus.Publish(ctx, events.DeliverySubject(out.Channel, out.BotID), ev)
	return err
}
