package ingress

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
)

// countingBus records the triggers each published message carried, and
// answers at once (a publish that never blocks: nothing else would queue
// behind it).
type countingBus struct {
	mu    sync.Mutex
	sizes []int
}

func (c *countingBus) Publish(_ context.Context, _ string, e cloudevents.Event) (bus.PublishResult, error) {
	n := 1
	if e.Type() == events.TypeTriggerBatch {
		var tb events.TriggerBatch
		if err := json.Unmarshal(e.Data(), &tb); err != nil {
			return bus.PublishResult{}, err
		}
		n = len(tb.Triggers)
	}
	c.mu.Lock()
	c.sizes = append(c.sizes, n)
	c.mu.Unlock()
	return bus.PublishResult{}, nil
}

func (c *countingBus) Ping(context.Context) error { return nil }

// Requests that arrive together, as the next requests of clients answered
// together do, go out in one message although no publish is in flight
// when the first of them arrives: the first yields before it publishes,
// and the others, runnable at that moment, join it. On one P the order is
// the scheduler's: the yielding goroutine goes behind the runnable ones,
// except on the scheduler's periodic fairness tick (one schedule in 61),
// so the test asks for one message in at least one of five tries. Without
// the yield every try publishes ten messages of one trigger.
func TestTriggersArrivingTogetherShareAMessage(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	together := 0
	var last []int
	for try := range 5 {
		c := &countingBus{}
		b := newTriggerBatcher(c, 64)
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tr := &events.Trigger{ID: fmt.Sprintf("t%d-%d", try, i), BotID: "acme"}
				if err := b.publish(context.Background(), tr, []byte(`{"id":"`+tr.ID+`"}`)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		total := 0
		for _, n := range c.sizes {
			total += n
		}
		if total != 10 {
			t.Fatalf("try %d: messages carried %d triggers (%v), want 10", try, total, c.sizes)
		}
		if len(c.sizes) == 1 {
			together++
		}
		last = c.sizes
	}
	if together == 0 {
		t.Fatalf("no try published the ten triggers in one message; the last: %v", last)
	}
}
