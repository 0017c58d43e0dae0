package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// streamSeqs is each stream's last sequence number: the messages it has
// stored since it was made (work-queue streams delete what was acked, so
// their message count does not tell).
func streamSeqs(ctx context.Context, url string) (map[string]uint64, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	l := js.ListStreams(ctx)
	for info := range l.Info() {
		out[info.Config.Name] = info.State.LastSeq
	}
	return out, l.Err()
}

// streamWrites is what the streams stored between two streamSeqs, per
// unit of work, as "NAME 0.07, …" (streams that stored nothing left out).
type streamWrites struct {
	perUnit map[string]float64
	err     string
}

func writesBetween(before, after map[string]uint64, beforeErr, afterErr error, n int) streamWrites {
	if beforeErr != nil || afterErr != nil {
		return streamWrites{err: fmt.Sprint(beforeErr, afterErr)}
	}
	w := streamWrites{perUnit: map[string]float64{}}
	for name, seq := range after {
		if d := seq - before[name]; d > 0 && n > 0 {
			w.perUnit[name] = float64(d) / float64(n)
		}
	}
	return w
}

func (w streamWrites) String() string {
	if w.err != "" {
		return "not measured (" + w.err + ")"
	}
	var names []string
	for name := range w.perUnit {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("`%s` %.3f", name, w.perUnit[name]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
