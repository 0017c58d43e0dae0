// Package whatsappdouble is an in-process stand-in for the WhatsApp Business
// Cloud API send endpoint, built on httptest, for tests and benchmarks. It
// follows the WhatsApp section of providers.md: Bearer token check, request
// validation with Meta's error body, success bodies with contacts and a
// unique wamid, a per-number throughput limit answering 130429, injected
// failures for every documented code, the 24-hour window (optional), and a
// log of what it accepted. It also builds signed webhook POSTs in Meta's
// shapes. It shares no code with the sender it tests, on purpose.
package whatsappdouble

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultToken is the access token the double accepts unless WithToken says otherwise.
const DefaultToken = "double-access-token"

// DefaultVersion is the Graph API version segment APIBase uses.
const DefaultVersion = "v21.0"

// Server is a running double. Its methods are safe for concurrent use.
type Server struct {
	srv *httptest.Server

	token         string
	accountTokens map[string]string
	now           func() time.Time
	enforceWindow bool
	pairInterval  time.Duration
	templates     map[string]bool
	latency       time.Duration

	prefix   string
	seq      atomic.Uint64
	requests atomic.Int64

	mu          sync.Mutex
	rate        float64
	burst       int
	buckets     map[string]*bucket
	failNext    []int
	failTo      map[string]int
	lastInbound map[string]time.Time
	lastPair    map[string]time.Time
	accepted    []AcceptedMessage
	uploads     map[string]Upload
	uploadLog   []Upload
	keepLog     bool
	stats       Stats
}

// AcceptedMessage is one send the double accepted.
type AcceptedMessage struct {
	PhoneNumberID string
	// To is the recipient as sent.
	To string
	// Type is the message type ("text", "interactive", "template"...);
	// Subtype is interactive.type ("button", "list", "flow") when Type is interactive.
	Type    string
	Subtype string
	// Payload is the request body, byte for byte.
	Payload json.RawMessage
	At      time.Time
	WAMID   string
	// Received is when the double began handling the request and Answered
	// when it had written the success answer, both on the real clock (not
	// WithClock's): a test that kills a sender compares them with the kill.
	// Answered is zero while the answer is being written.
	Received time.Time
	Answered time.Time
}

// Map decodes the payload into a generic map.
func (m AcceptedMessage) Map() map[string]any {
	var v map[string]any
	_ = json.Unmarshal(m.Payload, &v)
	return v
}

// Stats counts what the double answered.
type Stats struct {
	Requests int64
	Accepted int64
	// Rejected counts error answers by Cloud API error code.
	Rejected map[int]int64
}

// Option configures a Server.
type Option func(*Server)

// WithToken sets the access token every phone number id accepts.
func WithToken(token string) Option { return func(s *Server) { s.token = token } }

// WithAccountToken sets the access token of one phone number id.
func WithAccountToken(phoneNumberID, token string) Option {
	return func(s *Server) { s.accountTokens[phoneNumberID] = token }
}

// WithRate limits each phone number id to perSecond requests with bursts
// of burst (a token bucket); requests above it get 130429. perSecond <= 0
// means unlimited, the default. Every authenticated request takes a token,
// whatever its outcome. With burst 1 a sender paced exactly at perSecond
// can still be refused now and then by network jitter; a burst of a few
// tenths of a second of traffic absorbs it.
func WithRate(perSecond float64, burst int) Option {
	return func(s *Server) { s.rate, s.burst = perSecond, max(burst, 1) }
}

// WithClock sets the clock for the window, the pair rate and the log. The
// throughput limit always uses the real clock.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithWindowEnforcement makes the double answer 131047 to free-form
// messages for recipients that did not write (UserWrote) in the last 24 h.
func WithWindowEnforcement() Option { return func(s *Server) { s.enforceWindow = true } }

// WithPairRateLimit answers 131056 when one phone number id sends to the
// same recipient again within interval (Meta: about one per 6 s).
func WithPairRateLimit(interval time.Duration) Option {
	return func(s *Server) { s.pairInterval = interval }
}

// WithTemplates restricts templates to these names; others get 132001.
// Without it every template name is accepted.
func WithTemplates(names ...string) Option {
	return func(s *Server) {
		s.templates = map[string]bool{}
		for _, n := range names {
			s.templates[n] = true
		}
	}
}

// WithLatency makes every answer take at least d (a provider's round
// trip): the handler sleeps d before answering.
func WithLatency(d time.Duration) Option { return func(s *Server) { s.latency = d } }

// WithoutLog keeps counters but no accepted-message log (long benchmarks).
func WithoutLog() Option { return func(s *Server) { s.keepLog = false } }

// New starts a double.
func New(opts ...Option) *Server {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	s := &Server{
		token:         DefaultToken,
		accountTokens: map[string]string{},
		now:           time.Now,
		prefix:        strings.ToUpper(hex.EncodeToString(b)),
		buckets:       map[string]*bucket{},
		failTo:        map[string]int{},
		lastInbound:   map[string]time.Time{},
		lastPair:      map[string]time.Time{},
		uploads:       map[string]Upload{},
		keepLog:       true,
		stats:         Stats{Rejected: map[int]int64{}},
	}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// URL is the server's root URL.
func (s *Server) URL() string { return s.srv.URL }

// APIBase is the URL to configure as the Cloud API base: URL()/v21.0.
func (s *Server) APIBase() string { return s.srv.URL + "/" + DefaultVersion }

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// SetAccountToken rotates the access token of one phone number id: from
// now on only token is accepted for it, and the old one gets 190.
func (s *Server) SetAccountToken(phoneNumberID, token string) {
	s.mu.Lock()
	s.accountTokens[phoneNumberID] = token
	s.mu.Unlock()
}

// SetRate changes the throughput limit at run time (perSecond <= 0: unlimited).
func (s *Server) SetRate(perSecond float64, burst int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rate, s.burst = perSecond, max(burst, 1)
	s.buckets = map[string]*bucket{}
}

// FailNext makes the next n valid sends fail with Cloud API error code.
func (s *Server) FailNext(n, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failNext = append(s.failNext, code)
	}
}

// FailRecipient makes every send to recipient fail with code, until ClearFailures.
func (s *Server) FailRecipient(recipient string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failTo[normalize(recipient)] = code
}

// ClearFailures removes every injected failure.
func (s *Server) ClearFailures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = nil
	s.failTo = map[string]int{}
}

// UserWrote records that recipient wrote at t, opening the 24-hour window.
func (s *Server) UserWrote(recipient string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastInbound[normalize(recipient)] = t
}

// Accepted returns a copy of the accepted-message log, in acceptance order.
func (s *Server) Accepted() []AcceptedMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AcceptedMessage(nil), s.accepted...)
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Requests = s.requests.Load()
	st.Rejected = make(map[int]int64, len(s.stats.Rejected))
	for k, v := range s.stats.Rejected {
		st.Rejected[k] = v
	}
	return st
}

// Reset clears the log and the counters (failures, windows and rate stay).
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted = nil
	s.stats = Stats{Rejected: map[int]int64{}}
	s.requests.Store(0)
}

// normalize drops a leading "+" so that "+316..." and "316..." are one user.
func normalize(n string) string { return strings.TrimPrefix(n, "+") }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	s.requests.Add(1)
	if s.latency > 0 {
		time.Sleep(s.latency)
	}

	version, phone, tail, ok := apiPath(r.URL.Path)
	if !ok || !validVersion(version) {
		s.fail(w, http.StatusNotFound, 100, "Unknown path components: "+r.URL.Path, "")
		return
	}
	if r.Method != http.MethodPost {
		s.fail(w, http.StatusMethodNotAllowed, 100, "Unsupported "+r.Method+" request", "")
		return
	}
	s.mu.Lock()
	want := s.token
	if t, ok := s.accountTokens[phone]; ok {
		want = t
	}
	s.mu.Unlock()
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" || tok != want {
		s.failCode(w, 190, "")
		return
	}
	if !s.allow(phone) {
		s.failCode(w, 130429, "")
		return
	}
	if tail == "media" {
		s.serveUpload(w, r, phone)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.fail(w, http.StatusBadRequest, 100, "Invalid request body", err.Error())
		return
	}
	req, verr := validate(body, s.templates)
	if verr != nil {
		s.fail(w, statusOf(verr.code), verr.code, messageOf(verr.code), verr.details)
		return
	}
	to := normalize(req.To)
	now := s.now()
	if verr := s.checkMediaIDs(phone, req, now); verr != nil {
		s.fail(w, statusOf(verr.code), verr.code, messageOf(verr.code), verr.details)
		return
	}

	s.mu.Lock()
	code := 0
	switch {
	case len(s.failNext) > 0:
		code, s.failNext = s.failNext[0], s.failNext[1:]
	case s.failTo[to] != 0:
		code = s.failTo[to]
	case s.enforceWindow && req.Type != "template" && !inWindow(s.lastInbound, to, now):
		code = 131047
	case s.pairInterval > 0 && now.Sub(s.lastPair[phone+"|"+to]) < s.pairInterval:
		code = 131056
	}
	if code != 0 {
		s.mu.Unlock()
		s.failCode(w, code, "")
		return
	}
	if s.pairInterval > 0 {
		s.lastPair[phone+"|"+to] = now
	}
	wamid := s.wamid()
	logIx := -1
	if s.keepLog {
		m := AcceptedMessage{PhoneNumberID: phone, To: req.To, Type: req.Type, Payload: body, At: now, WAMID: wamid, Received: received}
		if req.Interactive != nil {
			m.Subtype = req.Interactive.Type
		}
		logIx = len(s.accepted)
		s.accepted = append(s.accepted, m)
	}
	s.stats.Accepted++
	s.mu.Unlock()

	// validate checked that to is "+" and digits: no JSON escaping needed.
	out := make([]byte, 0, 192)
	out = append(out, `{"messaging_product":"whatsapp","contacts":[{"input":"`...)
	out = append(out, req.To...)
	out = append(out, `","wa_id":"`...)
	out = append(out, to...)
	out = append(out, `"}],"messages":[{"id":"`...)
	out = append(out, wamid...)
	out = append(out, '"')
	if req.Type == "template" {
		out = append(out, `,"message_status":"accepted"`...)
	}
	out = append(out, "}]}"...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
	if logIx >= 0 {
		answered := time.Now()
		s.mu.Lock()
		if logIx < len(s.accepted) && s.accepted[logIx].WAMID == wamid {
			s.accepted[logIx].Answered = answered
		}
		s.mu.Unlock()
	}
}

// wamid is a new message id: "wamid.HBgL", the double's prefix and a
// 16-digit hexadecimal sequence number.
func (s *Server) wamid() string {
	var b [64]byte
	out := append(b[:0], "wamid.HBgL"...)
	out = append(out, s.prefix...)
	n := s.seq.Add(1)
	const hexDigits = "0123456789ABCDEF"
	for i := 60; i >= 0; i -= 4 {
		out = append(out, hexDigits[(n>>uint(i))&0xF])
	}
	return string(out)
}

// apiPath splits "/{version}/{phone_number_id}/messages" and
// "/{version}/{phone_number_id}/media".
func apiPath(p string) (version, phone, tail string, ok bool) {
	p = strings.Trim(p, "/")
	version, rest, ok1 := strings.Cut(p, "/")
	phone, tail, ok2 := strings.Cut(rest, "/")
	if !ok1 || !ok2 || phone == "" || (tail != "messages" && tail != "media") {
		return "", "", "", false
	}
	return version, phone, tail, true
}

func inWindow(last map[string]time.Time, to string, now time.Time) bool {
	t, ok := last[to]
	return ok && now.Sub(t) < 24*time.Hour
}

func validVersion(v string) bool {
	if len(v) < 4 || v[0] != 'v' {
		return false
	}
	major, minor, ok := strings.Cut(v[1:], ".")
	return ok && digits(major) && digits(minor)
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// failCode answers a Cloud API error with the code's documented status and message.
func (s *Server) failCode(w http.ResponseWriter, code int, details string) {
	if details == "" {
		details = detailsOf(code)
	}
	s.fail(w, statusOf(code), code, messageOf(code), details)
}

func (s *Server) fail(w http.ResponseWriter, status, code int, message, details string) {
	s.mu.Lock()
	s.stats.Rejected[code]++
	s.mu.Unlock()
	body := errorBody{}
	body.Error.Message = message
	body.Error.Type = "OAuthException"
	body.Error.Code = code
	body.Error.ErrorData.MessagingProduct = "whatsapp"
	body.Error.ErrorData.Details = details
	body.Error.FBTraceID = "A" + s.prefix + fmt.Sprint(s.seq.Add(1))
	w.Header().Set("Content-Type", "application/json")
	if code == 190 {
		w.Header().Set("WWW-Authenticate", `OAuth "Facebook Platform" "invalid_token" "Error validating access token"`)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// errorBody is the Cloud API error shape of providers.md.
type errorBody struct {
	Error struct {
		Message   string `json:"message"`
		Type      string `json:"type"`
		Code      int    `json:"code"`
		ErrorData struct {
			MessagingProduct string `json:"messaging_product"`
			Details          string `json:"details"`
		} `json:"error_data"`
		FBTraceID string `json:"fbtrace_id"`
	} `json:"error"`
}
