package rcs

import (
	"errors"
	fgmedia "github.com/flowgate/flowgate/shared/media"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultAPIBase is the RBM API used when neither the account nor an option
// names another one.
const DefaultAPIBase = "https://rcsbusinessmessaging.googleapis.com"

// Scope is the OAuth2 scope RBM requires.
const Scope = "https://www.googleapis.com/auth/rcsbusinessmessaging"

// DefaultRequestTimeout bounds one API call (and one token request) whose
// context has no deadline.
const DefaultRequestTimeout = 30 * time.Second

type options struct {
	client         *http.Client
	apiBase        string
	tokenURL       string
	requestTimeout time.Duration
	retryAfter     time.Duration
	ttl            time.Duration
	logger         *slog.Logger
	mediaLinks     *fgmedia.Signer
}

// Option configures a Sender.
type Option func(*options) error

// WithHTTPClient sets the HTTP client for API and token calls.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("rcs: nil HTTP client")
		}
		o.client = c
		return nil
	}
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("rcs: " + raw + " is not an absolute http(s) URL")
	}
	return nil
}

// WithAPIBase sets the RBM API for accounts that do not name one.
func WithAPIBase(base string) Option {
	return func(o *options) error {
		if err := checkURL(base); err != nil {
			return err
		}
		o.apiBase = strings.TrimRight(base, "/")
		return nil
	}
}

// WithTokenURL overrides the token endpoint of every service-account key
// (normally the key file's token_uri, which is what tests point at a double).
func WithTokenURL(u string) Option {
	return func(o *options) error {
		if err := checkURL(u); err != nil {
			return err
		}
		o.tokenURL = u
		return nil
	}
}

// WithRequestTimeout bounds each call whose context has no deadline.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("rcs: request timeout must be positive")
		}
		o.requestTimeout = d
		return nil
	}
}

// WithDefaultRetryAfter is the wait reported for a 429 without a
// Retry-After header (default 1s).
func WithDefaultRetryAfter(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("rcs: default retry-after must be positive")
		}
		o.retryAfter = d
		return nil
	}
}

// WithMessageTTL sets a ttl on every message: RBM revokes it if it is not
// delivered in time (the usual cue for an SMS fallback). Zero means none.
func WithMessageTTL(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return errors.New("rcs: negative TTL")
		}
		o.ttl = d
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()). Keys and tokens are
// never logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("rcs: nil logger")
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
