package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"github.com/flowgate/flowgate/orchestrator/flow"
)

// maxHTTPResponse bounds what a flow `http` step reads.
const maxHTTPResponse = 1 << 20

// newHTTPClient returns the client of flow `http` steps. Unless
// allowPrivate, it refuses to connect to loopback, private, link-local and
// other non-public addresses — checked on the resolved address at dial
// time, so DNS tricks cannot reach internal services.
func newHTTPClient(allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return err
			}
			if !publicAddr(ap.Addr()) {
				return fmt.Errorf("address %s is not public (set FLOWGATE_HTTP_ALLOW_PRIVATE to allow)", ap.Addr())
			}
			return nil
		}
	}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		return nil
	}}
}

func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() && !a.IsLinkLocalUnicast()
}

// callHTTP performs a flow's http step and returns its result as an event.
func (o *Orchestrator) callHTTP(ctx context.Context, c flow.CallHTTP) flow.HTTPResult {
	now := func() time.Time { return time.Now().UTC() }
	if err := flow.CheckURL(c.URL, o.cfg.HTTPAllowPrivate); err != nil {
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
