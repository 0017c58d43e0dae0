package orchestrator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A launch that panics (a bug) fails the batches it carried, with the
// panic as their error, and the next launches go on: the process survives
// it and the slot is free again.
func TestLaunchGroupsSurviveAPanic(t *testing.T) {
	ctx := context.Background()
	calls := 0
	var mu sync.Mutex
	g := newLaunchGroups(func(_ context.Context, fs []*fanOut) ([]error, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			panic("boom")
		}
		errs := make([]error, len(fs))
		errs[0] = errors.New("first checkpoint refused")
		return errs, nil
	})
	fs := []*fanOut{{}, {}}
	require.ErrorContains(t, g.start(ctx, fs, []string{"a", "b"}), "launch panic: boom")
	require.ErrorContains(t, g.start(ctx, fs, []string{"a", "b"}), "first checkpoint refused", "a fan-out's own error")
	waitSlotsFree(t, g)
	g.mu.Lock()
	defer g.mu.Unlock()
	require.Empty(t, g.queue)
}

// waitSlotsFree waits until no launch goroutine holds a slot: a launch
// answers its batches before its goroutine looks at the queue again,
// finds it empty and frees the slot.
func waitSlotsFree(t testing.TB, g *launchGroups) {
	t.Helper()
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.running == 0
	}, 10*time.Second, time.Millisecond, "the launch slots are free again")
}

// A launch that answers fewer errors than it had fan-outs fails its
// batches rather than answering some of them with another's error.
func TestLaunchGroupsRefuseAShortAnswer(t *testing.T) {
	g := newLaunchGroups(func(_ context.Context, fs []*fanOut) ([]error, error) {
		return make([]error, len(fs)-1), nil
	})
	require.ErrorContains(t, g.start(context.Background(), []*fanOut{{}, {}}, []string{"a", "b"}), "launch of 2 triggers answered 1")
}
