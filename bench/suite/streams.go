package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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

// counts is what a NATS server has handled so far (its monitoring
// endpoint: /varz and /jsz).
type counts struct {
	InMsgs  uint64 `json:"in_msgs"`
	OutMsgs uint64 `json:"out_msgs"`
	InBytes uint64 `json:"in_bytes"`
	API     uint64 // JetStream API requests
}

func readTraffic(monitor string) (counts, error) {
	var c counts
	if monitor == "" {
		return c, fmt.Errorf("no monitoring endpoint")
	}
	get := func(path string, into any) error {
		resp, err := httpClient.Get(monitor + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(into)
	}
	if err := get("/varz", &c); err != nil {
		return c, err
	}
	var jsz struct {
		API struct {
			Total uint64 `json:"total"`
		} `json:"api"`
	}
	if err := get("/jsz", &jsz); err != nil {
		return c, err
	}
	c.API = jsz.API.Total
	return c, nil
}

// traffic is a NATS server's traffic per unit of work over a phase.
type traffic struct {
	in, out, inBytes, api float64
	err                   string
}

func trafficBetween(a, b counts, errA, errB error, n int) traffic {
	if errA != nil || errB != nil || n <= 0 {
		return traffic{err: fmt.Sprint("before: ", errA, ", after: ", errB, ", runs: ", n)}
	}
	per := func(x, y uint64) float64 { return float64(y-x) / float64(n) }
	return traffic{in: per(a.InMsgs, b.InMsgs), out: per(a.OutMsgs, b.OutMsgs), inBytes: per(a.InBytes, b.InBytes), api: per(a.API, b.API)}
}

func (t traffic) String() string {
	if t.err != "" {
		return "not measured (" + t.err + ")"
	}
	return fmt.Sprintf("%.2f messages in (%.0f bytes), %.2f out, %.3f JetStream API requests", t.in, t.inBytes, t.out, t.api)
}
