package whatsapp

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultAPIBase is the Graph API base the sender uses when neither the bot's
// account nor WithAPIBase names another.
const DefaultAPIBase = "https://graph.facebook.com/v21.0"

// Waits are how long the runner is asked to wait before retrying after the
// Cloud API reported a rate or spam limit. Meta sends no Retry-After, so
// these are Flowgate's choices.
type Waits struct {
	// Throughput follows 130429 (the number sends too fast).
	Throughput time.Duration
	// Pair follows 131056 (same recipient too often, ~1 per 6 s); at least 6 s.
	Pair time.Duration
	// Account follows 80007 and 4 (WABA / app rate limit).
	Account time.Duration
	// Spam follows 131048 and 131049 (spam limit, withheld for ecosystem
	// health): a long pause so that Flowgate does not hammer.
	Spam time.Duration
}

// DefaultWaits are the waits a Sender uses unless WithWaits says otherwise.
var DefaultWaits = Waits{
	Throughput: time.Second,
	Pair:       6 * time.Second,
	Account:    time.Minute,
	Spam:       10 * time.Minute,
}

// minPairWait is the documented pair rate: about one message per 6 s.
const minPairWait = 6 * time.Second

// Option configures a Sender. Options that receive invalid values make
// NewSender fail.
type Option func(*options) error

type options struct {
	client  *http.Client
	apiBase string
	now     func() time.Time
	timeout time.Duration
	waits   Waits
	// media and mediaRenewAfter: see WithMedia.
	media           MediaFiles
	mediaRenewAfter time.Duration
}

// WithHTTPClient sets the client used for Cloud API calls. The default has
// a 30 s timeout and keeps enough idle connections for parallel sends.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("whatsapp: nil http client")
		}
		o.client = c
		return nil
	}
}

// WithAPIBase sets the Graph API base including the version, e.g.
// "https://graph.facebook.com/v21.0". A bot account's APIBase wins over it.
func WithAPIBase(base string) Option {
	return func(o *options) error {
		b, err := cleanAPIBase(base)
		if err != nil {
			return err
		}
		o.apiBase = b
		return nil
	}
}

// WithClock sets the clock used for the 24-hour customer-service window.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return errors.New("whatsapp: nil clock")
		}
		o.now = now
		return nil
	}
}

// WithTimeout bounds one Send whose context has no deadline (default 30 s):
// the default HTTP client's Timeout, or a context deadline around calls
// through a client given with WithHTTPClient.
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("whatsapp: timeout %s must be positive", d)
		}
		o.timeout = d
		return nil
	}
}

// WithWaits replaces the retry waits after rate and spam limits. Zero fields
// keep their default; Pair is raised to 6 s if lower.
func WithWaits(w Waits) Option {
	return func(o *options) error {
		if w.Throughput < 0 || w.Pair < 0 || w.Account < 0 || w.Spam < 0 {
			return errors.New("whatsapp: negative wait")
		}
		if w.Throughput > 0 {
			o.waits.Throughput = w.Throughput
		}
		if w.Pair > 0 {
			o.waits.Pair = max(w.Pair, minPairWait)
		}
		if w.Account > 0 {
			o.waits.Account = w.Account
		}
		if w.Spam > 0 {
			o.waits.Spam = w.Spam
		}
		return nil
	}
}

func cleanAPIBase(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("whatsapp: api base: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("whatsapp: api base %q is not an http(s) URL", base)
	}
	return strings.TrimRight(base, "/"), nil
}

func defaultClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// The default of 2 idle connections per host makes parallel sends to
	// graph.facebook.com open and close connections all the time.
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 256
	return &http.Client{Transport: t, Timeout: timeout}
}
