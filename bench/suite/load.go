package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// sample is one request: when it started and how long it took.
type sample struct {
	at      time.Time
	latency time.Duration
	ok      bool
}

// result summarises a load phase.
type result struct {
	name     string
	samples  []sample
	errors   int
	duration time.Duration
	note     string
}

func (r result) okCount() int {
	n := 0
	for _, s := range r.samples {
		if s.ok {
			n++
		}
	}
	return n
}

func (r result) rate() float64 { return float64(r.okCount()) / r.duration.Seconds() }

// pct returns the q-quantile of the successful requests' latencies.
func (r result) pct(q float64) time.Duration {
	var ls []time.Duration
	for _, s := range r.samples {
		if s.ok {
			ls = append(ls, s.latency)
		}
	}
	if len(ls) == 0 {
		return 0
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i] < ls[j] })
	i := int(q * float64(len(ls)-1))
	return ls[i]
}

// closedLoop runs c workers, each sending its next request as soon as the
// previous one is answered, for d or until max requests.
func closedLoop(ctx context.Context, name string, c int, d time.Duration, max int, do func(i int) (time.Duration, bool)) result {
	var next atomic.Int64
	var mu sync.Mutex
	res := result{name: name}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []sample
			errs := 0
			for ctx.Err() == nil {
				i := int(next.Add(1))
				if i > max {
					break
				}
				at := time.Now()
				lat, ok := do(i)
				local = append(local, sample{at: at, latency: lat, ok: ok})
				if !ok {
					errs++
				}
			}
			mu.Lock()
			res.samples = append(res.samples, local...)
			res.errors += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.duration = time.Since(start)
	sort.Slice(res.samples, func(i, j int) bool { return res.samples[i].at.Before(res.samples[j].at) })
	return res
}

var httpClient = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     30 * time.Second,
	},
}

// post sends a JSON body and reports the latency and whether the status was want.
func post(url, key string, body []byte, want int) (time.Duration, bool, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	start := time.Now()
	resp, err := httpClient.Do(req)
	if err != nil {
		return time.Since(start), false, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lat := time.Since(start)
	if resp.StatusCode != want {
		return lat, false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, tailOf(string(b), 200))
	}
	return lat, true, nil
}

// mergeResults is the phases rs as one: their samples together, their
// durations added.
func mergeResults(rs []result) result {
	if len(rs) == 0 {
		return result{}
	}
	m := result{name: rs[0].name}
	for _, r := range rs {
		m.samples = append(m.samples, r.samples...)
		m.errors += r.errors
		m.duration += r.duration
		if m.note == "" {
			m.note = r.note
		}
	}
	sort.Slice(m.samples, func(i, j int) bool { return m.samples[i].at.Before(m.samples[j].at) })
	return m
}
