// Package telegramdouble is an in-process Telegram Bot API server for tests
// and benchmarks: it answers sendMessage, sendPhoto, sendDocument,
// sendVideo, answerCallbackQuery, setWebhook, deleteWebhook and getUpdates
// at /bot<token>/<method> with the Bot API's success and error shapes,
// enforces configurable per-chat and per-bot rate limits with 429
// retry_after answers, simulates blocked, deactivated and unknown chats,
// queues updates for getUpdates, and logs every accepted message with its
// time so tests can check pacing afterwards.
package telegramdouble

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// Rate allows N accepted messages in any sliding Window. N == 0 is unlimited.
type Rate struct {
	N      int
	Window time.Duration
}

// Limits are the double's rate limits.
type Limits struct {
	// PerChat applies to each chat of each bot (Telegram: about 1 message/s).
	PerChat Rate
	// PerBot applies to all messages of one bot (Telegram: about 30/s).
	PerBot Rate
	// PerGroup applies, on top of PerChat, to group chats (negative chat
	// ids; Telegram: 20 messages/min).
	PerGroup Rate
}

// DefaultLimits are Telegram's documented limits: 1 message/s per chat,
// 30 messages/s per bot, 20 messages/min per group.
func DefaultLimits() Limits {
	return Limits{
		PerChat:  Rate{N: 1, Window: time.Second},
		PerBot:   Rate{N: 30, Window: time.Second},
		PerGroup: Rate{N: 20, Window: time.Minute},
	}
}

// ChatState is how the double treats messages to a chat.
type ChatState int

// Chat states.
const (
	// ChatActive accepts messages.
	ChatActive ChatState = iota
	// ChatBlocked answers 403 "Forbidden: bot was blocked by the user".
	ChatBlocked
	// ChatDeactivated answers 403 "Forbidden: user is deactivated".
	ChatDeactivated
	// ChatNotFound answers 400 "Bad Request: chat not found".
	ChatNotFound
)

// APIError is an error answer the double can be told to give.
type APIError struct {
	Code        int
	Description string
	// RetryAfter, when positive, is sent as parameters.retry_after.
	RetryAfter int
}

// Accepted is one message the double accepted.
type Accepted struct {
	BotID     string
	Method    string
	ChatID    string
	MessageID int64
	At        time.Time
	// Text is the text of sendMessage; Caption and Media (the photo,
	// document or video reference) those of media methods.
	Text    string
	Caption string
	Media   string
	// Upload is set when the media was uploaded (multipart/form-data)
	// rather than named by URL or file_id; Media is then "upload:<filename>".
	Upload *UploadedFile
	// FileID is the file_id the answer gave the media (media methods only).
	FileID string
	// ReplyMarkup is reply_markup as sent (JSON), if any.
	ReplyMarkup json.RawMessage
	// PaidBroadcast is allow_paid_broadcast.
	PaidBroadcast bool
}

// UploadedFile is a file part of a multipart send.
type UploadedFile struct {
	Filename    string
	ContentType string
	Size        int
}

// Counters count the double's answers.
type Counters struct {
	Requests     int64
	Accepted     int64
	RateLimited  int64
	Forbidden    int64
	ChatNotFound int64
	BadRequest   int64
	Unauthorized int64
	Injected     int64
	// Callbacks counts answerCallbackQuery calls.
	Callbacks int64
}

type webhook struct {
	url, secret string
}

type botState struct {
	id      string
	token   string
	webhook webhook
	// updates queued for getUpdates, ascending ids.
	updates      []Update
	nextUpdateID int64
	// notify is closed (and replaced) when an update is queued.
	notify   chan struct{}
	recent   []time.Time
	answered []string
}

type chatState struct {
	state       ChatState
	recent      []time.Time
	groupRecent []time.Time
	messageID   int64
}

// Server is the Telegram double. Create it with New or Start.
type Server struct {
	// URL is the API base to configure senders with (store.TelegramAccount.APIBase).
	URL string

	srv    *httptest.Server
	closed chan struct{}

	mu           sync.Mutex
	limits       Limits
	requireKnown bool
	bots         map[string]*botState  // by token
	chats        map[string]*chatState // by bot id + "/" + chat id
	failNext     []APIError
	dropNext     int
	accepted     []Accepted
	counters     Counters
}

// Option configures a Server.
type Option func(*Server)

// WithLimits replaces DefaultLimits.
func WithLimits(l Limits) Option { return func(s *Server) { s.limits = l } }

// WithUnlimited removes every rate limit (benchmarks).
func WithUnlimited() Option { return func(s *Server) { s.limits = Limits{} } }

// WithRequireKnownChats makes chats never configured with SetChat answer
// 400 "Bad Request: chat not found".
func WithRequireKnownChats() Option { return func(s *Server) { s.requireKnown = true } }

// New starts a double; Close it when done.
func New(opts ...Option) *Server {
	s := &Server{
		limits: DefaultLimits(),
		bots:   map[string]*botState{},
		chats:  map[string]*chatState{},
		closed: make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Start is New plus tb.Cleanup(Close).
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := New(opts...)
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server, releasing long polls first.
func (s *Server) Close() {
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
	s.srv.Close()
}

// AddBot registers a token ("<bot id>:<secret>"); other tokens get 401.
func (s *Server) AddBot(token string) {
	id, _, _ := strings.Cut(token, ":")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.bots[token]; !ok {
		s.bots[token] = &botState{id: id, token: token, nextUpdateID: 100000001, notify: make(chan struct{})}
	}
}

// SetLimits changes the rate limits from now on.
func (s *Server) SetLimits(l Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = l
}

// SetChat sets how chatID of the bot with token is treated.
func (s *Server) SetChat(token string, chatID int64, st ChatState) {
	id, _, _ := strings.Cut(token, ":")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chatLocked(id, strconv.FormatInt(chatID, 10)).state = st
}

// FailNext makes the next n API calls (any method, valid token) answer e.
func (s *Server) FailNext(n int, e APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failNext = append(s.failNext, e)
	}
}

// DropNext makes the next n API calls lose their connection without an
// answer (a network failure as the client sees it).
func (s *Server) DropNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropNext += n
}

// PushUpdate queues u for the bot's getUpdates. A zero UpdateID gets the
// bot's next id; the queued update is returned.
func (s *Server) PushUpdate(token string, u Update) Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bots[token]
	if b == nil {
		panic("telegramdouble: PushUpdate for unknown token")
	}
	if u.UpdateID == 0 {
		u.UpdateID = b.nextUpdateID
	}
	if u.UpdateID >= b.nextUpdateID {
		b.nextUpdateID = u.UpdateID + 1
	}
	b.updates = append(b.updates, u)
	close(b.notify)
	b.notify = make(chan struct{})
	return u
}

// Webhook returns the webhook set for the bot with token ("" if none).
func (s *Server) Webhook(token string) (url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.bots[token]; b != nil {
		return b.webhook.url, b.webhook.secret
	}
	return "", ""
}

// DeliverWebhook posts u to the bot's webhook the way Telegram does (JSON,
// secret header) and returns the HTTP status the webhook answered.
func (s *Server) DeliverWebhook(ctx context.Context, token string, u Update) (int, error) {
	whURL, secret := s.Webhook(token)
	if whURL == "" {
		return 0, fmt.Errorf("telegramdouble: no webhook set for bot")
	}
	r, err := WebhookRequest(whURL, secret, u.JSON())
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(r.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// Accepted returns every accepted message, in order of acceptance.
func (s *Server) Accepted() []Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Accepted(nil), s.accepted...)
}

// AcceptedTo returns the accepted messages to one chat.
func (s *Server) AcceptedTo(chatID string) []Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Accepted
	for _, a := range s.accepted {
		if a.ChatID == chatID {
			out = append(out, a)
		}
	}
	return out
}

// MinChatInterval is the shortest time between two consecutive accepted
// messages to the same chat, over all chats; ok is false when no chat got two.
func (s *Server) MinChatInterval() (d time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := map[string]time.Time{}
	d = time.Duration(math.MaxInt64)
	for _, a := range s.accepted {
		k := a.BotID + "/" + a.ChatID
		if t, seen := last[k]; seen {
			ok = true
			d = min(d, a.At.Sub(t))
		}
		last[k] = a.At
	}
	if !ok {
		return 0, false
	}
	return d, true
}

// MaxInWindow is the largest number of messages of one bot accepted within
// any sliding window of the given length.
func (s *Server) MaxInWindow(botID string, window time.Duration) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ts []time.Time
	for _, a := range s.accepted {
		if a.BotID == botID {
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

// Counters returns the answer counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters
}

// AnsweredCallbacks returns the callback_query_ids answered by the bot.
func (s *Server) AnsweredCallbacks(token string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.bots[token]; b != nil {
		return append([]string(nil), b.answered...)
	}
	return nil
}

func (s *Server) chatLocked(botID, chatID string) *chatState {
	k := botID + "/" + chatID
	c := s.chats[k]
	if c == nil {
		c = &chatState{state: ChatActive}
		if s.requireKnown {
			c.state = ChatNotFound
		}
		s.chats[k] = c
	}
	return c
}

// answer writes a Bot API answer.
func answer(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func answerOK(w http.ResponseWriter, result any, description string) {
	body := map[string]any{"ok": true, "result": result}
	if description != "" {
		body["description"] = description
	}
	answer(w, http.StatusOK, body)
}

func answerError(w http.ResponseWriter, e APIError) {
	body := map[string]any{"ok": false, "error_code": e.Code, "description": e.Description}
	if e.RetryAfter > 0 {
		body["parameters"] = map[string]any{"retry_after": e.RetryAfter}
	}
	answer(w, e.Code, body)
}

func badRequest(desc string) APIError {
	return APIError{Code: http.StatusBadRequest, Description: "Bad Request: " + desc}
}

// params are a request's parameters, however they were sent (JSON body,
// form, query string), as raw JSON values.
type params map[string]json.RawMessage

func readParams(r *http.Request) (params, map[string]UploadedFile, error) {
	p := params{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		// Bot API uploads: the file is a part of the form (50 MB at most).
		if err := r.ParseMultipartForm(50 << 20); err != nil {
			return nil, nil, err
		}
		for k, v := range r.MultipartForm.Value {
			if len(v) > 0 {
				p[k], _ = json.Marshal(v[0])
			}
		}
		files := map[string]UploadedFile{}
		for k, fh := range r.MultipartForm.File {
			if len(fh) > 0 {
				files[k] = UploadedFile{Filename: fh[0].Filename, ContentType: fh[0].Header.Get("Content-Type"), Size: int(fh[0].Size)}
				p[k], _ = json.Marshal("upload:" + fh[0].Filename)
			}
		}
		return p, files, nil
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil {
			return nil, nil, err
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			if err := json.Unmarshal(body, &p); err != nil {
				return nil, nil, err
			}
		}
		for k, v := range r.URL.Query() {
			if _, ok := p[k]; !ok && len(v) > 0 {
				p[k], _ = json.Marshal(v[0])
			}
		}
		return p, nil, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, nil, err
	}
	for k, v := range r.Form {
		if len(v) > 0 {
			p[k], _ = json.Marshal(v[0])
		}
	}
	return p, nil, nil
}

// str returns a parameter as a string, accepting JSON strings and numbers.
func (p params) str(key string) (string, bool) {
	raw, ok := p[key]
	if !ok || string(raw) == "null" {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), true
	}
	return "", false
}

func (p params) integer(key string, def int64) (int64, bool) {
	v, ok := p.str(key)
	if !ok || v == "" {
		return def, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

func (p params) boolean(key string) bool {
	v, _ := p.str(key)
	if v == "" {
		var b bool
		_ = json.Unmarshal(p[key], &b)
		return b
	}
	return v == "true" || v == "1"
}

// object returns an object parameter, accepting it as JSON or as a JSON
// string (form encoding).
func (p params) object(key string) (json.RawMessage, bool) {
	raw, ok := p[key]
	if !ok || string(raw) == "null" {
		return nil, false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return json.RawMessage(s), true
	}
	return raw, true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/bot")
	token, method, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		answerError(w, APIError{Code: http.StatusNotFound, Description: "Not Found"})
		return
	}
	s.mu.Lock()
	s.counters.Requests++
	b := s.bots[token]
	if b == nil {
		s.counters.Unauthorized++
		s.mu.Unlock()
		answerError(w, APIError{Code: http.StatusUnauthorized, Description: "Unauthorized"})
		return
	}
	if s.dropNext > 0 {
		s.dropNext--
		s.mu.Unlock()
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if len(s.failNext) > 0 {
		e := s.failNext[0]
		s.failNext = s.failNext[1:]
		s.counters.Injected++
		s.mu.Unlock()
		answerError(w, e)
		return
	}
	s.mu.Unlock()

	p, files, err := readParams(r)
	if err != nil {
		s.reject(w, badRequest("can't parse request: "+err.Error()))
		return
	}
	switch strings.ToLower(method) {
	case "sendmessage", "sendphoto", "senddocument", "sendvideo":
		s.send(w, b, strings.ToLower(method), p, files)
	case "answercallbackquery":
		id, _ := p.str("callback_query_id")
		if id == "" {
			s.reject(w, badRequest("query is too old and response timeout expired or query ID is invalid"))
			return
		}
		s.mu.Lock()
		b.answered = append(b.answered, id)
		s.counters.Callbacks++
		s.mu.Unlock()
		answerOK(w, true, "")
	case "setwebhook":
		s.setWebhook(w, b, p)
	case "deletewebhook":
		s.mu.Lock()
		b.webhook = webhook{}
		if p.boolean("drop_pending_updates") {
			b.updates = nil
		}
		s.mu.Unlock()
		answerOK(w, true, "Webhook was deleted")
	case "getupdates":
		s.getUpdates(w, r, b, p)
	default:
		answerError(w, APIError{Code: http.StatusNotFound, Description: "Not Found"})
	}
}

func (s *Server) reject(w http.ResponseWriter, e APIError) {
	s.mu.Lock()
	switch e.Code {
	case http.StatusBadRequest:
		s.counters.BadRequest++
	case http.StatusForbidden:
		s.counters.Forbidden++
	}
	s.mu.Unlock()
	answerError(w, e)
}

var mediaParam = map[string]string{"sendphoto": "photo", "senddocument": "document", "sendvideo": "video"}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

func (s *Server) send(w http.ResponseWriter, b *botState, method string, p params, files map[string]UploadedFile) {
	chatID, ok := p.str("chat_id")
	if !ok || chatID == "" {
		s.reject(w, badRequest("chat_id is empty"))
		return
	}
	if _, err := strconv.ParseInt(chatID, 10, 64); err != nil && !(len(chatID) > 1 && chatID[0] == '@') {
		s.reject(w, badRequest("chat not found"))
		return
	}
	acc := Accepted{BotID: b.id, Method: method, ChatID: chatID, PaidBroadcast: p.boolean("allow_paid_broadcast")}
	if method == "sendmessage" {
		acc.Method = "sendMessage"
		acc.Text, _ = p.str("text")
		if strings.TrimSpace(acc.Text) == "" {
			s.reject(w, badRequest("message text is empty"))
			return
		}
		if !utf8.ValidString(acc.Text) {
			s.reject(w, badRequest("text must be encoded in UTF-8"))
			return
		}
		if utf16Len(acc.Text) > 4096 {
			s.reject(w, badRequest("message is too long"))
			return
		}
	} else {
		field := mediaParam[method]
		acc.Method = map[string]string{"photo": "sendPhoto", "document": "sendDocument", "video": "sendVideo"}[field]
		acc.Media, _ = p.str(field)
		if acc.Media == "" {
			s.reject(w, badRequest("there is no "+field+" in the request"))
			return
		}
		if f, ok := files[field]; ok {
			if f.Size == 0 {
				s.reject(w, badRequest("file must be non-empty"))
				return
			}
			acc.Upload = &f
		} else if !validFileRef(acc.Media) {
			s.reject(w, badRequest("wrong file identifier/HTTP URL specified"))
			return
		}
		acc.Caption, _ = p.str("caption")
		if utf16Len(acc.Caption) > 1024 {
			s.reject(w, badRequest("message caption is too long"))
			return
		}
	}
	if rm, ok := p.object("reply_markup"); ok {
		if e := validateMarkup(rm); e != nil {
			s.reject(w, *e)
			return
		}
		acc.ReplyMarkup = rm
	}

	s.mu.Lock()
	chat := s.chatLocked(b.id, chatID)
	switch chat.state {
	case ChatBlocked:
		s.counters.Forbidden++
		s.mu.Unlock()
		answerError(w, APIError{Code: http.StatusForbidden, Description: "Forbidden: bot was blocked by the user"})
		return
	case ChatDeactivated:
		s.counters.Forbidden++
		s.mu.Unlock()
		answerError(w, APIError{Code: http.StatusForbidden, Description: "Forbidden: user is deactivated"})
		return
	case ChatNotFound:
		s.counters.ChatNotFound++
		s.mu.Unlock()
		answerError(w, badRequest("chat not found"))
		return
	}
	now := time.Now()
	var wait time.Duration
	isGroup := strings.HasPrefix(chatID, "-") || strings.HasPrefix(chatID, "@")
	groupRate := s.limits.PerGroup
	if !isGroup {
		groupRate = Rate{}
	}
	botRate := s.limits.PerBot
	if acc.PaidBroadcast && botRate.N > 0 {
		// allow_paid_broadcast lifts the bot's broadcast limit to 1,000/s;
		// per-chat limits still hold.
		botRate = Rate{N: 1000, Window: time.Second}
	}
	wait = max(limitWait(&chat.recent, s.limits.PerChat, now), limitWait(&b.recent, botRate, now),
		limitWait(&chat.groupRecent, groupRate, now))
	if wait > 0 {
		s.counters.RateLimited++
		s.mu.Unlock()
		secs := max(1, int(math.Ceil(wait.Seconds())))
		answerError(w, APIError{Code: http.StatusTooManyRequests, Description: fmt.Sprintf("Too Many Requests: retry after %d", secs), RetryAfter: secs})
		return
	}
	chat.recent = appendRecent(chat.recent, s.limits.PerChat, now)
	b.recent = appendRecent(b.recent, botRate, now)
	chat.groupRecent = appendRecent(chat.groupRecent, groupRate, now)
	chat.messageID++
	acc.MessageID = chat.messageID
	acc.At = now
	if acc.Method != "sendMessage" {
		acc.FileID = fileIDOf(acc)
	}
	s.accepted = append(s.accepted, acc)
	s.counters.Accepted++
	s.mu.Unlock()

	answerOK(w, resultMessage(b, acc), "")
}

// limitWait drops timestamps outside the window and says how long until one
// more message fits (0: it fits now).
func limitWait(recent *[]time.Time, r Rate, now time.Time) time.Duration {
	if r.N <= 0 {
		return 0
	}
	ts := *recent
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= r.Window {
		i++
	}
	ts = ts[i:]
	*recent = ts
	if len(ts) < r.N {
		return 0
	}
	return ts[len(ts)-r.N].Add(r.Window).Sub(now)
}

func appendRecent(ts []time.Time, r Rate, now time.Time) []time.Time {
	if r.N <= 0 {
		return ts[:0]
	}
	return append(ts, now)
}

func validFileRef(ref string) bool {
	if strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") {
		u, err := url.Parse(ref)
		return err == nil && u.Host != ""
	}
	// Otherwise a file_id of an earlier upload.
	if len(ref) < 20 {
		return false
	}
	for _, c := range ref {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

type markupButton struct {
	Text         *string `json:"text"`
	CallbackData *string `json:"callback_data"`
	URL          *string `json:"url"`
}

func validateMarkup(raw json.RawMessage) *APIError {
	var m struct {
		InlineKeyboard [][]markupButton `json:"inline_keyboard"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		e := badRequest("can't parse reply keyboard markup JSON object")
		return &e
	}
	n := 0
	for _, row := range m.InlineKeyboard {
		for _, btn := range row {
			n++
			if btn.Text == nil {
				e := badRequest("can't parse inline keyboard button: Field \"text\" must be of type String")
				return &e
			}
			if strings.TrimSpace(*btn.Text) == "" {
				e := badRequest("BUTTON_TEXT_EMPTY")
				return &e
			}
			switch {
			case btn.URL != nil:
				u, err := url.Parse(*btn.URL)
				if err != nil || !(u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "tg") {
					e := badRequest("BUTTON_URL_INVALID")
					return &e
				}
			case btn.CallbackData != nil:
				if l := len(*btn.CallbackData); l < 1 || l > 64 {
					e := badRequest("BUTTON_DATA_INVALID")
					return &e
				}
			default:
				e := badRequest("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
				return &e
			}
		}
	}
	if n > 100 {
		e := badRequest("reply markup is too long")
		return &e
	}
	return nil
}

// fileIDOf is the file_id of an accepted media message: the one it was
// sent with, or a new one for a URL or an upload (Telegram's ids are
// opaque; the double's are recognisable in tests).
func fileIDOf(a Accepted) string {
	if a.Upload == nil && !strings.HasPrefix(a.Media, "http://") && !strings.HasPrefix(a.Media, "https://") {
		return a.Media
	}
	chat := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, a.ChatID)
	return fmt.Sprintf("AgACAgIAAxkBAAI%s_%012d", chat, a.MessageID)
}

func resultMessage(b *botState, a Accepted) map[string]any {
	chat := map[string]any{"type": "private"}
	if id, err := strconv.ParseInt(a.ChatID, 10, 64); err == nil {
		chat["id"] = id
		if id < 0 {
			chat["type"] = "supergroup"
		}
	} else {
		h := fnv.New32a()
		h.Write([]byte(a.ChatID))
		chat["id"] = -1000000000000 - int64(h.Sum32())
		chat["type"] = "channel"
		chat["username"] = strings.TrimPrefix(a.ChatID, "@")
	}
	botUserID, _ := strconv.ParseInt(b.id, 10, 64)
	m := map[string]any{
		"message_id": a.MessageID,
		"from":       map[string]any{"id": botUserID, "is_bot": true, "first_name": "Flowgate Double", "username": "flowgate_double_bot"},
		"chat":       chat,
		"date":       a.At.Unix(),
	}
	fileID := a.FileID
	switch a.Method {
	case "sendMessage":
		m["text"] = a.Text
	case "sendPhoto":
		m["photo"] = []map[string]any{{"file_id": fileID, "file_unique_id": "AQAD" + a.ChatID, "width": 320, "height": 240, "file_size": 12345}}
	case "sendDocument":
		m["document"] = map[string]any{"file_id": fileID, "file_unique_id": "AgAD" + a.ChatID, "file_name": "file", "file_size": 12345}
	case "sendVideo":
		m["video"] = map[string]any{"file_id": fileID, "file_unique_id": "BAAD" + a.ChatID, "width": 640, "height": 360, "duration": 10}
	}
	if a.Caption != "" {
		m["caption"] = a.Caption
	}
	if a.ReplyMarkup != nil {
		m["reply_markup"] = a.ReplyMarkup
	}
	return m
}

func (s *Server) setWebhook(w http.ResponseWriter, b *botState, p params) {
	u, _ := p.str("url")
	secret, _ := p.str("secret_token")
	if u == "" {
		// Telegram treats an empty url as "remove the webhook".
		s.mu.Lock()
		b.webhook = webhook{}
		s.mu.Unlock()
		answerOK(w, true, "Webhook was deleted")
		return
	}
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
		s.reject(w, badRequest("bad webhook: An HTTPS URL must be provided for webhook"))
		return
	}
	if len(secret) > 256 {
		s.reject(w, badRequest("secret token is too long"))
		return
	}
	for _, c := range secret {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			s.reject(w, badRequest("secret token contains unallowed characters"))
			return
		}
	}
	s.mu.Lock()
	b.webhook = webhook{url: u, secret: secret}
	s.mu.Unlock()
	answerOK(w, true, "Webhook was set")
}

func (s *Server) getUpdates(w http.ResponseWriter, r *http.Request, b *botState, p params) {
	offset, ok1 := p.integer("offset", 0)
	limit, ok2 := p.integer("limit", 100)
	timeout, ok3 := p.integer("timeout", 0)
	if !ok1 || !ok2 || !ok3 {
		s.reject(w, badRequest("invalid getUpdates parameters"))
		return
	}
	limit = min(max(limit, 1), 100)
	deadline := time.Now().Add(time.Duration(timeout) * time.Second)
	for {
		s.mu.Lock()
		if b.webhook.url != "" {
			s.mu.Unlock()
			answerError(w, APIError{Code: http.StatusConflict, Description: "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"})
			return
		}
		// Updates below offset are confirmed and forgotten.
		if offset > 0 {
			i := 0
			for i < len(b.updates) && b.updates[i].UpdateID < offset {
				i++
			}
			b.updates = b.updates[i:]
		}
		batch := b.updates
		if offset < 0 {
			batch = batch[max(0, len(batch)+int(offset)):]
		}
		if int64(len(batch)) > limit {
			batch = batch[:limit]
		}
		if len(batch) > 0 || !time.Now().Before(deadline) {
			out := append([]Update(nil), batch...)
			s.mu.Unlock()
			answerOK(w, out, "")
			return
		}
		notify := b.notify
		s.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-notify:
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-s.closed:
			t.Stop()
			answerOK(w, []Update{}, "")
			return
		}
		t.Stop()
	}
}
