// Package apitest calls a running Flowgate's HTTP API as its users do: one
// client for the end-to-end tests, the deploy tests and the benchmarks.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// Client sends requests to one Flowgate.
type Client struct {
	// Base is the server's URL, e.g. "http://127.0.0.1:8080".
	Base string
	// HTTP sends the requests (nil: http.DefaultClient).
	HTTP *http.Client
	// Timeout bounds each request (0: no bound beyond HTTP's).
	Timeout time.Duration
}

// Do sends method path. body is nil or empty (no body), a string or []byte
// (sent as it is) or any other value (sent as JSON); a body goes with
// Content-Type: application/json. key, when not "", is sent as a bearer
// token, and hdr as name, value pairs (set last). err is only for a request
// that got no answer; any status is returned as it is.
func (c Client) Do(method, path, key string, body any, hdr ...string) (int, []byte, error) {
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return 0, nil, fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
	}
	ctx := context.Background()
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, bytes.NewReader(raw))
	if err != nil {
		return 0, nil, err
	}
	if len(raw) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, b, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	return resp.StatusCode, b, nil
}

// Expect is Do for an answer with one of the statuses want (none given:
// any 2xx): another status is an error that quotes the answer. A JSON
// answer is decoded into out (when not nil).
func (c Client) Expect(method, path, key string, body, out any, want ...int) ([]byte, error) {
	code, b, err := c.Do(method, path, key, body)
	if err != nil {
		return nil, err
	}
	ok := len(want) == 0 && code >= 200 && code < 300
	for _, w := range want {
		ok = ok || code == w
	}
	if !ok {
		return b, fmt.Errorf("%s %s: status %d: %s", method, path, code, b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return b, fmt.Errorf("%s %s: decode answer: %w: %s", method, path, err, b)
		}
	}
	return b, nil
}

// CreateBot creates a bot (bot: its JSON, e.g. {"id":"acme","name":"Acme"})
// with the admin key and returns the bot's API key.
func (c Client) CreateBot(adminKey string, bot any) (string, error) {
	var created struct {
		APIKey string `json:"api_key"`
	}
	if _, err := c.Expect(http.MethodPost, "/v1/bots", adminKey, bot, &created, http.StatusCreated); err != nil {
		return "", err
	}
	if created.APIKey == "" {
		return "", fmt.Errorf("POST /v1/bots: no api_key in the answer")
	}
	return created.APIKey, nil
}

// Call is Do in a test: a request that gets no answer fails the test.
func (c Client) Call(t testing.TB, method, path, key string, body any, hdr ...string) (int, []byte) {
	t.Helper()
	code, b, err := c.Do(method, path, key, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return code, b
}
