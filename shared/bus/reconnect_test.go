package bus_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/events"
)

// cutProxy forwards TCP connections to a server; cut drops every
// connection at once, as a server that stops does to its clients.
type cutProxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	// refuse closes every new connection at once, as an unreachable
	// server would.
	refuse atomic.Bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{l: l}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			if p.refuse.Load() {
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) url() string { return "nats://" + p.l.Addr().String() }

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// cutUnderLoad runs publishers goroutines, each calling publish with its
// number and a counter until stopped, on a bus whose connection to a
// three-node cluster goes through a cutProxy, cut 300 ms into the load
// (the client reconnects to the next server of its list): the shared
// harness of the lost-connection tests. publish returns how many events
// it stored. It fails the test on any failed publish, when no publish was
// tried again (flowgate_bus_publish_retries_total, every reason), or
// when the events stored are not exactly those acknowledged.
func cutUnderLoad(t *testing.T, what string, publishers int, publish func(b *bus.Bus, w, i int) (int64, error)) {
	t.Helper()
	c := bustest.StartCluster(t, 3)
	ctx := context.Background()
	_, err := newBus(t, c.Connect(t), bus.Limits{Replicas: 3}, nil)
	require.NoError(t, err)
	proxy := newCutProxy(t, strings.TrimPrefix(c.Servers[0].ClientURL(), "nats://"))
	nc, err := nats.Connect(proxy.url()+","+c.URLs(), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1),
		nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	b, err := newBus(t, nc, bus.Limits{Replicas: 3}, nil)
	require.NoError(t, err)

	retried := func() float64 {
		n := 0.0
		for _, r := range []string{"reconnect", "in_process", "no_responders"} {
			n += counterValue(t, "flowgate_bus_publish_retries_total", map[string]string{"reason": r})
		}
		return n
	}
	before := retried()
	var (
		wg       sync.WaitGroup
		stored   atomic.Int64
		mu       sync.Mutex
		failures []error
	)
	stop := make(chan struct{})
	for w := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n, err := publish(b, w, i)
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					continue
				}
				stored.Add(n)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	proxy.cut()
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d events stored by %s, %d tried again, %d failed (%d reconnects)",
		stored.Load(), what, int(retried()-before), len(failures), nc.Stats().Reconnects)
	if len(failures) > 0 {
		t.Fatalf("%d %s failed for the connection dropping; the first: %v", len(failures), what, failures[0])
	}
	require.Positive(t, retried()-before, "what was under way when the connection dropped was tried again")
	st, err := b.JetStream().Stream(ctx, bus.StreamEvents)
	require.NoError(t, err)
	require.Equal(t, uint64(stored.Load()), st.CachedInfo().State.Msgs, "each event stored once")
}

// TestPublishRidesOutALostConnection: on a three-node cluster, publishes
// under way when the client's connection drops (its server stopped: a
// rolling restart) are published again once the client has reconnected,
// and acknowledged: no error for the callers (no 503 at the ingress), and
// each event stored once.
func TestPublishRidesOutALostConnection(t *testing.T) {
	subject := events.InboundSubject("sandbox", "acme")
	cutUnderLoad(t, "single publishes", 8, func(b *bus.Bus, w, i int) (int64, error) {
		ev, err := bus.NewEvent(fmt.Sprintf("inbound-%d-%d", w, i), events.TypeInbound, "acme", map[string]string{"text": "hi"})
		if err == nil {
			_, err = b.Publish(context.Background(), subject, ev)
		}
		return 1, err
	})
}

// TestPublishWaitsOutAStreamWithoutLeader: a publish that no server answers
// (on a cluster: its stream is electing a leader; here the stream is
// deleted and created again) is tried again for up to
// bus.DefaultRetryWait, and acknowledged once the stream is back; past
// that wait it fails as "nothing queued", saying it was tried again.
func TestPublishWaitsOutAStreamWithoutLeader(t *testing.T) {
	_, b := start(t)
	ctx := context.Background()
	js := b.JetStream()
	cfg := eventsConfig(t, js)
	retries := func() float64 { return publishRetries(t, "no_responders") }
	subject := events.InboundSubject("sandbox", "acme")
	ev := inboundEvent(t, "inbound-1")

	require.NoError(t, js.DeleteStream(ctx, bus.StreamEvents))
	before := retries()
	back := make(chan error, 1)
	go func() {
		// Past the client's own retries of a publish nobody answered
		// (2 × 250 ms).
		time.Sleep(time.Second)
		_, err := js.CreateStream(ctx, cfg)
		back <- err
	}()
	began := time.Now()
	res, err := b.Publish(ctx, subject, ev)
	took := time.Since(began)
	require.NoError(t, <-back)
	require.NoError(t, err, "tried again until the stream answered")
	require.Equal(t, bus.StreamEvents, res.Stream)
	require.GreaterOrEqual(t, took, time.Second)
	require.Less(t, took, bus.DefaultRetryWait)
	t.Logf("acknowledged %v after the first try", took.Round(time.Millisecond))
	require.Equal(t, before+1, retries())
	st, err := js.Stream(ctx, bus.StreamEvents)
	require.NoError(t, err)
	require.Equal(t, uint64(1), st.CachedInfo().State.LastSeq, "stored once (the stream keeps no message nobody is interested in)")

	// No stream comes back: "nothing queued" after the wait.
	require.NoError(t, js.DeleteStream(ctx, bus.StreamEvents))
	ev = inboundEvent(t, "inbound-2")
	began = time.Now()
	_, err = b.Publish(ctx, subject, ev)
	took = time.Since(began)
	require.ErrorIs(t, err, bus.ErrNotQueued)
	require.NotErrorIs(t, err, bus.ErrOutcomeUnknown)
	require.ErrorContains(t, err, " tries in ")
	require.GreaterOrEqual(t, took, bus.DefaultRetryWait)
	require.Less(t, took, bus.DefaultRetryWait+1500*time.Millisecond)
	t.Logf("refused %v after the first try: %v", took.Round(time.Millisecond), err)
	require.Equal(t, before+1, retries(), "a publish that failed is not counted")
}

// TestPublishWaitsForAnEarlierTryInProcess: on a replicated stream, a
// publish whose message id an earlier try is still storing (proposed to
// the replicas, not yet applied: the try a lost connection interrupted)
// is answered "duplicate message id is in process" (409, err_code 10158).
// Publish tries it again a moment later instead of failing, and learns the
// earlier copy is stored: here many publishes of one event at once, every
// one acknowledged, the event stored once.
func TestPublishWaitsForAnEarlierTryInProcess(t *testing.T) {
	c := bustest.StartCluster(t, 3)
	ctx := context.Background()
	b, err := newBus(t, c.Connect(t), bus.Limits{Replicas: 3}, nil)
	require.NoError(t, err)
	retries := func() float64 {
		return counterValue(t, "flowgate_bus_publish_retries_total", map[string]string{"reason": "in_process"})
	}
	before := retries()
	subject := events.InboundSubject("sandbox", "acme")
	const events_, copies = 40, 16
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
		stored   atomic.Int64
	)
	for i := range events_ {
		for range copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Each its own copy of the event (Publish sets its source).
				ev, err := bus.NewEvent(fmt.Sprintf("same-%d", i), events.TypeInbound, "acme", map[string]string{"text": "hi"})
				if err != nil {
					panic(err)
				}
				res, err := b.Publish(ctx, subject, ev)
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
					return
				}
				if !res.Duplicate {
					stored.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	t.Logf("%d publishes of %d events: %d failed, %d tried again while an earlier copy was in process",
		events_*copies, events_, len(failures), int(retries()-before))
	if len(failures) > 0 {
		t.Fatalf("%d publishes failed; the first: %v", len(failures), failures[0])
	}
	require.EqualValues(t, events_, stored.Load(), "each event stored once")
}

// TestPublishAllRidesOutALostConnection: PublishAll (the orchestrator's
// bundles) publishes again the events of a batch that a dropped
// connection failed, once reconnected, and those JetStream answered "in
// process": batches under way when the connection drops are acknowledged,
// each event stored once.
func TestPublishAllRidesOutALostConnection(t *testing.T) {
	subject := events.InboundSubject("sandbox", "acme")
	cutUnderLoad(t, "batches of 16", 4, func(b *bus.Bus, w, i int) (int64, error) {
		batch := make([]bus.Outgoing, 16)
		for k := range batch {
			ev, err := bus.NewEvent(fmt.Sprintf("all-%d-%d-%d", w, i, k), events.TypeInbound, "acme", map[string]string{"text": "hi"})
			if err != nil {
				return 0, err
			}
			batch[k] = bus.Outgoing{Subject: subject, Event: ev}
		}
		return int64(len(batch)), b.PublishAll(context.Background(), batch)
	})
}

// TestPublishRetryWaitIsTheBusOwn: a bus configured with a longer retry
// wait (Config.RetryWait, as the orchestrator and the channel workers
// are) rides out a stream that answers nobody for 5.5 s — longer than
// bus.DefaultRetryWait, as a cluster's leader election often is, and than
// one try's publish timeout (5 s), which bounds each try, not the tries
// together — with Publish and PublishAll alike, where a bus with the
// default wait gives up ("nothing queued") after its 2 s. A negative wait
// is refused.
func TestPublishRetryWaitIsTheBusOwn(t *testing.T) {
	e, quick := start(t)
	patient := bustest.NewBus(t, e, bus.Config{Source: "/test-patient", RetryWait: 9 * time.Second})
	ctx := context.Background()
	js := quick.JetStream()
	cfg := eventsConfig(t, js)
	subject := events.InboundSubject("sandbox", "acme")
	event := func(id string) cloudevents.Event { return inboundEvent(t, id) }

	const gap = 5500 * time.Millisecond
	require.NoError(t, js.DeleteStream(ctx, bus.StreamEvents))
	back := make(chan error, 1)
	go func() {
		time.Sleep(gap)
		_, err := js.CreateStream(ctx, cfg)
		back <- err
	}()
	type result struct {
		err  error
		took time.Duration
	}
	run := func(publish func() error) <-chan result {
		out := make(chan result, 1)
		go func() {
			began := time.Now()
			err := publish()
			out <- result{err, time.Since(began)}
		}()
		return out
	}
	q := run(func() error { _, err := quick.Publish(ctx, subject, event("quick-1")); return err })
	p := run(func() error { _, err := patient.Publish(ctx, subject, event("patient-1")); return err })
	pa := run(func() error {
		return patient.PublishAll(ctx, []bus.Outgoing{{Subject: subject, Event: event("patient-2")}, {Subject: subject, Event: event("patient-3")}})
	})
	require.NoError(t, <-back)

	qr, pr, par := <-q, <-p, <-pa
	require.ErrorIs(t, qr.err, bus.ErrNotQueued, "the default wait is over before the stream is back")
	require.Less(t, qr.took, gap)
	require.NoError(t, pr.err, "Publish waited the stream out")
	require.GreaterOrEqual(t, pr.took, gap)
	require.NoError(t, par.err, "PublishAll waited the stream out")
	require.GreaterOrEqual(t, par.took, gap)
	t.Logf("default wait: refused after %v; RetryWait 9s: Publish acknowledged after %v, PublishAll after %v",
		qr.took.Round(time.Millisecond), pr.took.Round(time.Millisecond), par.took.Round(time.Millisecond))
	st, err := js.Stream(ctx, bus.StreamEvents)
	require.NoError(t, err)
	require.Equal(t, uint64(3), st.CachedInfo().State.Msgs, "the patient bus's three events, once each")

	nc, err := e.Connect()
	require.NoError(t, err)
	defer nc.Close()
	_, err = bus.New(ctx, nc, bus.Config{RetryWait: -time.Second})
	require.ErrorContains(t, err, "RetryWait")
}

// TestPublishTriesAgainAPublishNeverAcknowledged: a publish whose
// acknowledgement never comes (here a plain subscriber takes the first try
// and answers nothing, as a stream leader lost under it would) is tried
// again when the bus's retry wait outlasts the publish timeout, and the
// next try is stored once; with a retry wait the timeout spends, it fails
// as an outcome not known.
func TestPublishTriesAgainAPublishNeverAcknowledged(t *testing.T) {
	e, b := start(t)
	ctx := context.Background()
	js := b.JetStream()
	cfg := eventsConfig(t, js)
	subject := events.InboundSubject("sandbox", "acme")
	retries := func() float64 { return publishRetries(t, "no_ack") }
	// swallow takes the next publish on subject, answers nothing, and
	// brings the stream back.
	nc := bustest.Connect(t, e)
	swallow := func() <-chan error {
		require.NoError(t, js.DeleteStream(ctx, bus.StreamEvents))
		back := make(chan error, 1)
		var once sync.Once
		var sub *nats.Subscription
		sub, err := nc.Subscribe(subject, func(*nats.Msg) {
			once.Do(func() {
				_ = sub.Unsubscribe()
				_, err := js.CreateStream(ctx, cfg)
				back <- err
			})
		})
		require.NoError(t, err)
		require.NoError(t, nc.Flush())
		return back
	}
	event := func(id string) cloudevents.Event { return inboundEvent(t, id) }

	patient := bustest.NewBus(t, e, bus.Config{Source: "/test-patient", PublishTimeout: 300 * time.Millisecond, RetryWait: 3 * time.Second})
	back := swallow()
	before := retries()
	began := time.Now()
	_, err := patient.Publish(ctx, subject, event("no-ack-1"))
	took := time.Since(began)
	require.NoError(t, <-back)
	require.NoError(t, err, "tried again after the timeout")
	require.GreaterOrEqual(t, took, 300*time.Millisecond)
	require.Equal(t, before+1, retries())
	st, err := js.Stream(ctx, bus.StreamEvents)
	require.NoError(t, err)
	require.Equal(t, uint64(1), st.CachedInfo().State.Msgs)
	t.Logf("acknowledged %v after the first try", took.Round(time.Millisecond))

	hasty := bustest.NewBus(t, e, bus.Config{Source: "/test-hasty", PublishTimeout: 300 * time.Millisecond, RetryWait: 200 * time.Millisecond})
	back = swallow()
	_, err = hasty.Publish(ctx, subject, event("no-ack-2"))
	require.NoError(t, <-back)
	require.ErrorIs(t, err, bus.ErrOutcomeUnknown, "the timeout spent the retry wait")
	require.Equal(t, before+1, retries())
}

// eventsConfig is FLOWGATE_EVENTS's configuration, to create the stream
// again after a test deleted it.
func eventsConfig(t *testing.T, js jetstream.JetStream) jetstream.StreamConfig {
	t.Helper()
	st, err := js.Stream(context.Background(), bus.StreamEvents)
	require.NoError(t, err)
	return st.CachedInfo().Config
}

// publishRetries reads flowgate_bus_publish_retries_total for reason.
func publishRetries(t *testing.T, reason string) float64 {
	t.Helper()
	return counterValue(t, "flowgate_bus_publish_retries_total", map[string]string{"reason": reason})
}

// inboundEvent is a sandbox reply event of bot acme with id id.
func inboundEvent(t *testing.T, id string) cloudevents.Event {
	t.Helper()
	ev, err := bus.NewEvent(id, events.TypeInbound, "acme", map[string]string{"text": "hi"})
	require.NoError(t, err)
	return ev
}

// TestAckSentAgainAfterALostConnection: a message whose handler returns
// while the process's connection to NATS is lost (cut, and the server
// unreachable for 2 s) is acknowledged once the connection is back, when
// the bus's retry wait outlasts the outage: handled once, never delivered
// again, the ack's tries counted. A bus whose wait is shorter gives up on
// the ack, and the message comes again (its handler runs twice). The
// consumer's AckWait (8 s) outlasts the outage: past it the server
// delivers the message again whatever its holder does.
func TestAckSentAgainAfterALostConnection(t *testing.T) {
	e := bustest.Embedded(t, bustest.Listening)
	for _, tc := range []struct {
		name    string
		wait    time.Duration
		handled int
	}{
		{"patient", 6 * time.Second, 1},
		{"quick", 200 * time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			proxy := newCutProxy(t, strings.TrimPrefix(e.ClientURL(), "nats://"))
			b, err := bus.Connect(ctx, proxy.url(), bus.Config{Source: "/test-" + tc.name, RetryWait: tc.wait},
				nats.ReconnectWait(100*time.Millisecond))
			require.NoError(t, err)
			t.Cleanup(b.Close)
			subject := events.InboundSubject("sandbox", tc.name)
			spec := bus.ConsumerSpec{Stream: bus.StreamEvents, Durable: "ack-" + tc.name, Filters: []string{subject}, AckWait: 8 * time.Second}
			_, err = b.Publish(ctx, subject, inboundEvent(t, "ack-"+tc.name))
			require.NoError(t, err)

			counter := func(name string) func() float64 {
				labels := map[string]string{"consumer": spec.Durable}
				before := counterValue(t, name, labels)
				return func() float64 { return counterValue(t, name, labels) - before }
			}
			retries, redelivered := counter("flowgate_bus_ack_retries_total"), counter("flowgate_bus_redelivered_total")
			var handled atomic.Int64
			back := make(chan time.Time, 1)
			go func() {
				_ = b.Consume(ctx, spec, func(_ context.Context, m bus.Message) error {
					handled.Add(1)
					if m.Delivered == 1 {
						// Lost on its way back: the ack has to wait.
						proxy.refuse.Store(true)
						proxy.cut()
						go func() {
							time.Sleep(2 * time.Second)
							proxy.refuse.Store(false)
							back <- time.Now()
						}()
					}
					return nil
				}, bus.ConsumeOptions{Workers: 1})
			}()
			reachable := <-back
			if tc.handled == 1 {
				// Well past the AckWait after the outage: nothing comes again.
				time.Sleep(spec.AckWait + 2*time.Second)
				require.EqualValues(t, 1, handled.Load(), "handled once")
				require.Zero(t, redelivered(), "never delivered again")
				require.Positive(t, retries(), "the ack was sent again")
				t.Logf("acknowledged after the outage of 2 s; ack tries again: %.0f", retries())
				return
			}
			require.Eventually(t, func() bool { return handled.Load() == 2 }, 20*time.Second, 50*time.Millisecond,
				"a lost ack delivers the message again")
			require.EqualValues(t, 1, redelivered())
			t.Logf("the ack given up after %v: delivered again %v after the server was reachable", tc.wait, time.Since(reachable).Round(100*time.Millisecond))
		})
	}
}
