package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/egress"
	"github.com/flowgate/flowgate/shared/recrubo"
	"github.com/flowgate/flowgate/shared/store"
)

// newClient returns the HTTP client that sends webhooks: the egress
// policy's client (every address it connects to is checked, so DNS cannot
// point a subscription at internal services). It does not follow
// redirects: a 3xx is a failed attempt.
func newClient(p egress.Policy) *http.Client {
	return p.Client(egress.ClientOptions{TLSHandshakeTimeout: 5 * time.Second, ResponseHeaderTimeout: 30 * time.Second})
}

// deliverer POSTs one subscription's events.
type deliverer struct {
	s   *service
	sub store.Subscription
	// secrets are the current and previous secret (reconcile updates them
	// after a rotation; sub's copies are not read when signing).
	secrets atomic.Pointer[[2]string]
	// stop is closed when the subscription is deleted or the service stops.
	stop chan struct{}
	// sent remembers recently delivered event ids. A message that waited
	// in its lane behind a long retry longer than AckWait is redelivered by
	// JetStream while the first copy is still queued; the second copy must
	// not be POSTed again.
	sent recent
}

// recent is a bounded set of ids, oldest evicted first. One lane at a time
// touches a given id, but lanes share the set.
type recent struct {
	mu    sync.Mutex
	ids   map[string]struct{}
	order []string
}

const recentMax = 4096

func (r *recent) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.ids[id]
	return ok
}

func (r *recent) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]struct{}{}
	}
	if _, ok := r.ids[id]; ok {
		return
	}
	if len(r.order) >= recentMax {
		delete(r.ids, r.order[0])
		r.order = r.order[1:]
	}
	r.ids[id] = struct{}{}
	r.order = append(r.order, id)
}

// handle delivers one status change, retrying inline with exponential
// backoff until RetryPeriod after the change, then dead-letters it.
func (d *deliverer) handle(ctx context.Context, m bus.Message) error {
	if d.sent.has(m.Event.ID()) {
		return nil
	}
	body, err := d.body(ctx, m)
	if err != nil {
		return err
	}
	start := m.Event.Time()
	if start.IsZero() {
		start = time.Now()
	}
	deadline := start.Add(d.s.cfg.RetryPeriod)
	wait := d.s.cfg.InitialBackoff
	for attempt := 1; ; attempt++ {
		select {
		case <-d.stop:
			return fmt.Errorf("webhook %s: stopped", d.sub.ID)
		case <-d.s.stopping:
			return fmt.Errorf("webhook %s: stopped", d.sub.ID)
		default:
		}
		err := d.post(ctx, m.Event.ID(), body, attempt)
		if err == nil {
			d.sent.add(m.Event.ID())
			return nil
		}
		if time.Now().Add(wait).After(deadline) {
			deadLetters.Inc()
			return bus.Permanent(fmt.Errorf("webhook %s: gave up after %d attempts within the retry period of %s: last error: %v",
				d.sub.ID, attempt, d.s.cfg.RetryPeriod, err))
		}
		if attempt == 1 || attempt%10 == 0 {
			d.s.log.Info("webhook delivery failed; retrying", "bot", d.sub.BotID, "subscription", d.sub.ID,
				"event", m.Event.ID(), "attempt", attempt, "retry_in", wait, "err", err)
		}
		if !d.s.pause(m, wait, d.stop) {
			// Stopping or deleted: hand the message back (a deleted
			// subscription's consumer is removed with its messages).
			return fmt.Errorf("webhook %s: stopped while retrying: %w", d.sub.ID, err)
		}
		wait = min(wait*2, d.s.cfg.MaxBackoff)
	}
}

// post makes one attempt. Errors never contain the URL (it may carry
// credentials) or the secret.
func (d *deliverer) post(ctx context.Context, id string, body []byte, attempt int) error {
	ctx, cancel := context.WithTimeout(ctx, d.s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.sub.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("invalid subscription URL")
	}
	ts := time.Now().Unix()
	sec := d.secrets.Load()
	if _, ok := recrubo.ParseSubscription(d.sub.EventTypes); ok {
		// Recrubo's receivers check the secret itself, sent as it is.
		req.Header.Set("Content-Type", recrubo.ContentType)
		req.Header.Set(recrubo.HeaderSecret, sec[0])
	} else {
		req.Header.Set("Content-Type", ContentType)
	}
	req.Header.Set("User-Agent", "Flowgate-Webhooks/1")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(sec[0], ts, body))
	req.Header.Set(HeaderWebhookID, id)
	req.Header.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderWebhookSignature, SignStandard(sec[:], id, ts, body))
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	began := time.Now()
	resp, err := d.s.client.Do(req)
	if err != nil {
		observe("error", began)
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		observe("http_"+strconv.Itoa(resp.StatusCode/100)+"xx", began)
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	observe("delivered", began)
	return nil
}

// setSecrets sets the secrets deliveries are signed with.
func (d *deliverer) setSecrets(current, previous string) {
	d.secrets.Store(&[2]string{current, previous})
}
