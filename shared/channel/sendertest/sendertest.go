// Package sendertest is the one test harness every channel's Sender runs
// through, in the manner of courier's handler tests: a table of outgoing
// messages with the provider request each must produce, and of provider
// answers with the classification each must get (success, permanent,
// retry-after, retryable) — plus, for every sender, the checks no table can
// forget: a network failure is retryable, and no secret of the bot's account
// (token, app secret, service-account key) appears in an error or a log line.
package sendertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/testlog"
)

// Harness describes one channel's sender.
type Harness struct {
	// NewSender builds the sender under test; it logs to log where it logs.
	NewSender func(t testing.TB, log *slog.Logger) channel.Sender
	// Bot is a bot whose account on the channel sends to the provider API
	// at apiBase (the harness's recording server).
	Bot func(apiBase string) store.Bot
	// Secrets are the values of Bot's account that must never be seen in an
	// error or a log line.
	Secrets []string
	// Aux serves the requests a send makes besides the send itself (an
	// OAuth token endpoint); it returns false for a request it does not
	// serve, which is then the send's.
	Aux func(w http.ResponseWriter, r *http.Request) bool
	// Network is the message sent by the built-in network-failure case.
	Network events.OutboundMessage
	// NetworkTo is that case's recipient.
	NetworkTo string
	// Now is the sender's clock (nil: time.Now), used for the built-in
	// cases' conversation window.
	Now func() time.Time
}

func (h Harness) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Reply is the provider's answer to the send request.
type Reply struct {
	Status int // 200 when zero
	Body   string
	Header map[string]string
}

// Request is what the provider must receive. Empty fields are not checked.
type Request struct {
	Method string
	Path   string
	// JSON is compared with the body as JSON (key order and spacing aside).
	JSON string
	// Header holds headers that must have exactly these values.
	Header map[string]string
}

// Kind is how the runner must treat a send's outcome.
type Kind string

// The outcomes of a send.
const (
	Success    Kind = ""
	Permanent  Kind = "permanent"
	RetryAfter Kind = "retry_after"
	Retryable  Kind = "retryable"
)

// Case is one message sent against one provider answer.
type Case struct {
	Name  string
	Out   events.Outbound        // the bundle (To, LastInboundAt, ...)
	Msg   events.OutboundMessage // the message of Out that is sent
	Reply Reply
	// Want is the request the provider must receive; nil: none (the
	// sender refuses before any request), unless NoRequest is false and
	// Want is nil, then the request is not checked.
	Want      *Request
	NoRequest bool

	Kind        Kind
	ID          string        // the provider message id of a Success
	Code        string        // the PermanentError or RetryAfterError code
	Unreachable bool          // PermanentError.Unreachable
	Throttled   bool          // RetryAfterError.Throttled
	Wait        time.Duration // RetryAfterError.Wait, when not zero
}

// recorder is the provider API: it records each send request and answers
// the current case's Reply.
type recorder struct {
	aux   func(http.ResponseWriter, *http.Request) bool
	mu    sync.Mutex
	reply Reply
	reqs  []recorded
}

type recorded struct {
	method, path string
	header       http.Header
	body         []byte
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rec.aux != nil && rec.aux(w, r) {
		return
	}
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, recorded{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body})
	reply := rec.reply
	rec.mu.Unlock()
	for k, v := range reply.Header {
		w.Header().Set(k, v)
	}
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "application/json")
	}
	status := reply.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reply.Body)
}

func (rec *recorder) take(reply Reply) []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.reqs
	rec.reqs = nil
	rec.reply = reply
	return out
}

// Run sends every case through a fresh sender and checks the request and
// the classification, then the built-in cases.
func Run(t *testing.T, h Harness, cases []Case) {
	t.Helper()
	var logs testlog.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := &recorder{aux: h.Aux}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	sender := h.NewSender(t, log)
	bot := h.Bot(srv.URL)

	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			rec.take(c.Reply)
			res, err := sender.Send(context.Background(), bot, c.Out, c.Msg)
			reqs := rec.take(Reply{})
			checkOutcome(t, c, res, err)
			noSecrets(t, h.Secrets, "error", errString(err))
			switch {
			case c.NoRequest:
				if len(reqs) != 0 {
					t.Fatalf("%d provider requests, want none (the sender must refuse before calling)", len(reqs))
				}
			case c.Want != nil:
				if len(reqs) != 1 {
					t.Fatalf("%d provider requests, want 1", len(reqs))
				}
				checkRequest(t, *c.Want, reqs[0])
			}
		})
	}

	t.Run("network failure is retryable and keeps secrets", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		msg := h.Network
		if msg.ID == "" {
			msg = events.OutboundMessage{ID: "net:1", Seq: 1, Content: events.Content{Type: events.ContentText, Text: "hi"}}
		}
		out := events.Outbound{BotID: "acme", RunID: "net", To: h.NetworkTo, Messages: []events.OutboundMessage{msg}}
		now := h.now()
		out.LastInboundAt = &now // inside any conversation window: the request must be tried
		_, err := sender.Send(context.Background(), h.Bot(dead.URL), out, msg)
		checkOutcome(t, Case{Kind: Retryable}, channel.Result{}, err)
		noSecrets(t, h.Secrets, "error", errString(err))
	})

	t.Run("cancelled context is not permanent", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		msg := events.OutboundMessage{ID: "ctx:1", Seq: 1, Content: events.Content{Type: events.ContentText, Text: "hi"}}
		out := events.Outbound{BotID: "acme", RunID: "ctx", To: h.NetworkTo, Messages: []events.OutboundMessage{msg}}
		now := h.now()
		out.LastInboundAt = &now
		_, err := sender.Send(ctx, bot, out, msg)
		if err == nil || channel.IsPermanent(err) {
			t.Fatalf("send with a cancelled context: %v, want a retryable error", err)
		}
	})

	t.Run("no secret in the logs", func(t *testing.T) {
		noSecrets(t, h.Secrets, "log", logs.String())
	})
}

func checkOutcome(t *testing.T, c Case, res channel.Result, err error) {
	t.Helper()
	var ra *channel.RetryAfterError
	var perm *channel.PermanentError
	switch c.Kind {
	case Success:
		if err != nil {
			t.Fatalf("send: %v, want success", err)
		}
		if c.ID != "" && res.ProviderMessageID != c.ID {
			t.Fatalf("provider message id %q, want %q", res.ProviderMessageID, c.ID)
		}
		if res.ProviderMessageID == "" {
			t.Fatalf("success without a provider message id")
		}
	case Permanent:
		if !errors.As(err, &perm) {
			t.Fatalf("error %v, want a permanent error", err)
		}
		if perm.Code != c.Code || perm.Unreachable != c.Unreachable {
			t.Fatalf("permanent %q unreachable=%v (%v), want %q unreachable=%v", perm.Code, perm.Unreachable, err, c.Code, c.Unreachable)
		}
		if errors.As(err, &ra) {
			t.Fatalf("error %v is both permanent and retry-after", err)
		}
	case RetryAfter:
		if !errors.As(err, &ra) || channel.IsPermanent(err) {
			t.Fatalf("error %v, want a retry-after error", err)
		}
		if ra.Code != c.Code || ra.Throttled != c.Throttled || (c.Wait != 0 && ra.Wait != c.Wait) || ra.Wait <= 0 {
			t.Fatalf("retry after %v code %q throttled=%v, want %v code %q throttled=%v", ra.Wait, ra.Code, ra.Throttled, c.Wait, c.Code, c.Throttled)
		}
	case Retryable:
		if err == nil || channel.IsPermanent(err) || errors.As(err, &ra) {
			t.Fatalf("error %v, want a plain retryable error", err)
		}
	default:
		t.Fatalf("unknown kind %q", c.Kind)
	}
}

func checkRequest(t *testing.T, want Request, got recorded) {
	t.Helper()
	if want.Method != "" && got.method != want.Method {
		t.Errorf("method %s, want %s", got.method, want.Method)
	}
	if want.Path != "" && got.path != want.Path {
		t.Errorf("path %s, want %s", got.path, want.Path)
	}
	for k, v := range want.Header {
		if g := got.header.Get(k); g != v {
			t.Errorf("header %s = %q, want %q", k, g, v)
		}
	}
	if want.JSON != "" {
		var w, g any
		if err := json.Unmarshal([]byte(want.JSON), &w); err != nil {
			t.Fatalf("the case's JSON is not JSON: %v", err)
		}
		if err := json.Unmarshal(got.body, &g); err != nil {
			t.Fatalf("request body is not JSON: %v\n%s", err, got.body)
		}
		wb, _ := json.Marshal(w)
		gb, _ := json.Marshal(g)
		if !bytes.Equal(wb, gb) {
			t.Errorf("request body\n got %s\nwant %s", gb, wb)
		}
	}
}

func noSecrets(t *testing.T, secrets []string, where, s string) {
	t.Helper()
	for _, secret := range secrets {
		if secret != "" && strings.Contains(s, secret) {
			t.Errorf("a secret of the account appears in the %s: %q", where, s)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
