package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
)

// channelResult is the WhatsApp worker phase: its drain rate from a
// backlog with no effective rate limit, and the pacing of an account with
// a configured rate, both measured at the provider double.
type channelResult struct {
	fastN, pacedN   int
	fastRate        float64
	pacedConfigured float64
	pacedRate       float64
	pacedMaxWindow  int
	note            string
}

const (
	waFastPhone, waPacedPhone = "200000001", "200000002"
	waToken                   = "bench-whatsapp-token-0123456789"
)

// whatsappPhase queues messages for two WhatsApp accounts while no worker
// runs, then starts `flowgate channel whatsapp` and measures, at the Cloud
// API double, how fast it drains them.
func whatsappPhase(ctx context.Context, api, natsURL string, startWorker func() (*proc, error), fastN, pacedN int, pacedRate float64) channelResult {
	res := channelResult{fastN: fastN, pacedN: pacedN, pacedConfigured: pacedRate}
	double := whatsappdouble.New(whatsappdouble.WithToken(waToken))
	defer double.Close()
	for _, b := range []struct {
		id, phone, users string
		rate             float64
		n                int
	}{{"wafast", waFastPhone, "+49151234%05d", 10000, fastN}, {"wapaced", waPacedPhone, "+49151235%05d", pacedRate, pacedN}} {
		key, err := createWhatsAppBot(api, b.id, b.phone, double.APIBase(), b.rate)
		if err != nil {
			res.note = err.Error()
			return res
		}
		body := func(i int) []byte { return []byte(`{"from":"` + fmt.Sprintf(b.users, i) + `"}`) }
		r := closedLoop(ctx, "whatsapp dispatch", 16, 2*time.Minute, b.n, func(i int) (time.Duration, bool) {
			lat, ok, _ := post(api+"/v1/bots/"+b.id+"/dispatch/PROMO", key, body(i-1), http.StatusAccepted)
			return lat, ok
		})
		if r.okCount() != b.n {
			res.note = fmt.Sprintf("%s: %d of %d dispatches accepted", b.id, r.okCount(), b.n)
			return res
		}
	}
	// Wait for the orchestrator to have queued every outbound message.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		res.note = err.Error()
		return res
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s, err := js.Stream(ctx, "FLOWGATE_OUTBOUND")
		if err == nil {
			info, err := s.Info(ctx, jetstream.WithSubjectFilter("flowgate.outbound.whatsapp.>"))
			if err == nil && len(info.State.Subjects) > 0 {
				n := 0
				for _, c := range info.State.Subjects {
					n += int(c)
				}
				if n >= fastN+pacedN {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			res.note = "the orchestrator did not queue every WhatsApp message in 3 minutes"
			return res
		}
		time.Sleep(500 * time.Millisecond)
	}
	log.Printf("whatsapp: %d messages queued; starting the worker", fastN+pacedN)
	w, err := startWorker()
	if err != nil {
		res.note = err.Error()
		return res
	}
	defer w.stop()
	deadline = time.Now().Add(3 * time.Minute)
	for double.Stats().Accepted < int64(fastN+pacedN) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
	}
	var fast, paced []time.Time
	for _, m := range double.Accepted() {
		switch m.PhoneNumberID {
		case waFastPhone:
			fast = append(fast, m.At)
		case waPacedPhone:
			paced = append(paced, m.At)
		}
	}
	if len(fast) < fastN || len(paced) < pacedN {
		res.note = fmt.Sprintf("the double accepted %d of %d and %d of %d messages in 3 minutes (stats %+v)", len(fast), fastN, len(paced), pacedN, double.Stats())
	}
	rate := func(ts []time.Time) float64 {
		if len(ts) < 2 {
			return 0
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		return float64(len(ts)-1) / ts[len(ts)-1].Sub(ts[0]).Seconds()
	}
	res.fastRate, res.pacedRate = rate(fast), rate(paced)
	j := 0
	for i := range paced {
		for paced[i].Sub(paced[j]) >= time.Second {
			j++
		}
		res.pacedMaxWindow = max(res.pacedMaxWindow, i-j+1)
	}
	return res
}

func createWhatsAppBot(api, id, phone, base string, rate float64) (string, error) {
	do := func(method, path, key string, body any) ([]byte, int, error) {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, api+path, strings.NewReader(string(raw)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := httpClient.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b, resp.StatusCode, nil
	}
	b, code, err := do(http.MethodPost, "/v1/bots", adminKey, map[string]any{"id": id, "name": id, "channels": map[string]any{
		"default_channel": "whatsapp", "whatsapp": map[string]any{"phone_number_id": phone, "access_token": waToken,
			"app_secret": "bench-app-secret-0123456789", "verify_token": "bench", "api_base": base, "rate_per_second": rate}}})
	if err != nil || code != http.StatusCreated {
		return "", fmt.Errorf("create bot %s: %d %s %v", id, code, b, err)
	}
	var created struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(b, &created); err != nil {
		return "", err
	}
	flow := map[string]any{"steps": []any{map[string]any{"id": "promo", "type": "template", "template": "promo", "language": "en_US"}}}
	for _, put := range []struct {
		path string
		body any
	}{{"/v1/bots/" + id + "/flows/promo", flow}, {"/v1/bots/" + id + "/events/PROMO", map[string]any{"flow": "promo"}}} {
		if b, code, err := do(http.MethodPut, put.path, created.APIKey, put.body); err != nil || (code != http.StatusOK && code != http.StatusCreated) {
			return "", fmt.Errorf("PUT %s: %d %s %v", put.path, code, b, err)
		}
	}
	return created.APIKey, nil
}
