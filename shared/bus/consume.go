package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Message is a consumed event and its delivery metadata.
type Message struct {
	Subject string
	Event   cloudevents.Event
	// Delivered counts deliveries of this message, 1 for the first.
	Delivered uint64
	raw       jetstream.Msg
	// consumer and metric name the consumer that delivered it (its
	// durable, and its name in metrics), for DeadLetterPart.
	consumer, metric string
}

// InProgress tells JetStream the handler is still working (resets AckWait).
func (m Message) InProgress() {
	if m.raw != nil {
		_ = m.raw.InProgress()
	}
}

// Handler processes one message. Return nil only once its effect is stored.
// The error decides what happens next: Permanent → dead letter and term;
// transient (see IsTransient: store or bus unavailable, timeouts) →
// redelivery with capped exponential backoff for as long as it lasts, never
// a dead letter; RetryAfter → redelivery after the wait; any other error →
// redelivery with exponential backoff until MaxDeliver, then dead letter
// (a poison message).
type Handler func(ctx context.Context, m Message) error

// PermanentError marks a failure no retry can fix.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the message is dead-lettered instead of retried.
func Permanent(err error) error { return &PermanentError{Err: err} }

// RetryAfterError asks for redelivery after Wait.
type RetryAfterError struct {
	Wait time.Duration
	Err  error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.Wait, e.Err)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err so the message is redelivered after wait.
func RetryAfter(err error, wait time.Duration) error { return &RetryAfterError{Wait: wait, Err: err} }

// ConsumeOptions tune a consumer's processing in this process.
type ConsumeOptions struct {
	// Workers handle messages concurrently (0 = 16).
	Workers int
	// Key, when set, sends messages with the same key to the same worker,
	// so they are handled one at a time in stream order (e.g. per run).
	Key func(m Message) string
	// MaxBackoff caps the exponential redelivery delay (0 = 1 min).
	MaxBackoff time.Duration
	// DrainTimeout bounds the wait for in-flight handlers on shutdown (0 = 20 s).
	DrainTimeout time.Duration
	// Prefetch bounds the messages fetched ahead of the handlers (0 =
	// Workers × 32). A process that dies holds its fetched messages until
	// AckWait: a small prefetch strands fewer, and leaves the rest of
	// MaxAckPending to the other replicas.
	Prefetch int
	// KeepFetched fetches only as many messages as Prefetch leaves room
	// for (every fetched message is kept in progress until handled, in
	// either mode): a message waiting in this
	// process for its turn is never redelivered elsewhere nor counted
	// towards MaxDeliver. A process then holds at most Prefetch waiting
	// messages plus one per busy worker.
	KeepFetched bool
}

// Consume runs h over the consumer's messages until ctx ends, then stops
// fetching and waits for in-flight handlers to finish.
func (b *Bus) Consume(ctx context.Context, spec ConsumerSpec, h Handler, o ConsumeOptions) error {
	if o.Workers <= 0 {
		o.Workers = 16
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = time.Minute
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 20 * time.Second
	}
	// The consumer's redelivery count exists (at 0) from its start, so
	// that dashboards and rates see it before the first redelivery.
	redelivered.WithLabelValues(spec.metricName())
	// Each worker's queue holds what was fetched for it; with an explicit
	// Prefetch the queues are sized so that fetched-but-unhandled messages
	// stay near it (a full queue holds the fetch back).
	queueCap := 64
	if o.Prefetch > 0 {
		queueCap = max(1, o.Prefetch/o.Workers)
	} else {
		o.Prefetch = o.Workers * 32
	}
	cfg := spec.config()
	cons, err := b.js.CreateOrUpdateConsumer(ctx, spec.Stream, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started: not a failure
		}
		return fmt.Errorf("%w: consumer %s: %v", ErrUnavailable, spec.Durable, err)
	}
	b.log.Debug("consumer bound", "consumer", spec.Durable, "workers", o.Workers, "prefetch", o.Prefetch, "keep_fetched", o.KeepFetched)
	if afterBind != nil {
		afterBind(spec.Durable)
	}

	// Handlers run on their own context: shutdown lets in-flight work
	// finish (drain) instead of cancelling it half-way.
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()

	// Every fetched message is kept in progress until its handler is done
	// (waiting for its worker, then handled): the consumer's AckWait can be
	// short, so that a crashed process's messages come back quickly.
	beats := newHolder(cfg.AckWait)
	stopBeats := make(chan struct{})
	go beats.run(stopBeats)
	defer close(stopBeats)

	var held *heldSet
	if o.KeepFetched {
		held = &heldSet{m: map[jetstream.Msg]struct{}{}, freed: make(chan struct{}, 1)}
	}
	queues := make([]workQueue, o.Workers)
	var wg sync.WaitGroup
	for i := range queues {
		if held != nil {
			// Never full: the fetch loop bounds what is queued.
			queues[i] = &fifo{ready: make(chan struct{}, 1)}
		} else {
			queues[i] = make(chanQueue, queueCap)
		}
		wg.Add(1)
		go func(q workQueue) {
			defer wg.Done()
			for {
				it, ok := q.next()
				if !ok {
					return
				}
				if held != nil {
					held.remove(it.m.raw)
				}
				b.handle(hctx, spec, cfg.MaxDeliver, h, o, it)
				beats.done(it.m.raw)
			}
		}(queues[i])
	}
	var next uint32
	dispatch := func(raw jetstream.Msg) {
		beats.add(raw)
		m, derr := decode(raw)
		idx := 0
		if o.Key != nil && derr == nil {
			hs := fnv.New32a()
			hs.Write([]byte(o.Key(m)))
			idx = int(hs.Sum32() % uint32(len(queues)))
		} else {
			next++
			idx = int(next % uint32(len(queues)))
		}
		if held != nil {
			held.add(raw)
		}
		queues[idx].push(item{m: m, err: derr})
	}
	if held != nil {
		// Fetch only what there is room for: this process never holds
		// more than Prefetch messages waiting for a worker, and every one
		// of them is kept in progress (none waits in the client's buffer).
		err := b.fetchLoop(ctx, spec, cons, o.Prefetch, held, dispatch)
		for _, q := range queues {
			q.close()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(o.DrainTimeout):
			cancelHandlers()
			<-done
		}
		return err
	}
	// Two answers to a pull stop the NATS client's consumption without
	// ending Consume, and are handled here:
	//   - no consumer answers it (503 no responders: the consumer is being
	//     created or updated by another replica at that moment, or its
	//     leader is being elected): the client pulls again only once it has
	//     missed two heartbeats, 30 s, and the process takes nothing from
	//     the consumer meanwhile. Consume pulls again after a short pause;
	//   - the consumer was deleted (by an operator, or with its stream): the
	//     client stops for good. Consume creates it again, as a restarted
	//     process would, and pulls again.
	// The pause is repullPause, doubling while this keeps happening.
	const (
		repull = iota
		rebind
	)
	restart := make(chan int, 1)
	signal := func(kind int) {
		select {
		case restart <- kind:
		default:
		}
	}
	pull := func() (jetstream.ConsumeContext, error) {
		return cons.Consume(dispatch, jetstream.PullMaxMessages(o.Prefetch),
			jetstream.PullExpiry(pullExpiry), jetstream.PullHeartbeat(pullHeartbeat),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				switch {
				case errors.Is(err, nats.ErrNoResponders):
					signal(repull)
				case errors.Is(err, jetstream.ErrConsumerDeleted):
					signal(rebind)
				}
				if !errors.Is(err, jetstream.ErrNoHeartbeat) {
					b.log.Debug("consume", "consumer", spec.Durable, "err", err)
				}
			}))
	}
	stop := func(cc jetstream.ConsumeContext) {
		cc.Drain() // what it fetched is handed to the workers first
		select {
		case <-cc.Closed():
		case <-time.After(o.DrainTimeout):
			cc.Stop()
		}
	}
	cc, err := pull()
	var backoff repullBackoff
	for err == nil {
		select {
		case <-ctx.Done():
		case kind := <-restart:
			stop(cc)
			cc = nil
			if kind == rebind {
				repulls.WithLabelValues(spec.metricName(), "consumer_deleted").Inc()
				b.log.Warn("consumer deleted while consuming; creating it again", "consumer", spec.Durable)
				for failures := 0; ctx.Err() == nil; failures++ {
					c, berr := b.js.CreateOrUpdateConsumer(ctx, spec.Stream, cfg)
					if berr == nil {
						cons = c
						break
					}
					if failures%30 == 0 { // at most once a minute once the pause is 2 s
						b.log.Warn("creating the consumer again failed; retrying", "consumer", spec.Durable, "failures", failures+1, "err", berr)
					}
					sleepCtx(ctx, backoff.next())
				}
			} else {
				repulls.WithLabelValues(spec.metricName(), "no_responders").Inc()
				pause := backoff.next()
				b.log.Debug("a pull found no consumer to answer it; pulling again", "consumer", spec.Durable, "in", pause)
				sleepCtx(ctx, pause)
			}
			if ctx.Err() == nil {
				cc, err = pull()
				continue
			}
		}
		break
	}
	if err != nil {
		for _, q := range queues {
			q.close()
		}
		wg.Wait()
		return fmt.Errorf("%w: consume %s: %v", ErrUnavailable, spec.Durable, err)
	}
	if cc != nil {
		stop(cc)
	}
	for _, q := range queues {
		q.close()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(o.DrainTimeout):
		cancelHandlers()
		<-done
	}
	return nil
}

// A pull request's lifetime on the server and the idle heartbeat the
// server sends while it is open. On a cluster a pull is held by the
// consumer's leader: when that server is lost (killed, not shut down) the
// pull is never answered, and the client pulls again only after missing
// two heartbeats. With the client's defaults (expiry 30 s, a heartbeat
// every 15 s) the sandbox worker read nothing for 30 s in two of twelve
// runs of deploy/deploytest's TestClusterConsumerLeaderKilledUnderLoad,
// long after the election had replaced the leader; with these, the
// longest pause in eight runs was 9.2 s. An idle consumer costs the
// server a heartbeat every pullHeartbeat and the client a pull request
// every pullExpiry.
const (
	pullExpiry    = 10 * time.Second
	pullHeartbeat = 2 * time.Second
)

// afterBind, when set (by tests), runs between binding the consumer and
// the first pull.
var afterBind func(durable string)

// The pauses before pulling again after a pull that no consumer answered:
// repullPause, doubling while such pulls follow each other within
// repullCalm, up to repullMaxPause.
const (
	repullPause    = 50 * time.Millisecond
	repullMaxPause = 2 * time.Second
	repullCalm     = 10 * time.Second
)

// repullBackoff hands out those pauses. The zero value starts at
// repullPause.
type repullBackoff struct {
	pause time.Duration
	last  time.Time
}

// next is the pause before the next pull.
func (r *repullBackoff) next() time.Duration {
	if r.pause == 0 || time.Since(r.last) > repullCalm {
		r.pause = repullPause
	}
	r.last = time.Now()
	d := r.pause
	r.pause = min(2*r.pause, repullMaxPause)
	return d
}

// sleepCtx waits d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func decode(raw jetstream.Msg) (Message, error) {
	m := Message{Subject: raw.Subject(), raw: raw}
	if md, err := raw.Metadata(); err == nil {
		m.Delivered = md.NumDelivered
	}
	e, err := FromMsg(raw.Headers(), raw.Data())
	m.Event = e
	return m, err
}

type item struct {
	m   Message
	err error
}

func (b *Bus) handle(ctx context.Context, spec ConsumerSpec, maxDeliver int, h Handler, o ConsumeOptions, it item) {
	start := time.Now()
	m, err, raw := it.m, it.err, it.m.raw
	if err == nil && retryForOther(raw, spec.Durable) {
		// A copy another consumer of this stream re-published for itself.
		consumed.WithLabelValues(spec.metricName(), "not_mine").Inc()
		_ = raw.Ack()
		return
	}
	m.consumer, m.metric = spec.Durable, spec.metricName()
	if m.Delivered > 1 {
		redelivered.WithLabelValues(spec.metricName()).Inc()
	}
	if err == nil {
		err = safeCall(ctx, h, m)
	} else {
		err = Permanent(err)
	}
	result := "ack"
	defer func() {
		consumed.WithLabelValues(spec.metricName(), result).Inc()
		handleSeconds.WithLabelValues(spec.metricName()).Observe(time.Since(start).Seconds())
	}()
	if err == nil {
		if aerr := b.ack(ctx, spec, raw); aerr != nil {
			b.log.Warn("ack failed; message will be redelivered", "consumer", spec.Durable, "err", aerr)
		}
		return
	}
	var perm *PermanentError
	var retry *RetryAfterError
	switch {
	case errors.As(err, &perm):
		result = "dead_letter"
		b.deadLetter(ctx, spec, raw, err)
	case IsTransient(err):
		result = "transient_retry"
		b.retryTransient(ctx, spec, maxDeliver, o, m, err)
	case m.Delivered >= uint64(maxDeliver):
		result = "dead_letter"
		b.deadLetter(ctx, spec, raw, fmt.Errorf("gave up after %d deliveries: %w", m.Delivered, err))
	case errors.As(err, &retry):
		result = "retry"
		_ = raw.NakWithDelay(retry.Wait)
	default:
		result = "retry"
		d := backoff(m.Delivered, o.MaxBackoff)
		b.log.Warn("handler failed; will retry", "consumer", spec.Durable, "subject", m.Subject, "delivered", m.Delivered, "retry_in", d, "err", err)
		_ = raw.NakWithDelay(d)
	}
}

// ackTimeout bounds one try of an acknowledgement (less for a consumer
// whose AckWait is short, see ack); ackRetryPause is the
// pause before the next (a try while disconnected fails at once: the next
// one should follow the reconnection closely, before the message's
// AckWait runs out on the server).
const (
	ackTimeout    = 5 * time.Second
	ackRetryPause = 250 * time.Millisecond
)

// ack acknowledges a handled message and waits for JetStream to confirm
// it (DoubleAck): the handler's effect is stored, so the ack must be too,
// and a redelivery stays the exception. An acknowledgement not confirmed
// (the server leading the consumer lost, the connection moving to another
// server) is sent again while the bus's retry wait lasts (Config.RetryWait;
// by default 15 s for the orchestrator and the channel workers), the
// message kept in progress meanwhile. JetStream confirms an acknowledgement of a message
// already acknowledged, so a try that reached it and lost only its answer
// is harmless.
func (b *Bus) ack(ctx context.Context, spec ConsumerSpec, raw jetstream.Msg) error {
	deadline := time.Now().Add(b.retryWait)
	// A try is not left waiting past half the consumer's AckWait: an ack
	// sent on a connection that died under it gets no answer, and the
	// next try, on the connection that replaced it, must land before the
	// server gives the message to someone else.
	perTry := ackTimeout
	if spec.AckWait > 0 {
		perTry = min(perTry, max(spec.AckWait/2, 500*time.Millisecond))
	}
	for {
		actx, cancel := context.WithTimeout(ctx, perTry)
		err := raw.DoubleAck(actx)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			return nil
		}
		wait := min(ackRetryPause, time.Until(deadline))
		if ctx.Err() != nil || wait <= 0 {
			return err
		}
		ackRetries.WithLabelValues(spec.metricName()).Inc()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

func safeCall(ctx context.Context, h Handler, m Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v", r)
		}
	}()
	return h(ctx, m)
}

// backoff is 250 ms doubled per delivery, capped.
func backoff(delivered uint64, max time.Duration) time.Duration {
	d := 250 * time.Millisecond
	for i := uint64(1); i < delivered && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// retryTransient retries a message whose handler failed for a transient
// cause. JetStream stops delivering a message after MaxDeliver, so from half
// of it on the message is re-published with a fresh delivery count (see
// republish) and the old copy acked: the retry has no cap, the consumer's
// MaxDeliver still bounds poison messages and crash loops. On a stream whose
// messages cannot be re-published the last delivery dead-letters, as before.
func (b *Bus) retryTransient(ctx context.Context, spec ConsumerSpec, maxDeliver int, o ConsumeOptions, m Message, err error) {
	raw := m.raw
	transientRetries.WithLabelValues(spec.Durable).Inc()
	gen := retryGeneration(raw)
	// The backoff goes on growing across re-publications, up to its cap.
	wait := backoff(uint64(gen)*republishAt(maxDeliver)+m.Delivered, o.MaxBackoff)
	var retry *RetryAfterError
	var capped *TransientError
	if errors.As(err, &retry) {
		wait = retry.Wait
	} else if errors.As(err, &capped) && capped.MaxWait > 0 {
		wait = min(wait, capped.MaxWait)
	}
	if m.Delivered >= republishAt(maxDeliver) && republishable(spec.Stream) {
		if perr := b.republish(ctx, spec.Durable, raw); perr == nil {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if aerr := raw.DoubleAck(actx); aerr != nil {
				// The copy is queued; the old one comes back and re-publishes
				// the same copy, which JetStream drops as a duplicate.
				b.log.Warn("ack of a re-published message failed", "consumer", spec.Durable, "err", aerr)
			}
			b.log.Warn("handler failed transiently; re-published to keep retrying", "consumer", spec.Durable,
				"subject", m.Subject, "delivered", m.Delivered, "generation", gen+1, "err", err)
			return
		} else if m.Delivered+1 >= uint64(maxDeliver) {
			b.log.Error("re-publishing a transiently failing message failed on its last deliveries", "consumer", spec.Durable,
				"subject", m.Subject, "delivered", m.Delivered, "err", perr)
		}
	}
	if m.Delivered >= uint64(maxDeliver) {
		if republishable(spec.Stream) {
			// JetStream will not deliver it again and it could not be
			// re-published: say so loudly; a dead letter at least keeps it.
			b.deadLetter(ctx, spec, raw, fmt.Errorf("transient failure outlasted %d deliveries and re-publication failed: %w", m.Delivered, err))
		} else {
			b.deadLetter(ctx, spec, raw, fmt.Errorf("gave up after %d deliveries (transient): %w", m.Delivered, err))
		}
		return
	}
	b.log.Warn("handler failed transiently; will retry", "consumer", spec.Durable, "subject", m.Subject,
		"delivered", m.Delivered, "retry_in", wait, "err", err)
	_ = raw.NakWithDelay(wait)
}

// deadLetter copies the message to the DLQ stream with the reason, then
// terms it. If the copy fails the message is redelivered instead: a dead
// letter is never lost.
func (b *Bus) deadLetter(ctx context.Context, spec ConsumerSpec, raw jetstream.Msg, reason error) {
	h := nats.Header{}
	for k, v := range raw.Headers() {
		h[k] = v
	}
	h.Set(HeaderDLQReason, truncate(reason.Error(), 1024))
	h.Set(HeaderDLQSubject, raw.Subject())
	h.Set(HeaderDLQConsumer, spec.Durable)
	dlq := &nats.Msg{Subject: "flowgate.dlq." + raw.Subject(), Header: h, Data: raw.Data()}
	id := ""
	if md, err := raw.Metadata(); err == nil {
		id = fmt.Sprintf("%s:%d", md.Stream, md.Sequence.Stream)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := b.js.PublishMsg(pctx, dlq, jetstream.WithMsgID("dlq:"+id)); err != nil {
		b.log.Error("dead-letter publish failed; will redeliver", "consumer", spec.Durable, "err", err)
		_ = raw.NakWithDelay(5 * time.Second)
		return
	}
	deadLettered.WithLabelValues(spec.metricName()).Inc()
	b.log.Warn("message dead-lettered", "consumer", spec.Durable, "subject", raw.Subject(), "reason", reason.Error())
	_ = raw.TermWithReason(truncate(reason.Error(), 256))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// heldSet is the fetched messages waiting for their worker
// (ConsumeOptions.KeepFetched).
type heldSet struct {
	mu    sync.Mutex
	m     map[jetstream.Msg]struct{}
	freed chan struct{} // capacity 1: a message left the set
}

func (h *heldSet) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

func (h *heldSet) add(m jetstream.Msg) {
	h.mu.Lock()
	h.m[m] = struct{}{}
	h.mu.Unlock()
}

func (h *heldSet) remove(m jetstream.Msg) {
	if m == nil {
		return
	}
	h.mu.Lock()
	delete(h.m, m)
	h.mu.Unlock()
	select {
	case h.freed <- struct{}{}:
	default:
	}
}

// fetchWait is how long one fetch of the KeepFetched loop waits for
// messages (and so how long a stop may take).
const fetchWait = 2 * time.Second

// fetchLoop fetches from cons as long as ctx lasts, never more than room
// for prefetch messages waiting in held.
func (b *Bus) fetchLoop(ctx context.Context, spec ConsumerSpec, cons jetstream.Consumer, prefetch int, held *heldSet,
	dispatch func(jetstream.Msg)) error {
	failures := 0
	var backoff repullBackoff
	for ctx.Err() == nil {
		room := prefetch - held.len()
		if room <= 0 {
			select {
			case <-held.freed:
			case <-ctx.Done():
			}
			continue
		}
		batch, err := cons.Fetch(room, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("%w: consumer %s: %v", ErrUnavailable, spec.Durable, err)
			}
			failures++
			if failures == 1 || failures%50 == 0 {
				b.log.Warn("fetch failed; retrying", "consumer", spec.Durable, "err", err, "failures", failures)
			}
			select {
			case <-ctx.Done():
			case <-time.After(min(time.Duration(failures)*100*time.Millisecond, 2*time.Second)):
			}
			continue
		}
		failures = 0
		for raw := range batch.Messages() {
			dispatch(raw)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("%w: consumer %s: %v", ErrUnavailable, spec.Durable, err)
			}
			b.log.Debug("fetch", "consumer", spec.Durable, "err", err)
			if errors.Is(err, nats.ErrNoResponders) {
				// No consumer answered (it is being created or updated, or
				// its leader elected): the answer comes at once, so fetching
				// again at once would spin (thousands of requests a second)
				// until the consumer is back. Pause as Consume does.
				repulls.WithLabelValues(spec.metricName(), "no_responders").Inc()
				sleepCtx(ctx, backoff.next())
			}
		}
	}
	return nil
}

// workQueue is one worker's queue of fetched messages.
type workQueue interface {
	push(it item)
	// next blocks for the next item; false once closed and empty.
	next() (item, bool)
	close()
}

// chanQueue is a bounded queue: a full one holds the fetch back.
type chanQueue chan item

func (q chanQueue) push(it item) { q <- it }
func (q chanQueue) close()       { close(q) }
func (q chanQueue) next() (item, bool) {
	it, ok := <-q
	return it, ok
}

// fifo is an unbounded queue (ConsumeOptions.KeepFetched): its length is
// bounded by the consumer's MaxAckPending, and memory follows what is
// actually queued.
type fifo struct {
	mu     sync.Mutex
	items  []item
	closed bool
	ready  chan struct{} // capacity 1: something was pushed or it closed
}

func (q *fifo) push(it item) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	q.signal()
}

func (q *fifo) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *fifo) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *fifo) next() (item, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			it := q.items[0]
			q.items[0] = item{}
			q.items = q.items[1:]
			if len(q.items) == 0 {
				q.items = nil // let the backing array go
			}
			q.mu.Unlock()
			return it, true
		}
		if q.closed {
			q.mu.Unlock()
			return item{}, false
		}
		q.mu.Unlock()
		<-q.ready
	}
}
