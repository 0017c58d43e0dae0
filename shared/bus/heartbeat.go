package bus

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// holder tells JetStream that this process is still working on the
// messages it holds (fetched and queued for a worker, or being handled),
// every quarter of AckWait. A live process so never loses a message to
// AckWait, whatever its backlog or the length of a handler, and a dead
// one's messages are redelivered one AckWait after its last heartbeat:
// that is what lets a consumer have a short AckWait (a restarted
// orchestrator resumes a fan-out within seconds).
type holder struct {
	every time.Duration
	mu    sync.Mutex
	since map[jetstream.Msg]time.Time
}

func newHolder(ackWait time.Duration) *holder {
	return &holder{every: max(ackWait/4, 50*time.Millisecond), since: make(map[jetstream.Msg]time.Time)}
}

func (h *holder) add(raw jetstream.Msg) {
	h.mu.Lock()
	h.since[raw] = time.Now()
	h.mu.Unlock()
}

func (h *holder) done(raw jetstream.Msg) {
	h.mu.Lock()
	delete(h.since, raw)
	h.mu.Unlock()
}

// run sends the heartbeats until stop is closed.
func (h *holder) run(stop <-chan struct{}) {
	t := time.NewTicker(h.every)
	defer t.Stop()
	var due []jetstream.Msg
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			due = due[:0]
			h.mu.Lock()
			for raw, at := range h.since {
				if now.Sub(at) >= h.every {
					h.since[raw] = now
					due = append(due, raw)
				}
			}
			h.mu.Unlock()
			for _, raw := range due {
				_ = raw.InProgress()
			}
		}
	}
}
