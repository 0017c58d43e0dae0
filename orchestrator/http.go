package orchestrator

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"

	"github.com/flowgate/flowgate/orchestrator/flow"
	"github.com/flowgate/flowgate/shared/egress"
)

// maxHTTPResponse bounds what a flow `http` step reads.
const maxHTTPResponse = 1 << 20

// newHTTPClient returns the client of flow `http` steps: it follows up to
// five redirects, and the egress policy checks every hop and every address
// it connects to.
func newHTTPClient(p egress.Policy) *http.Client {
	return p.Client(egress.ClientOptions{MaxRedirects: 5, MaxIdleConnsPerHost: 16})
}

// callHTTP performs a flow's http step and returns its result as an event.
func (o *Orchestrator) callHTTP(ctx context.Context, c flow.CallHTTP) flow.HTTPResult {
	now := func() time.Time { return time.Now().UTC() }
	if err := egress.CheckURL(c.URL, o.cfg.HTTPAllowPrivate); err != nil {
		return flow.HTTPResult{Now: now(), Err: err.Error()}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = o.cfg.HTTPTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if len(c.Body) > 0 {
		body = bytes.NewReader(c.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL, body)
	if err != nil {
		return flow.HTTPResult{Now: now(), Err: err.Error()}
	}
	for k, v := range c.Headers {
		req.Header.Set(k, v)
	}
	if len(c.Body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "Flowgate")
	start := time.Now()
	resp, err := o.http.Do(req)
	httpStepSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		return flow.HTTPResult{Now: now(), Err: err.Error()}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPResponse))
	if err != nil {
		return flow.HTTPResult{Now: now(), StatusCode: resp.StatusCode, Err: err.Error()}
	}
	return flow.HTTPResult{Now: now(), StatusCode: resp.StatusCode, Body: raw}
}
