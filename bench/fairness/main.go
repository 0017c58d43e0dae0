// Command fairness measures delivery fairness in `flowgate dev` with the
// WhatsApp double (issue #14's acceptance): bot A broadcasts a one-template
// flow to -broadcast users through a number paced at -rate; while it runs,
// bot B (another number, 1,000/s) dispatches -b messages one at a time and
// bot A dispatches -singles single-user messages. It reports the dispatch
// → provider latency of B's and A's single messages (p50, p99, max), A's
// broadcast throughput against its rate, and the most bundles A's bulk lane
// held. -replicas 2 runs a second WhatsApp worker on its own NATS
// connection beside the one `flowgate dev` runs.
//
// -backpressure N instead broadcasts to N imported contacts (everyone)
// through a number paced at -rate, samples the bulk lane and the process's
// peak RSS (VmHWM: `flowgate dev`, the double and this driver together) for
// -seconds, then cancels the broadcast (-seconds 0: runs it to the end and
// reports the total time, duplicates and the trigger's counters): the lane
// must stay within the orchestrator's queue bound (FLOWGATE_BROADCAST_QUEUE
// of the rate, plus the batch under way).
//
//	go -C bench run ./fairness                  # 2,000 at 20/s, 1 and 2 worker replicas
//	go -C bench run ./fairness -replicas 1 -broadcast 600
//	go -C bench run ./fairness -backpressure 100000 -rate 80 -seconds 120
//	go -C bench run ./fairness -backpressure 100000 -rate 80 -seconds 0   # to the end (~21 min)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/events"
	wadouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
)

const admin = "bench-admin-key-0123456789"

func main() {
	broadcast := flag.Int("broadcast", 2000, "bot A's broadcast audience")
	rate := flag.Float64("rate", 20, "bot A's number's rate (messages/s)")
	nb := flag.Int("b", 50, "bot B's dispatches, one at a time")
	singles := flag.Int("singles", 20, "bot A's single-user dispatches during its broadcast")
	replicas := flag.Int("replicas", 0, "WhatsApp worker replicas (0 = 1 then 2)")
	bp := flag.Int("backpressure", 0, "instead: broadcast to this many imported contacts and sample the bulk lane and RSS")
	seconds := flag.Int("seconds", 120, "with -backpressure: how long to sample (0: run the broadcast to its end)")
	flag.Parse()
	if *bp > 0 {
		if err := backpressure(*bp, *rate, time.Duration(*seconds)*time.Second); err != nil {
			log.Fatal(err)
		}
		return
	}
	runs := []int{1, 2}
	if *replicas > 0 {
		runs = []int{*replicas}
	}
	fmt.Printf("load average at start: %s\n", loadAvg())
	for _, r := range runs {
		if err := run(*broadcast, *rate, *nb, *singles, r); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("load average at end: %s\n", loadAvg())
}

type client struct{ base, key string }

func (c client) call(method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (c client) must(method, path, body string, want int) (map[string]any, error) {
	code, b, err := c.call(method, path, body)
	if err != nil {
		return nil, err
	}
	if code != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, code, b)
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out, nil
}

func run(broadcast int, rate float64, nb, singles, replicas int) error {
	dir, err := os.MkdirTemp("", "flowgate-bench-fairness")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	wa := wadouble.New()
	defer wa.Close()
	cfg := app.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", AdminKey: admin, Logger: quiet, NoDemo: true, MetricsAddr: "off"}
	d, err := app.StartDev(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = d.Stop() }()
	if replicas > 1 {
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for range replicas - 1 {
			nc, err := d.NATS.Connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			b, err := bus.New(ctx, nc, bus.Config{Source: "/bench/replica", Logger: quiet})
			if err != nil {
				return err
			}
			go func() { _ = app.RunChannel(rctx, cfg, events.ChannelWhatsApp, d.Store, b) }()
		}
	}
	base := "http://" + d.Addr
	adm := client{base: base, key: admin}
	bot := func(id, phone string, r float64) (client, error) {
		body, _ := json.Marshal(map[string]any{"id": id, "name": id, "channels": map[string]any{
			"default_channel": "whatsapp",
			"whatsapp": map[string]any{"phone_number_id": phone, "access_token": wadouble.DefaultToken,
				"app_secret": "s", "verify_token": "v", "api_base": wa.APIBase(), "rate_per_second": r}}})
		out, err := adm.must("POST", "/v1/bots", string(body), 201)
		if err != nil {
			return client{}, err
		}
		c := client{base: base, key: out["api_key"].(string)}
		if _, err := c.must("PUT", "/v1/bots/"+id+"/flows/promo", `{"steps":[{"id":"t","type":"template","template":"promo","language":"en"}]}`, 200); err != nil {
			return c, err
		}
		_, err = c.must("PUT", "/v1/bots/"+id+"/events/PROMO", `{"flow":"promo"}`, 201)
		return c, err
	}
	const phoneA, phoneB = "100000000000001", "100000000000002"
	a, err := bot("bota", phoneA, rate)
	if err != nil {
		return err
	}
	b, err := bot("botb", phoneB, 1000)
	if err != nil {
		return err
	}
	users := make([]string, broadcast)
	for i := range users {
		users[i] = fmt.Sprintf(`"+3162%07d"`, i)
	}
	start := time.Now()
	if _, err := a.must("POST", "/v1/bots/bota/triggers", `{"flow":"promo","channel":"whatsapp","audience":{"users":[`+strings.Join(users, ",")+`]}}`, 202); err != nil {
		return err
	}
	// Sample A's bulk lane while it runs.
	var maxQueued uint64
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if q, err := d.Bus.Queued(ctx, bus.StreamOutbound, events.OutboundSubject(events.ChannelWhatsApp, "bota", events.LaneBulk)); err == nil {
				maxQueued = max(maxQueued, q)
			}
		}
	}()
	// Let the broadcast build a backlog first.
	time.Sleep(3 * time.Second)
	dispatched := map[string]time.Time{}
	var mu sync.Mutex
	dispatch := func(c client, botID, to string) error {
		mu.Lock()
		dispatched[to] = time.Now()
		mu.Unlock()
		_, err := c.must("POST", "/v1/bots/"+botID+"/dispatch/PROMO", `{"from":"`+to+`"}`, 202)
		return err
	}
	waitFor := func(to string) {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if accepted(wa, to) {
				return
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() { // B: one at a time, each after the previous one arrived, ~1/s
		defer wg.Done()
		for i := range nb {
			to := fmt.Sprintf("+3163%07d", i)
			if err := dispatch(b, "botb", to); err != nil {
				errs <- err
				return
			}
			waitFor(to)
			time.Sleep(time.Second)
		}
	}()
	go func() { // A's singles, every 2.5 s
		defer wg.Done()
		for i := range singles {
			to := fmt.Sprintf("+3164%07d", i)
			if err := dispatch(a, "bota", to); err != nil {
				errs <- err
				return
			}
			time.Sleep(2500 * time.Millisecond)
		}
	}()
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	total := broadcast + singles + nb
	for deadline := time.Now().Add(time.Duration(float64(broadcast)/rate*2)*time.Second + time.Minute); len(wa.Accepted()) < total && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	close(stopSampling)
	sampling.Wait()
	took := time.Since(start)

	var latB, latA []time.Duration
	var bcast []time.Time
	seen := map[string]int{}
	for _, m := range wa.Accepted() {
		seen[m.To]++
		switch {
		case strings.HasPrefix(m.To, "+3162"):
			bcast = append(bcast, m.Received)
		case strings.HasPrefix(m.To, "+3163"):
			latB = append(latB, m.Received.Sub(dispatched[m.To]))
		case strings.HasPrefix(m.To, "+3164"):
			latA = append(latA, m.Received.Sub(dispatched[m.To]))
		}
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	sort.Slice(bcast, func(i, j int) bool { return bcast[i].Before(bcast[j]) })
	achieved := 0.0
	if len(bcast) > 1 {
		achieved = float64(len(bcast)-1) / bcast[len(bcast)-1].Sub(bcast[0]).Seconds()
	}
	fmt.Printf("replicas %d: bot A broadcast %d at %v/s: %d sent, achieved %.2f/s (%.1f%% of the rate), took %s; bulk lane held at most %d bundles; duplicates %d\n",
		replicas, broadcast, rate, len(bcast), achieved, 100*achieved/rate, took.Round(time.Second), maxQueued, dups)
	fmt.Printf("  bot B dispatch -> provider (%d, other number): %s\n", len(latB), summary(latB))
	fmt.Printf("  bot A single-user dispatch -> provider (%d, same number, high lane): %s (bound: 1 s + one pacing interval = %s)\n",
		len(latA), summary(latA), (time.Second + time.Duration(float64(time.Second)/rate)).Round(time.Millisecond))
	return nil
}

// backpressure broadcasts to n imported contacts at rate and samples the
// bulk lane and peak RSS for d, then cancels the broadcast; with d 0 it
// runs the broadcast to its end and reports the total time, the messages
// the double accepted, the duplicates (recipients it accepted more than
// once, counted by a recording proxy in front of it) and the trigger's
// counters.
func backpressure(n int, rate float64, d time.Duration) error {
	dir, err := os.MkdirTemp("", "flowgate-bench-backpressure")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	wa := wadouble.New(wadouble.WithoutLog())
	defer wa.Close()
	rec := newRecorder(wa.URL(), wa.Client())
	proxy := httptest.NewServer(rec)
	defer proxy.Close()
	queue := 2 * time.Minute // FLOWGATE_BROADCAST_QUEUE's default
	dev, err := app.StartDev(ctx, app.Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", AdminKey: admin, Logger: quiet, NoDemo: true, MetricsAddr: "off", BroadcastQueue: queue})
	if err != nil {
		return err
	}
	defer func() { _ = dev.Stop() }()
	adm := client{base: "http://" + dev.Addr, key: admin}
	body, _ := json.Marshal(map[string]any{"id": "camp", "name": "camp", "channels": map[string]any{
		"default_channel": "whatsapp",
		"whatsapp": map[string]any{"phone_number_id": "100000000000009", "access_token": wadouble.DefaultToken,
			"app_secret": "s", "verify_token": "v", "api_base": proxy.URL + "/" + wadouble.DefaultVersion, "rate_per_second": rate}}})
	out, err := adm.must("POST", "/v1/bots", string(body), 201)
	if err != nil {
		return err
	}
	c := client{base: adm.base, key: out["api_key"].(string)}
	if _, err := c.must("PUT", "/v1/bots/camp/flows/promo", `{"steps":[{"id":"t","type":"template","template":"promo","language":"en"}]}`, 200); err != nil {
		return err
	}
	now := time.Now().UTC()
	for i := 0; i < n; i += 5000 {
		ups := make([]store.ContactUpsert, 0, 5000)
		for j := i; j < min(n, i+5000); j++ {
			ups = append(ups, store.ContactUpsert{BotID: "camp", Channel: events.ChannelWhatsApp, ExternalID: fmt.Sprintf("+3165%07d", j),
				NewID: store.NewContactID(), Now: now})
		}
		if _, _, err := dev.Store.ImportContacts(ctx, ups); err != nil {
			return err
		}
	}
	fmt.Printf("back-pressure: %d contacts imported; load average %s\n", n, loadAvg())
	res, err := c.must("POST", "/v1/bots/camp/triggers", `{"flow":"promo","channel":"whatsapp","audience":{"everyone":true}}`, 202)
	if err != nil {
		return err
	}
	id := res["trigger_id"].(string)
	subject := events.OutboundSubject(events.ChannelWhatsApp, "camp", events.LaneBulk)
	toEnd := d <= 0
	if toEnd { // twice the paced time plus ten minutes, then give up
		d = time.Duration(float64(n)/rate*2)*time.Second + 10*time.Minute
	}
	var maxQueued, maxStream uint64
	var samples int
	start := time.Now()
	next := start.Add(time.Minute)
	var tr map[string]any
	for time.Since(start) < d {
		time.Sleep(250 * time.Millisecond)
		if q, err := dev.Bus.Queued(ctx, bus.StreamOutbound, subject); err == nil {
			maxQueued = max(maxQueued, q)
			samples++
		}
		if q, err := dev.Bus.Queued(ctx, bus.StreamOutbound, events.SubjectOutbound+".>"); err == nil {
			maxStream = max(maxStream, q)
		}
		if time.Now().After(next) {
			next = next.Add(time.Minute)
			fmt.Printf("  %s: accepted %d, bulk lane max so far %d, peak RSS %s, load average %s\n",
				time.Since(start).Round(time.Second), wa.Stats().Accepted, maxQueued, peakRSS(), loadAvg())
		}
		if toEnd && wa.Stats().Accepted >= int64(n) {
			if tr, err = c.must("GET", "/v1/bots/camp/triggers/"+id, "", 200); err != nil {
				return err
			}
			t := tr["trigger"].(map[string]any)
			if t["status"] == store.TriggerDone && counter(t, "sent") >= float64(n) {
				break
			}
		}
	}
	took := time.Since(start)
	if tr, err = c.must("GET", "/v1/bots/camp/triggers/"+id, "", 200); err != nil {
		return err
	}
	t := tr["trigger"].(map[string]any)
	if !toEnd || t["status"] != store.TriggerDone {
		if _, err := c.must("POST", "/v1/bots/camp/triggers/"+id+"/cancel", "", 200); err != nil {
			fmt.Printf("  cancel: %v\n", err)
		}
	}
	counters, _ := json.Marshal(t["counters"])
	delivery, _ := json.Marshal(t["delivery"])
	bound := uint64(rate * queue.Seconds())
	accepted := wa.Stats().Accepted
	fmt.Printf("back-pressure: %d contacts, everyone, %v/s, ran %s (to the end: %v, trigger %v): bulk lane held at most %d bundles in %d samples (bound %d = %s of the rate; a batch of 1,000 may be under way), outbound stream at most %d; the double accepted %d (%.1f/s), %d recipients, duplicates %d; peak RSS %s; load average %s\n",
		n, rate, took.Round(time.Second), toEnd, t["status"], maxQueued, samples, bound, queue, maxStream, accepted, float64(accepted)/took.Seconds(), rec.recipients(), rec.duplicates(), peakRSS(), loadAvg())
	fmt.Printf("  trigger at the end: counters %s delivery %s\n", counters, delivery)
	return nil
}

func counter(t map[string]any, name string) float64 {
	c, _ := t["counters"].(map[string]any)
	v, _ := c[name].(float64)
	return v
}

// recorder forwards every request to the double and counts the
// recipients of those it accepted (2xx), so that a long run can report
// duplicates without the double's per-message log.
type recorder struct {
	target string
	client *http.Client
	mu     sync.Mutex
	seen   map[string]uint16
	dups   int
}

func newRecorder(target string, c *http.Client) *recorder {
	return &recorder{target: target, client: c, seen: map[string]uint16{}}
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, err := http.NewRequestWithContext(req.Context(), req.Method, r.target+req.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = req.Header.Clone()
	resp, err := r.client.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 {
		var m struct {
			To string `json:"to"`
		}
		if json.Unmarshal(body, &m) == nil && m.To != "" {
			r.mu.Lock()
			if r.seen[m.To]++; r.seen[m.To] > 1 {
				r.dups++
			}
			r.mu.Unlock()
		}
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

func (r *recorder) recipients() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *recorder) duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dups
}

func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "unknown"
}

func accepted(wa *wadouble.Server, to string) bool {
	for _, m := range wa.Accepted() {
		if m.To == to {
			return true
		}
	}
	return false
}

func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return fmt.Sprintf("p50 %s, p99 %s, max %s", q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return string(bytes.TrimSpace(b))
}
