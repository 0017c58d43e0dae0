// Package rcsdouble is an in-process Google RCS Business Messaging server
// for tests and benchmarks: an OAuth2 token endpoint that checks JWT-bearer
// grants signed with service-account keys it generated, agentMessages and
// capabilities with bearer checks, request validation with Google's error
// bodies, numbers that are not RCS-capable (404 NOT_FOUND), per-agent rate
// limits (429 RESOURCE_EXHAUSTED), messageId idempotency, and a log of what
// it accepted; plus builders for signed webhook envelopes.
package rcsdouble

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Rate allows N accepted messages in any sliding Window. N == 0 is unlimited.
type Rate struct {
	N      int
	Window time.Duration
}

// Failure is an error answer the double can be told to give.
type Failure struct {
	Code    int    // HTTP status and error.code
	Status  string // error.status, e.g. "INTERNAL"
	Message string
	// RetryAfter, when positive, is sent as a Retry-After header (seconds).
	RetryAfter int
}

// Suggestion is a suggested reply or action as accepted.
type Suggestion struct {
	Text         string
	PostbackData string
	// URL is the openUrlAction's url for actions.
	URL string
}

// Accepted is one agent message the double accepted.
type Accepted struct {
	AgentID   string
	Phone     string
	MessageID string
	At        time.Time
	// Body is the request body as received.
	Body json.RawMessage
	// Text, or the rich card's Title, Description and FileURL.
	Text        string
	Title       string
	Description string
	FileURL     string
	// Suggestions of the message, or of the rich card.
	Suggestions []Suggestion
}

// Counters count the double's answers.
type Counters struct {
	TokenRequests    int64
	TokensIssued     int64
	Requests         int64
	Accepted         int64
	Duplicates       int64
	RateLimited      int64
	NotFound         int64
	InvalidArgument  int64
	Unauthenticated  int64
	PermissionDenied int64
	Injected         int64
	Capabilities     int64
}

type serviceAccount struct {
	email  string
	pub    *rsa.PublicKey
	agents map[string]bool
}

type issuedToken struct {
	sa     *serviceAccount
	expiry time.Time
}

// Server is the RBM double. Create it with New or Start.
type Server struct {
	// URL is the API base (store.RCSAccount.APIBase); TokenURL the OAuth2
	// token endpoint the generated keys name as token_uri.
	URL      string
	TokenURL string

	srv *httptest.Server

	mu               sync.Mutex
	keys             map[string]*serviceAccount // by private_key_id
	tokens           map[string]issuedToken
	tokenLifetime    time.Duration
	notCapable       map[string]bool
	defaultRate      Rate
	agentRates       map[string]Rate
	recent           map[string][]time.Time
	retryAfterHeader int
	seen             map[string]bool // agent + "/" + messageId
	failNext         []Failure
	accepted         []Accepted
	counters         Counters
	nextToken        int64
}

// Option configures a Server.
type Option func(*Server)

// WithTokenLifetime sets expires_in of issued tokens (default 1h).
func WithTokenLifetime(d time.Duration) Option { return func(s *Server) { s.tokenLifetime = d } }

// WithRate limits every agent (default unlimited: RBM publishes no figure).
func WithRate(r Rate) Option { return func(s *Server) { s.defaultRate = r } }

// WithRetryAfterHeader adds Retry-After: secs to 429 answers (default none:
// RBM's 429 body is not documented to carry one).
func WithRetryAfterHeader(secs int) Option { return func(s *Server) { s.retryAfterHeader = secs } }

// New starts a double; Close it when done.
func New(opts ...Option) *Server {
	s := &Server{
		keys:          map[string]*serviceAccount{},
		tokens:        map[string]issuedToken{},
		tokenLifetime: time.Hour,
		notCapable:    map[string]bool{},
		agentRates:    map[string]Rate{},
		recent:        map[string][]time.Time{},
		seen:          map[string]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	s.TokenURL = s.srv.URL + "/token"
	return s
}

// Start is New plus tb.Cleanup(Close).
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := New(opts...)
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetNotCapable marks a phone number as not RCS-capable (404 NOT_FOUND).
func (s *Server) SetNotCapable(phone string, notCapable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notCapable[phone] = notCapable
}

// SetAgentRate sets one agent's rate limit.
func (s *Server) SetAgentRate(agentID string, r Rate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.agentRates[agentID] = r
}

// FailNext makes the next n authenticated API calls answer f.
func (s *Server) FailNext(n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failNext = append(s.failNext, f)
	}
}

// RevokeTokens invalidates every issued access token (the next API call
// gets 401 UNAUTHENTICATED).
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]issuedToken{}
}

// Accepted returns every accepted message in order of acceptance.
func (s *Server) Accepted() []Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Accepted(nil), s.accepted...)
}

// Counters returns the answer counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters
}

// MaxInWindow is the largest number of an agent's messages accepted within
// any sliding window of the given length.
func (s *Server) MaxInWindow(agentID string, window time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ts []time.Time
	for _, a := range s.accepted {
		if a.AgentID == agentID {
			ts = append(ts, a.At)
		}
	}
	best, lo := 0, 0
	for hi := range ts {
		for ts[hi].Sub(ts[lo]) >= window {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// googleError writes Google's standard error body.
func googleError(w http.ResponseWriter, code int, status, message string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "message": message, "status": status}})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		s.token(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/phones/")
	phone, op, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		googleError(w, http.StatusNotFound, "NOT_FOUND", "Method not found.")
		return
	}
	switch {
	case op == "agentMessages" && r.Method == http.MethodPost:
		s.agentMessage(w, r, phone)
	case op == "capabilities" && r.Method == http.MethodGet:
		s.capabilities(w, r, phone)
	default:
		googleError(w, http.StatusNotFound, "NOT_FOUND", "Method not found.")
	}
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counters.TokenRequests++
	s.mu.Unlock()
	oauthError := func(code, desc string) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		oauthError("invalid_request", "POST a form")
		return
	}
	if r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError("unsupported_grant_type", "Invalid grant_type: "+r.PostForm.Get("grant_type"))
		return
	}
	sa, err := s.verifyAssertion(r.PostForm.Get("assertion"))
	if err != nil {
		if err.Error() == "invalid_scope" {
			oauthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
			return
		}
		oauthError("invalid_grant", err.Error())
		return
	}
	s.mu.Lock()
	s.nextToken++
	tok := fmt.Sprintf("ya29.double-%d-%d", s.nextToken, time.Now().UnixNano())
	s.tokens[tok] = issuedToken{sa: sa, expiry: time.Now().Add(s.tokenLifetime)}
	s.counters.TokensIssued++
	lifetime := s.tokenLifetime
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok, "expires_in": int(lifetime / time.Second), "token_type": "Bearer",
	})
}

// authenticate checks the bearer token and that its service account may act
// for agentID. It writes the error answer and returns false on failure.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, agentID string) bool {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	s.counters.Requests++
	it, ok := s.tokens[tok]
	if !ok || time.Now().After(it.expiry) {
		s.counters.Unauthenticated++
		s.mu.Unlock()
		googleError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.")
		return false
	}
	if agentID == "" {
		s.counters.InvalidArgument++
		s.mu.Unlock()
		googleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "agentId is required")
		return false
	}
	if !it.sa.agents[agentID] {
		s.counters.PermissionDenied++
		s.mu.Unlock()
		googleError(w, http.StatusForbidden, "PERMISSION_DENIED", "The caller does not have permission")
		return false
	}
	if len(s.failNext) > 0 {
		f := s.failNext[0]
		s.failNext = s.failNext[1:]
		s.counters.Injected++
		s.mu.Unlock()
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		}
		googleError(w, f.Code, f.Status, f.Message)
		return false
	}
	s.mu.Unlock()
	return true
}

func isE164(p string) bool {
	if len(p) < 9 || len(p) > 16 || p[0] != '+' || p[1] == '0' {
		return false
	}
	for _, c := range p[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (s *Server) capabilities(w http.ResponseWriter, r *http.Request, phone string) {
	q := r.URL.Query()
	if !s.authenticate(w, r, q.Get("agentId")) {
		return
	}
	s.mu.Lock()
	s.counters.Capabilities++
	notCapable := s.notCapable[phone]
	s.mu.Unlock()
	switch {
	case q.Get("requestId") == "":
		googleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "requestId is required")
	case !isE164(phone):
		googleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "Invalid phone number: "+phone)
	case notCapable:
		googleError(w, http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"features": []string{
			"RICHCARD_STANDALONE", "RICHCARD_CAROUSEL", "ACTION_CREATE_CALENDAR_EVENT", "ACTION_DIAL",
			"ACTION_OPEN_URL", "ACTION_SHARE_LOCATION", "ACTION_VIEW_LOCATION",
		}})
	}
}

func (s *Server) invalid(w http.ResponseWriter, msg string) {
	s.mu.Lock()
	s.counters.InvalidArgument++
	s.mu.Unlock()
	googleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", msg)
}

func (s *Server) agentMessage(w http.ResponseWriter, r *http.Request, phone string) {
	q := r.URL.Query()
	agentID, messageID := q.Get("agentId"), q.Get("messageId")
	if !s.authenticate(w, r, agentID) {
		return
	}
	if messageID == "" {
		s.invalid(w, "messageId is required")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		s.invalid(w, "unreadable body")
		return
	}
	name := "phones/" + phone + "/agentMessages/" + messageID
	key := agentID + "/" + messageID
	s.mu.Lock()
	dup := s.seen[key]
	if dup {
		s.counters.Duplicates++
	}
	s.mu.Unlock()
	if dup {
		// RBM ignores a reused messageId: the first message stands.
		writeJSON(w, http.StatusOK, map[string]any{"name": name, "sendTime": time.Now().UTC().Format(time.RFC3339Nano)})
		return
	}
	if !isE164(phone) {
		s.invalid(w, "Invalid phone number: "+phone)
		return
	}
	if len(body) > 250*1024 {
		s.invalid(w, "The AgentMessage exceeds 250 KB")
		return
	}
	acc, msg := parseAgentMessage(body)
	if msg != "" {
		s.invalid(w, msg)
		return
	}
	acc.AgentID, acc.Phone, acc.MessageID, acc.Body = agentID, phone, messageID, body

	s.mu.Lock()
	if s.notCapable[phone] {
		s.counters.NotFound++
		s.mu.Unlock()
		googleError(w, http.StatusNotFound, "NOT_FOUND", "Requested entity was not found.")
		return
	}
	now := time.Now()
	rate, ok := s.agentRates[agentID]
	if !ok {
		rate = s.defaultRate
	}
	if rate.N > 0 {
		ts := s.recent[agentID]
		i := 0
		for i < len(ts) && now.Sub(ts[i]) >= rate.Window {
			i++
		}
		ts = ts[i:]
		if len(ts) >= rate.N {
			s.recent[agentID] = ts
			s.counters.RateLimited++
			ra := s.retryAfterHeader
			s.mu.Unlock()
			if ra > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(ra))
			}
			googleError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Agent messages' and limit 'Agent messages per second' of service 'rcsbusinessmessaging.googleapis.com'.")
			return
		}
		s.recent[agentID] = append(ts, now)
	}
	if s.seen[key] { // a concurrent twin won the race
		s.counters.Duplicates++
	} else {
		s.seen[key] = true
		acc.At = now
		s.accepted = append(s.accepted, acc)
		s.counters.Accepted++
	}
	s.mu.Unlock()
	var content json.RawMessage
	var whole struct {
		ContentMessage json.RawMessage `json:"contentMessage"`
	}
	if json.Unmarshal(body, &whole) == nil {
		content = whole.ContentMessage
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "sendTime": now.UTC().Format(time.RFC3339Nano), "contentMessage": content})
}

type wireSuggestion struct {
	Reply *struct {
		Text         string `json:"text"`
		PostbackData string `json:"postbackData"`
	} `json:"reply"`
	Action *struct {
		Text          string `json:"text"`
		PostbackData  string `json:"postbackData"`
		OpenURLAction *struct {
			URL string `json:"url"`
		} `json:"openUrlAction"`
		DialAction json.RawMessage `json:"dialAction"`
	} `json:"action"`
}

type wireMessage struct {
	ContentMessage *struct {
		Text        *string          `json:"text"`
		RichCard    *json.RawMessage `json:"richCard"`
		ContentInfo *struct {
			FileURL string `json:"fileUrl"`
		} `json:"contentInfo"`
		UploadedRbmFile json.RawMessage  `json:"uploadedRbmFile"`
		Suggestions     []wireSuggestion `json:"suggestions"`
	} `json:"contentMessage"`
	TTL        string `json:"ttl"`
	ExpireTime string `json:"expireTime"`
}

type wireCard struct {
	StandaloneCard *struct {
		CardOrientation string `json:"cardOrientation"`
		CardContent     *struct {
			Title       string `json:"title"`
			Description string `json:"description"`
			Media       *struct {
				Height      string `json:"height"`
				ContentInfo *struct {
					FileURL string `json:"fileUrl"`
				} `json:"contentInfo"`
			} `json:"media"`
			Suggestions []wireSuggestion `json:"suggestions"`
		} `json:"cardContent"`
	} `json:"standaloneCard"`
	CarouselCard json.RawMessage `json:"carouselCard"`
}

// parseAgentMessage validates an AgentMessage against RBM's documented
// limits and returns what was sent, or the INVALID_ARGUMENT message.
func parseAgentMessage(body []byte) (Accepted, string) {
	var m wireMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return Accepted{}, "Invalid JSON payload received. " + err.Error()
	}
	cm := m.ContentMessage
	if cm == nil {
		return Accepted{}, "contentMessage is required"
	}
	if m.TTL != "" && m.ExpireTime != "" {
		return Accepted{}, "Only one of ttl and expireTime may be set"
	}
	if m.TTL != "" {
		if _, err := time.ParseDuration(m.TTL); err != nil {
			return Accepted{}, "Invalid ttl: " + m.TTL
		}
	}
	kinds := 0
	for _, set := range []bool{cm.Text != nil, cm.RichCard != nil, cm.ContentInfo != nil, cm.UploadedRbmFile != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return Accepted{}, "contentMessage must have exactly one of text, richCard, contentInfo, uploadedRbmFile"
	}
	var acc Accepted
	sugg, msg := checkSuggestions(cm.Suggestions, 11)
	if msg != "" {
		return Accepted{}, msg
	}
	acc.Suggestions = sugg
	switch {
	case cm.Text != nil:
		if strings.TrimSpace(*cm.Text) == "" {
			return Accepted{}, "contentMessage.text must not be empty"
		}
		if n := len([]rune(*cm.Text)); n > 3072 {
			return Accepted{}, fmt.Sprintf("contentMessage.text is %d characters; the maximum is 3072", n)
		}
		acc.Text = *cm.Text
	case cm.ContentInfo != nil:
		if !validFileURL(cm.ContentInfo.FileURL) {
			return Accepted{}, "contentInfo.fileUrl must be a public http(s) URL"
		}
		acc.FileURL = cm.ContentInfo.FileURL
	case cm.RichCard != nil:
		var card wireCard
		if err := json.Unmarshal(*cm.RichCard, &card); err != nil {
			return Accepted{}, "Invalid richCard: " + err.Error()
		}
		if card.CarouselCard != nil {
			return Accepted{}, "carouselCard is not supported by this double"
		}
		sc := card.StandaloneCard
		if sc == nil || sc.CardContent == nil {
			return Accepted{}, "richCard.standaloneCard.cardContent is required"
		}
		switch sc.CardOrientation {
		case "VERTICAL", "HORIZONTAL":
		default:
			return Accepted{}, "standaloneCard.cardOrientation must be VERTICAL or HORIZONTAL"
		}
		cc := sc.CardContent
		if cc.Title == "" && cc.Description == "" && cc.Media == nil {
			return Accepted{}, "cardContent needs a title, description or media"
		}
		if n := len([]rune(cc.Title)); n > 200 {
			return Accepted{}, fmt.Sprintf("cardContent.title is %d characters; the maximum is 200", n)
		}
		if n := len([]rune(cc.Description)); n > 2000 {
			return Accepted{}, fmt.Sprintf("cardContent.description is %d characters; the maximum is 2000", n)
		}
		if cc.Media != nil {
			switch cc.Media.Height {
			case "SHORT", "MEDIUM", "TALL":
			default:
				return Accepted{}, "media.height must be SHORT, MEDIUM or TALL"
			}
			if cc.Media.ContentInfo == nil || !validFileURL(cc.Media.ContentInfo.FileURL) {
				return Accepted{}, "media.contentInfo.fileUrl must be a public http(s) URL"
			}
			acc.FileURL = cc.Media.ContentInfo.FileURL
		}
		cs, msg := checkSuggestions(cc.Suggestions, 4)
		if msg != "" {
			return Accepted{}, msg
		}
		acc.Title, acc.Description = cc.Title, cc.Description
		acc.Suggestions = append(acc.Suggestions, cs...)
	}
	return acc, ""
}

func validFileURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

func checkSuggestions(in []wireSuggestion, limit int) ([]Suggestion, string) {
	if len(in) > limit {
		return nil, fmt.Sprintf("%d suggestions; the maximum is %d", len(in), limit)
	}
	var out []Suggestion
	for i, sg := range in {
		var s Suggestion
		switch {
		case sg.Reply != nil && sg.Action == nil:
			s = Suggestion{Text: sg.Reply.Text, PostbackData: sg.Reply.PostbackData}
		case sg.Action != nil && sg.Reply == nil:
			s = Suggestion{Text: sg.Action.Text, PostbackData: sg.Action.PostbackData}
			switch {
			case sg.Action.OpenURLAction != nil:
				if !validFileURL(sg.Action.OpenURLAction.URL) {
					return nil, fmt.Sprintf("suggestions[%d].action.openUrlAction.url is invalid", i)
				}
				s.URL = sg.Action.OpenURLAction.URL
			case sg.Action.DialAction != nil:
			default:
				return nil, fmt.Sprintf("suggestions[%d].action has no action", i)
			}
		default:
			return nil, fmt.Sprintf("suggestions[%d] must be exactly one of reply, action", i)
		}
		if s.Text == "" || len([]rune(s.Text)) > 25 {
			return nil, fmt.Sprintf("suggestions[%d].text must be 1-25 characters", i)
		}
		if len(s.PostbackData) > 2048 {
			return nil, fmt.Sprintf("suggestions[%d].postbackData exceeds 2048 bytes", i)
		}
		out = append(out, s)
	}
	return out, ""
}
