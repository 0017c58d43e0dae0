package pacer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/channel/pacer"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/testclock"
)

// virtualClock is a discrete-event clock shared by every replica of a
// test: time moves only when every participating goroutine sleeps, and
// then straight to the earliest wake-up. Sends therefore happen exactly at
// the slots the pacers hand out, whatever the machine's load, so rates can
// be asserted exactly. The pacers' KV state stays in a real NATS server:
// the replicas really share it with compare-and-set.
type virtualClock struct {
	mu       sync.Mutex
	cond     *sync.Cond
	now      time.Time
	active   int // goroutines taking part
	sleepers []*sleeper
}

type sleeper struct {
	wake  time.Time
	awake bool
}

func newVirtualClock(start time.Time) *virtualClock {
	c := &virtualClock{now: start}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *virtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep blocks until the clock reached now+d. Context cancellation is not
// observed: the participants stop by the virtual time instead.
func (c *virtualClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &sleeper{wake: c.now.Add(d)}
	c.sleepers = append(c.sleepers, s)
	c.cond.Broadcast()
	for !s.awake {
		c.cond.Wait()
	}
	return nil
}

// run starts n participants, each calling work until it returns false,
// and moves the clock until all of them returned.
func (c *virtualClock) run(n int, work func(i int) bool) {
	c.mu.Lock()
	c.active = n
	c.mu.Unlock()
	for i := range n {
		go func() {
			for work(i) {
			}
			c.mu.Lock()
			c.active--
			c.cond.Broadcast()
			c.mu.Unlock()
		}()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for c.active > 0 && len(c.sleepers) < c.active {
			c.cond.Wait()
		}
		if c.active == 0 {
			return
		}
		// Everyone sleeps: jump to the earliest wake-up and wake every
		// sleeper due then (before they run, so that none is counted twice).
		next := c.sleepers[0].wake
		for _, s := range c.sleepers[1:] {
			if s.wake.Before(next) {
				next = s.wake
			}
		}
		c.now = maxTime(c.now, next)
		rest := c.sleepers[:0]
		for _, s := range c.sleepers {
			if s.wake.After(c.now) {
				rest = append(rest, s)
				continue
			}
			s.awake = true
		}
		c.sleepers = rest
		c.cond.Broadcast()
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sends is what a virtual-clock run recorded: each send's time, by replica
// and by the label the waiter gave it (account, recipient).
type sends struct {
	mu        sync.Mutex
	all       []time.Time
	byReplica map[int]int
	byLabel   map[string][]time.Time
}

func (s *sends) add(replica int, label string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, at)
	s.byReplica[replica]++
	s.byLabel[label] = append(s.byLabel[label], at)
}

// waitFunc is one paced send of a worker of replica; it returns a label
// to group the sends by.
type waitFunc func(p *pacer.Pacer, replica, worker int) (string, error)

// paceVirtually runs one pacer per entry of workers (one KV bucket, one
// virtual clock), replica r with workers[r] goroutines calling wait in a
// loop for span of virtual time, and returns every send.
func paceVirtually(t *testing.T, cfg pacer.Config, workers []int, span time.Duration, wait waitFunc) *sends {
	t.Helper()
	js := startJS(t)
	clock := newVirtualClock(testclock.Date(2026, 1, 2, 3, 4, 5))
	cfg.Now, cfg.Sleep = clock.Now, clock.Sleep
	type worker struct{ replica, n int }
	var ws []worker
	ps := make([]*pacer.Pacer, len(workers))
	for r, n := range workers {
		ps[r] = newPacer(t, js, cfg)
		for i := range n {
			ws = append(ws, worker{r, i})
		}
	}
	end := clock.Now().Add(span)
	out := &sends{byReplica: map[int]int{}, byLabel: map[string][]time.Time{}}
	clock.run(len(ws), func(i int) bool {
		w := ws[i]
		label, err := wait(ps[w.replica], w.replica, w.n)
		if err != nil {
			t.Errorf("wait: %v", err)
			return false
		}
		at := clock.Now()
		if !at.Before(end) {
			return false
		}
		out.add(w.replica, label, at)
		return true
	})
	return out
}

// Two replicas of a WhatsApp worker (separate pacers on one KV bucket) send
// from one number at its configured rate: over 10 s of virtual time they
// achieve the rate less its 2% headroom, no one-second window holds more
// than the rate, and both replicas send. The real-time counterparts
// (TestWhatsAppTwoReplicasAt80PerSecond, bench/channels) send through the
// runner and the double, where timing depends on the machine's load.
func TestTwoReplicasPaceOneNumberAt80PerSecond(t *testing.T) { twoReplicasPace(t, 80) }

func TestTwoReplicasPaceOneNumberAt1000PerSecond(t *testing.T) { twoReplicasPace(t, 1000) }

func twoReplicasPace(t *testing.T, rate float64) {
	const span = 10 * time.Second
	const phone = "106540352242922"
	bot := store.Bot{ID: "pace", Channels: store.ChannelAccounts{WhatsApp: &store.WhatsAppAccount{PhoneNumberID: phone, RatePerSecond: rate}}}
	s := paceVirtually(t, pacer.Config{Channel: events.ChannelWhatsApp}, []int{8, 8}, span, func(p *pacer.Pacer, _, _ int) (string, error) {
		return phone, p.WaitMessage(context.Background(), bot, phone, events.Outbound{To: "+34600000000"})
	})
	got := float64(len(s.all)) / span.Seconds()
	t.Logf("two replicas at %v/s, %s of virtual time: %d sends = %.2f/s; by replica %v; max in any 1 s %d, in any 100 ms %d",
		rate, span, len(s.all), got, s.byReplica, maxIn(s.all, time.Second), maxIn(s.all, 100*time.Millisecond))
	requireRate(t, s.all, rate, span)
	for r := range 2 {
		require.Greater(t, s.byReplica[r], len(s.all)/10, "replica %d sent its share", r)
	}
}

// requireRate: over span, the sends achieved the configured rate less the
// 2% headroom (plus the 20 ms of burst a key may catch up on at its
// start), and no one-second window holds more than the rate.
func requireRate(t *testing.T, ts []time.Time, rate float64, span time.Duration) {
	t.Helper()
	got := float64(len(ts)) / span.Seconds()
	require.InDelta(t, rate*0.98, got, rate*0.005+1/span.Seconds()+0.01, "achieved rate")
	require.LessOrEqual(t, maxIn(ts, time.Second), int(rate), "never above the rate in any second")
}
