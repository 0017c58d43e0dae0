package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Bounds of a launch group (launchGroups).
const (
	// maxLaunchGroups is how many groups start at once: with the trigger
	// consumer's 32 workers busy, each group gathers several batches.
	maxLaunchGroups = 4
	// maxLaunchTriggers bounds the triggers of one group (a larger batch
	// of the ingress, FLOWGATE_TRIGGER_BATCH allows 256, is a group of its
	// own).
	maxLaunchTriggers = 128
)

// launchGroups starts the fresh one-user triggers of the trigger batches
// handled at the same time as one launch (launchTogether): the batches
// that arrive while maxLaunchGroups launches are under way wait, and the
// next launch takes all of them it can (up to maxLaunchTriggers, no user
// twice). So under load the runs of several batches share each store
// write and each outbound message (up to maxBundlesPerMessage bundles,
// where a batch of the ingress brings about 14), and a lone batch starts
// at once, as before.
//
// A batch waits for the launch that carries its triggers, whatever its
// context does: its message is acknowledged only after its runs are
// stored and published. A launch's failure is each of its batches'
// failure: every one is redelivered, and its triggers, stored by then,
// each go their own way (launchBatch's recovery path), as after a crash.
type launchGroups struct {
	launch func(ctx context.Context, fs []*fanOut) ([]error, error)
	// groups and triggers: maxLaunchGroups and maxLaunchTriggers (tests
	// set others).
	groups, triggers int

	mu      sync.Mutex
	queue   []*launchRequest
	running int
	// queued, when set, is called with the queue's length after a batch
	// joined it (tests).
	queued func(n int)
}

// launchRequest is one batch's triggers waiting for a launch.
type launchRequest struct {
	ctx  context.Context
	fs   []*fanOut
	keys []string // startsWithOthers's, one per fan-out
	err  error    // once done: the launch's, or its fan-outs' joined
	done chan struct{}
}

func newLaunchGroups(launch func(ctx context.Context, fs []*fanOut) ([]error, error)) *launchGroups {
	return &launchGroups{launch: launch, groups: maxLaunchGroups, triggers: maxLaunchTriggers}
}

// start launches fs (whose users, keys, are distinct) with the batches
// waiting beside it and returns the launch's error or, when the launch was
// done, its fan-outs' (their checkpoints').
func (g *launchGroups) start(ctx context.Context, fs []*fanOut, keys []string) error {
	if len(fs) == 0 {
		return nil
	}
	r := &launchRequest{ctx: ctx, fs: fs, keys: keys, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if g.queued != nil {
		g.queued(len(g.queue))
	}
	if g.running < g.groups {
		g.running++
		go g.run()
	}
	g.mu.Unlock()
	<-r.done
	return r.err
}

// run launches groups until none waits.
func (g *launchGroups) run() {
	for {
		g.mu.Lock()
		group := g.take()
		if len(group) == 0 {
			g.running--
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.launchGroup(group)
	}
}

// take removes from the queue, in order, the requests of the next group:
// the first one, and each next one that names none of the group's users
// and keeps it within g.triggers. A request left behind waits for a later
// group, so a user's later trigger still starts after the earlier one.
// Called with g.mu held.
func (g *launchGroups) take() []*launchRequest {
	if len(g.queue) == 0 {
		return nil
	}
	var group []*launchRequest
	users := map[string]bool{}
	n := 0
	rest := g.queue[:0]
	blocked := false
	for _, r := range g.queue {
		ok := !blocked && (len(group) == 0 || n+len(r.fs) <= g.triggers)
		for _, k := range r.keys {
			if ok && users[k] {
				ok = false
			}
		}
		if !ok {
			// Nothing after a request left behind joins the group either:
			// batches keep their order.
			blocked = true
			rest = append(rest, r)
			continue
		}
		for _, k := range r.keys {
			users[k] = true
		}
		n += len(r.fs)
		group = append(group, r)
	}
	clear(g.queue[len(rest):])
	g.queue = rest
	return group
}

// launchGroup launches the requests' fan-outs as one and hands each its
// errors.
func (g *launchGroups) launchGroup(group []*launchRequest) {
	var fs []*fanOut
	for _, r := range group {
		fs = append(fs, r.fs...)
	}
	launches.Inc()
	launchedTriggers.Add(float64(len(fs)))
	errs, err := g.safeLaunch(group[0].ctx, fs)
	i := 0
	for _, r := range group {
		if r.err = err; err == nil {
			r.err = errors.Join(errs[i : i+len(r.fs)]...)
		}
		i += len(r.fs)
		close(r.done)
	}
}

// safeLaunch calls g.launch and turns a panic (a bug) into the launch's
// error, as the bus does for a handler: a launch runs on a goroutine of
// its own, where a panic would end the process.
func (g *launchGroups) safeLaunch(ctx context.Context, fs []*fanOut) (errs []error, err error) {
	defer func() {
		if r := recover(); r != nil {
			errs, err = nil, fmt.Errorf("launch panic: %v", r)
		}
	}()
	errs, err = g.launch(ctx, fs)
	if err == nil && len(errs) != len(fs) {
		err = fmt.Errorf("launch of %d triggers answered %d", len(fs), len(errs))
	}
	return errs, err
}
