package telegram

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultAPIBase is the Bot API server used when neither the account nor an
// option names another one.
const DefaultAPIBase = "https://api.telegram.org"

// DefaultRequestTimeout bounds one API call whose context has no deadline.
const DefaultRequestTimeout = 30 * time.Second

type options struct {
	client         *http.Client
	apiBase        string
	requestTimeout time.Duration
	paidBroadcast  bool
	logger         *slog.Logger
	media          MediaFiles
}

// Option configures a Sender. Options that can be wrong return an error
// from NewSender.
type Option func(*options) error

// WithHTTPClient sets the HTTP client used for every API call. The default
// keeps up to 256 idle connections per host so that a busy worker reuses them.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("telegram: nil HTTP client")
		}
		o.client = c
		return nil
	}
}

// WithAPIBase sets the Bot API server for accounts that do not name one
// (a local Bot API server, or a test double).
func WithAPIBase(base string) Option {
	return func(o *options) error {
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("telegram: API base must be an absolute http(s) URL")
		}
		o.apiBase = strings.TrimRight(base, "/")
		return nil
	}
}

// WithRequestTimeout bounds each API call whose context has no deadline.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("telegram: request timeout must be positive")
		}
		o.requestTimeout = d
		return nil
	}
}

// WithPaidBroadcast sets allow_paid_broadcast on every message: Telegram then
// accepts up to 1,000 messages/s per bot and charges Stars per message.
func WithPaidBroadcast(on bool) Option {
	return func(o *options) error {
		o.paidBroadcast = on
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()). Tokens are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("telegram: nil logger")
		}
		o.logger = l
		return nil
	}
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 256
	return &http.Client{Transport: t}
}
