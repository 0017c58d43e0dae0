// Package pacer owns Flowgate's send pacing: every channel worker replica
// spaces its sends per sender account (WhatsApp phone-number id, Telegram
// bot, RCS agent) and, where the provider asks for it, per recipient
// (Telegram: one message per second per chat), so that the configured rate
// is never exceeded across all replicas of the worker.
//
// The limit is a distributed GCRA (generic cell rate algorithm). Its whole
// state per key is one NATS KV entry: the theoretical arrival time (TAT) of
// the next send and the adaptive rate. A replica that needs to send takes a
// lease of a few consecutive send slots with a compare-and-set on that entry
// and spends them locally, so replicas never hand out the same slot, an idle
// replica takes none (load imbalance between replicas costs no throughput),
// and a crashed replica loses at most one short lease. A provider's "too
// fast" answer halves the key's rate for every replica (multiplicative
// decrease) and pushes its TAT past the provider's retry-after; the rate
// then climbs back linearly to the configured rate (additive increase).
package pacer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
)

// DefaultRate is the per-account rate of a Config that sets none, in
// messages per second (WhatsApp's default tier, providers.md). The
// channels declare their own (provider.Provider.Rate).
const DefaultRate = 80

// DefaultBucket is the NATS KV bucket holding the pacing state.
const DefaultBucket = "FLOWGATE_PACER"

// Config configures a Pacer. Zero fields take the channel's defaults.
type Config struct {
	// Channel is the channel paced (events.ChannelWhatsApp, ...).
	Channel string
	// Rate is the per-account rate when the bot's account sets none
	// (default DefaultRate).
	Rate float64
	// AccountRate is the rate a bot configured for its account on the
	// channel (0: none; nil: no bot sets one).
	AccountRate func(store.Bot) float64
	// PerRecipient is the per-recipient rate (Telegram 1/s); 0 or
	// negative: none.
	PerRecipient float64
	// Headroom is the fraction of every rate left unused, so that network
	// jitter never makes a provider that measures strict windows see more
	// than the limit (default 0.02; negative means none).
	Headroom float64
	// RecipientMargin is added to the interval between two messages to one
	// recipient (default 100 ms): providers measure per-chat limits as
	// strict one-second windows at their end, after network jitter.
	RecipientMargin time.Duration
	// Burst is the send time a key may catch up on after a pause (default
	// 20 ms, the headroom's worth of one second: any one-second window then
	// stays within the rate). A replica starved of CPU for a moment makes
	// up for that much instead of losing it. Negative means none.
	Burst time.Duration
	// Lease is how much send time a replica reserves at once (default 50 ms).
	// Longer leases mean fewer KV writes; shorter ones waste less when a
	// replica stops.
	Lease time.Duration
	// MaxWait is the longest Wait blocks; when the next slot is further away
	// (after a long provider back-off) Wait fails with a retry-after error
	// instead, so that the message is redelivered later (default 20 s).
	MaxWait time.Duration
	// Recovery is how long the rate takes to climb back from half to the
	// configured rate after a throttle (default 10 s).
	Recovery time.Duration
	// Bucket is the KV bucket (default DefaultBucket).
	Bucket string
	// Replicas of the KV bucket in a NATS cluster (default 1).
	Replicas int
	Logger   *slog.Logger
	// Now is the pacer's clock (default time.Now). Every replica of a
	// worker must use the same clock; tests inject one to check the rate
	// arithmetic without waiting.
	Now func() time.Time
	// Sleep waits until d has passed on the pacer's clock or ctx ends
	// (default: a real timer). A test that injects Now injects a Sleep on
	// the same clock, so that pacing is checked in virtual time, whatever
	// the machine's load.
	Sleep func(ctx context.Context, d time.Duration) error
}

func (c *Config) setDefaults() {
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.AccountRate == nil {
		c.AccountRate = func(store.Bot) float64 { return 0 }
	}
	if c.PerRecipient < 0 {
		c.PerRecipient = 0
	}
	if c.Headroom == 0 {
		c.Headroom = 0.02
	}
	if c.Headroom < 0 {
		c.Headroom = 0
	}
	if c.RecipientMargin == 0 {
		c.RecipientMargin = 100 * time.Millisecond
	}
	if c.RecipientMargin < 0 {
		c.RecipientMargin = 0
	}
	if c.Burst == 0 {
		c.Burst = 20 * time.Millisecond
	}
	if c.Burst < 0 {
		c.Burst = 0
	}
	if c.Lease == 0 {
		c.Lease = 50 * time.Millisecond
	}
	if c.MaxWait == 0 {
		c.MaxWait = 20 * time.Second
	}
	if c.Recovery == 0 {
		c.Recovery = 10 * time.Second
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Sleep == nil {
		c.Sleep = sleep
	}
}

// sleep waits for d on the real clock, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// Validate reports a configuration that cannot pace.
func (c *Config) Validate() error {
	switch {
	case c.Channel == "":
		return errors.New("pacer: channel is required")
	case c.Rate <= 0:
		return fmt.Errorf("pacer: rate %v must be positive", c.Rate)
	case c.Headroom >= 0.5:
		return fmt.Errorf("pacer: headroom %v must be below 0.5", c.Headroom)
	case c.Lease < time.Millisecond:
		return errors.New("pacer: lease must be at least 1 ms")
	}
	return nil
}

// Pacer paces one channel's sends. It implements channel.Pacer and
// channel.MessagePacer and is safe for concurrent use.
type Pacer struct {
	cfg   Config
	js    jetstream.JetStream
	kvCfg jetstream.KeyValueConfig
	log   *slog.Logger

	kvMu sync.RWMutex
	kv   jetstream.KeyValue

	mu   sync.Mutex
	keys map[string]*key
}

var (
	_ channel.Pacer        = (*Pacer)(nil)
	_ channel.MessagePacer = (*Pacer)(nil)
	_ channel.RatePacer    = (*Pacer)(nil)
)

// Rate is the configured rate of bot's account on the pacer's channel:
// the bot's own RatePerSecond, else the channel's default.
func (p *Pacer) Rate(bot store.Bot) float64 {
	if r := p.cfg.AccountRate(bot); r > 0 {
		return r
	}
	return p.cfg.Rate
}

// New returns a pacer whose state lives in the KV bucket cfg.Bucket of js
// (created if missing). Every replica of a worker must use the same bucket.
func New(ctx context.Context, js jetstream.JetStream, cfg Config) (*Pacer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Pacer{cfg: cfg, js: js, log: cfg.Logger.With("pacer", cfg.Channel), keys: map[string]*key{},
		kvCfg: jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "send pacing state (GCRA) per sender account and recipient",
			History:     1,
			// An idle key's state is worthless after a while: its TAT is in
			// the past and a throttle has long recovered.
			TTL:      time.Hour,
			Storage:  jetstream.MemoryStorage,
			Replicas: cfg.Replicas,
		}}
	if err := p.createBucket(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// createBucket creates the KV bucket, or binds to it if it exists. It runs
// at start and again when the bucket is gone: its storage is memory, so a
// restarted NATS server comes back without it.
func (p *Pacer) createBucket(ctx context.Context) error {
	// Created, or bound with its replica count raised to the configured
	// one and never lowered (bus.EnsureKeyValue).
	kv, err := bus.EnsureKeyValue(ctx, p.js, p.kvCfg, p.log)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: pacer bucket %s: %v", bus.ErrUnavailable, p.kvCfg.Bucket, err)
	}
	p.kvMu.Lock()
	p.kv = kv
	p.kvMu.Unlock()
	return nil
}

func (p *Pacer) bucket() jetstream.KeyValue {
	p.kvMu.RLock()
	defer p.kvMu.RUnlock()
	return p.kv
}

// bucketGone reports errors meaning the KV bucket no longer exists.
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// recreateIfGone recreates a vanished bucket; it reports whether the caller
// should retry.
func (p *Pacer) recreateIfGone(ctx context.Context, err error) bool {
	if !bucketGone(err) || ctx.Err() != nil {
		return false
	}
	if cerr := p.createBucket(ctx); cerr != nil {
		p.log.Warn("pacer: recreating the KV bucket failed", "err", cerr)
		return false
	}
	// The same errors come from a bucket that vanished with a restarted
	// single server (memory storage) and from a replicated bucket between
	// two leaders: say which one it was.
	if st, serr := p.bucket().Status(ctx); serr == nil && st.Values() > 0 {
		p.log.Warn("pacer: KV bucket unreachable for a moment (leader election?); bound to it again, pacing state kept", "err", err)
	} else {
		p.log.Warn("pacer: KV bucket was gone (NATS restarted?); recreated it, pacing state starts afresh", "err", err)
	}
	bucketsRecreated.WithLabelValues(p.cfg.Channel).Inc()
	return true
}

// key is the local side of one paced key: the slots this replica leased
// and not yet used, and the last state it saw.
type key struct {
	name    string
	waiters atomic.Int64

	mu sync.Mutex
	// The leased slots are leaseFirst + i × interval (Unix nanoseconds)
	// for leaseNext <= i < leaseN: arithmetic, not a slice, because at
	// high rates a lease holds thousands of slots.
	leaseFirst int64
	leaseNext  int64
	leaseN     int64
	interval   time.Duration
	rev        uint64
	st         state
	known      bool
	// configured is the rate this key is configured for (per-account override).
	configured float64
}

// state is the KV entry of a key.
type state struct {
	// TAT is when the next send may go, Unix nanoseconds.
	TAT int64 `json:"tat"`
	// Rate and Since describe a throttle: the rate was Rate at Since and
	// climbs back from there. Rate 0 means no throttle is in effect.
	Rate  float64 `json:"rate,omitempty"`
	Since int64   `json:"since,omitempty"`
}

func (p *Pacer) key(name string, configured float64) *key {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.keys[name]
	if k == nil {
		if len(p.keys) > 100_000 {
			// Bound memory: recipient keys of a long broadcast pile up. Their
			// state is in the KV bucket; only leased slots are forgotten.
			p.keys = map[string]*key{}
		}
		k = &key{name: name}
		p.keys[name] = k
	}
	if configured > 0 {
		k.mu.Lock()
		k.configured = configured
		k.mu.Unlock()
	}
	return k
}

// Wait blocks until one more message may be sent from account at the
// channel's default rate.
func (p *Pacer) Wait(ctx context.Context, account string) error {
	_, err := p.take(ctx, p.key(accountKey(p.cfg.Channel, account), 0), p.cfg.Rate)
	return err
}

// WaitMessage blocks until out's next message may be sent: within the bot's
// account rate (its RatePerSecond, or the channel default) and, on channels
// with a per-recipient limit, within that recipient's rate.
func (p *Pacer) WaitMessage(ctx context.Context, bot store.Bot, account string, out events.Outbound) error {
	rate := p.cfg.AccountRate(bot)
	if rate <= 0 {
		rate = p.cfg.Rate
	}
	ak := p.key(accountKey(p.cfg.Channel, account), rate)
	if p.cfg.PerRecipient <= 0 || out.To == "" {
		_, err := p.take(ctx, ak, rate)
		return err
	}
	rk := p.key(recipientKey(p.cfg.Channel, account, out.To), p.cfg.PerRecipient)
	for {
		// Sleep until the recipient may get a message before taking an
		// account slot: a slot spent waiting for the recipient is wasted.
		if err := p.sleepUntil(ctx, p.next(ctx, rk)); err != nil {
			return err
		}
		if _, err := p.take(ctx, ak, rate); err != nil {
			return err
		}
		// Claim the recipient's slot now. Another sender to the same
		// recipient may have claimed it meanwhile: then the account slot is
		// lost and the loop waits for the recipient's next one.
		ok, err := p.claim(ctx, rk, p.cfg.PerRecipient)
		if err != nil || ok {
			return err
		}
	}
}

// next is when k's next slot is, as this replica last saw it.
func (p *Pacer) next(ctx context.Context, k *key) time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.known {
		if err := p.load(ctx, k); err != nil {
			return time.Time{} // the claim will tell
		}
	}
	return time.Unix(0, k.st.TAT)
}

// claim takes k's slot at the current time if it is free.
func (p *Pacer) claim(ctx context.Context, k *key, rate float64) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ok := false
	err := p.update(ctx, k, func(st *state, now time.Time) bool {
		ok = st.TAT <= now.UnixNano()
		if ok {
			interval := time.Duration(float64(time.Second)/p.effective(*st, rate, now)) + p.cfg.RecipientMargin
			st.TAT = now.Add(interval).UnixNano()
		}
		return ok
	})
	return ok, err
}

func (p *Pacer) sleepUntil(ctx context.Context, t time.Time) error {
	d := t.Sub(p.cfg.Now())
	if d <= 0 {
		return ctx.Err()
	}
	if d > p.cfg.MaxWait {
		return bus.RetryAfter(fmt.Errorf("%w (%s)", ErrTooFar, d.Round(time.Millisecond)), d)
	}
	return p.cfg.Sleep(ctx, d)
}

// Throttled tells the pacer the provider refused a send from account as
// too fast: every replica halves the account's rate (at most once per
// second) and sends nothing for retryAfter.
func (p *Pacer) Throttled(account string, retryAfter time.Duration) {
	k := p.key(accountKey(p.cfg.Channel, account), 0)
	throttles.WithLabelValues(p.cfg.Channel).Inc()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.leaseN, k.leaseNext = 0, 0 // leased at the old rate
	configured := k.configuredRate(p.cfg.Rate)
	err := p.update(ctx, k, func(st *state, now time.Time) bool {
		eff := p.effective(*st, configured, now)
		if st.Rate == 0 || now.Sub(time.Unix(0, st.Since)) >= time.Second {
			// One answer per burst of refusals halves the rate: the requests
			// already in flight when the provider complained fail together.
			st.Rate = max(eff/2, configured/64)
			st.Since = now.UnixNano()
		}
		st.TAT = max(st.TAT, now.Add(retryAfter).UnixNano())
		return true
	})
	if err != nil {
		p.log.Warn("pacer: recording a throttle failed", "err", err)
	}
}

func (k *key) configuredRate(def float64) float64 {
	if k.configured > 0 {
		return k.configured
	}
	return def
}

// effective is the rate of a key at now: the configured rate, less the
// headroom, or the throttled rate climbing back to it.
func (p *Pacer) effective(st state, configured float64, now time.Time) float64 {
	full := configured * (1 - p.cfg.Headroom)
	if st.Rate <= 0 {
		return full
	}
	climbed := st.Rate + now.Sub(time.Unix(0, st.Since)).Seconds()*(configured/2)/p.cfg.Recovery.Seconds()
	return min(full, climbed)
}

// State is what every replica knows of an account's pacing.
type State struct {
	// Rate is the account's current rate (messages per second): the
	// configured rate less the headroom, or a throttled rate climbing back.
	Rate float64
	// Next is when the account's next send slot is.
	Next time.Time
	// Throttled says a provider's "too fast" answer is still in effect.
	Throttled bool
}

// AccountState reads the shared pacing state of account (configured at
// rate, 0: the channel's default), as of the pacer's clock.
func (p *Pacer) AccountState(ctx context.Context, account string, rate float64) (State, error) {
	k := p.key(accountKey(p.cfg.Channel, account), rate)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := p.load(ctx, k); err != nil {
		return State{}, err
	}
	now := p.cfg.Now()
	eff := p.effective(k.st, k.configuredRate(p.cfg.Rate), now)
	return State{Rate: eff, Next: time.Unix(0, k.st.TAT), Throttled: k.st.Rate > 0 && eff < k.configuredRate(p.cfg.Rate)*(1-p.cfg.Headroom)}, nil
}

// ErrTooFar is wrapped by Wait's error when the next slot is more than
// MaxWait away; the error is a *bus.RetryAfterError.
var ErrTooFar = errors.New("pacer: next send slot is too far away")

// take returns the time of one send slot of k, after sleeping until then.
func (p *Pacer) take(ctx context.Context, k *key, rate float64) (time.Time, error) {
	start := p.cfg.Now()
	for attempt := 0; ; attempt++ {
		k.waiters.Add(1)
		slot, tolerance, err := p.lease(ctx, k, rate)
		k.waiters.Add(-1)
		if err != nil {
			return time.Time{}, err
		}
		if err := p.sleepUntil(ctx, slot); err != nil {
			return time.Time{}, err
		}
		// Woken too late (an overloaded process): sending now, close to
		// the next slot, would be a burst above the rate; take a new slot.
		if p.cfg.Now().Sub(slot) > tolerance && attempt < 3 {
			lateSlots.WithLabelValues(p.cfg.Channel).Inc()
			continue
		}
		now := p.cfg.Now()
		waitSeconds.WithLabelValues(p.cfg.Channel).Observe(now.Sub(start).Seconds())
		return now, nil
	}
}

// lease pops a slot leased before, or leases new ones.
func (p *Pacer) lease(ctx context.Context, k *key, rate float64) (time.Time, time.Duration, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := p.cfg.Now()
	// A slot not used on time is dropped: sending on it late, right before
	// the next one, would be a burst above the rate.
	tolerance := max(p.cfg.Lease, p.cfg.Burst) + k.interval
	if k.leaseNext < k.leaseN && k.interval > 0 {
		cutoff := now.Add(-tolerance).UnixNano()
		if k.slot(k.leaseNext) < cutoff {
			// Skip to the first slot at or after the cutoff.
			iv := int64(k.interval)
			k.leaseNext = min(k.leaseN, (cutoff-k.leaseFirst+iv-1)/iv)
		}
	}
	if k.leaseNext >= k.leaseN {
		if err := p.reserve(ctx, k, rate); err != nil {
			return time.Time{}, 0, err
		}
	}
	s := time.Unix(0, k.slot(k.leaseNext))
	k.leaseNext++
	return s, tolerance, nil
}

// slot is leased slot i, Unix nanoseconds.
func (k *key) slot(i int64) int64 { return k.leaseFirst + i*int64(k.interval) }

// reserve leases as many consecutive slots as there are senders waiting
// (at most one lease's worth) with a compare-and-set on the key's entry.
func (p *Pacer) reserve(ctx context.Context, k *key, rate float64) error {
	var first, n int64
	var interval time.Duration
	var tooFar time.Duration
	err := p.update(ctx, k, func(st *state, now time.Time) bool {
		eff := p.effective(*st, rate, now)
		interval = max(1, time.Duration(float64(time.Second)/eff))
		maxN := max(1, int64(p.cfg.Lease/interval))
		// As many as there are senders waiting, and at least 5 ms worth:
		// at high rates a lease per sender would be a KV write per message.
		minN := int64(5 * time.Millisecond / interval)
		n = min(max(k.waiters.Load(), minN, 1), maxN)
		first = max(now.Add(-p.cfg.Burst).UnixNano(), st.TAT)
		if d := time.Duration(first - now.UnixNano()); d > p.cfg.MaxWait {
			tooFar, n = d, 0
			return false
		}
		tooFar = 0
		st.TAT = first + n*int64(interval)
		p.observeRate(k.name, eff, now)
		return true
	})
	if err != nil {
		return err
	}
	if tooFar > 0 {
		return bus.RetryAfter(fmt.Errorf("%w (%s)", ErrTooFar, tooFar.Round(time.Millisecond)), tooFar)
	}
	k.leaseFirst, k.leaseNext, k.leaseN, k.interval = first, 0, n, interval
	return nil
}

// update applies change to k's entry with compare-and-set, retrying on
// conflicts with other replicas. k.mu is held by the caller.
func (p *Pacer) update(ctx context.Context, k *key, change func(st *state, now time.Time) bool) error {
	recovered := false
	for attempt := 0; ; attempt++ {
		if attempt > 0 || !k.known {
			if err := p.load(ctx, k); err != nil {
				return err
			}
		}
		st := k.st
		if !change(&st, p.cfg.Now()) {
			return nil
		}
		raw, err := json.Marshal(st)
		if err != nil {
			return err
		}
		var rev uint64
		if k.rev == 0 {
			rev, err = p.bucket().Create(ctx, k.name, raw)
		} else {
			rev, err = p.bucket().Update(ctx, k.name, raw, k.rev)
		}
		if err == nil {
			k.st, k.rev, k.known = st, rev, true
			return nil
		}
		conflict := errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if !conflict && !recovered && p.recreateIfGone(ctx, err) {
			recovered, k.known = true, false
			continue
		}
		if !conflict || attempt >= 100 {
			k.known = false
			return unavailable(ctx, err)
		}
		casConflicts.WithLabelValues(p.cfg.Channel).Inc()
	}
}

func (p *Pacer) load(ctx context.Context, k *key) error {
	e, err := p.bucket().Get(ctx, k.name)
	if err != nil && p.recreateIfGone(ctx, err) {
		e, err = p.bucket().Get(ctx, k.name)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		k.st, k.rev, k.known = state{}, 0, true
		return nil
	case err != nil:
		return unavailable(ctx, err)
	}
	var st state
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		st = state{} // unreadable state: start afresh rather than stop sending
	}
	k.st, k.rev, k.known = st, e.Revision(), true
	return nil
}

// unavailable reports a KV failure; the caller's own cancellation is
// returned as it is.
func unavailable(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: pacer: %v", bus.ErrUnavailable, err)
}

// Key names. KV keys allow [-/_=.a-zA-Z0-9]; anything else is hex-encoded.

func accountKey(channel, account string) string {
	return channel + ".a." + safe(account)
}

func recipientKey(channel, account, to string) string {
	return channel + ".r." + safe(account) + "." + safe(to)
}

func safe(s string) string {
	ok := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	return "x" + fmt.Sprintf("%x", s)
}

// rateTracker feeds the per-channel rate gauge: the sum of the current
// rates of the accounts this replica sent for in the last minute.
var (
	rateMu   sync.Mutex
	rateSeen = map[string]map[string]rateSample{}
)

type rateSample struct {
	rate float64
	at   time.Time
}

func (p *Pacer) observeRate(name string, rate float64, now time.Time) {
	if !strings.Contains(name, ".a.") {
		return // recipient keys say nothing about the account's capacity
	}
	rateMu.Lock()
	defer rateMu.Unlock()
	m := rateSeen[p.cfg.Channel]
	if m == nil {
		m = map[string]rateSample{}
		rateSeen[p.cfg.Channel] = m
	}
	m[name] = rateSample{rate: rate, at: now}
	sum := 0.0
	for n, s := range m {
		if now.Sub(s.at) > time.Minute {
			delete(m, n)
			continue
		}
		sum += s.rate
	}
	currentRate.WithLabelValues(p.cfg.Channel).Set(sum)
}
