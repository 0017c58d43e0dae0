package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flowgate/flowgate/ingress"
)

// ImportOptions say where `flowgate contacts import` sends a file.
type ImportOptions struct {
	// URL is the base URL of the ingress, e.g. http://localhost:8080.
	URL string
	Bot string
	// Key is the bot's API key (or the admin key).
	Key string
	// Format is "csv" or "ndjson"; empty picks it from the file extension.
	Format string
	// Region reads phone numbers without country code (ISO 3166, e.g. NL).
	Region string
	// Progress, when set, receives a progress line (bytes sent, rate).
	Progress io.Writer
	Client   *http.Client
}

// ContactsCommand runs `flowgate contacts import FILE [flags]`.
func ContactsCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "import" {
		return errors.New("usage: flowgate contacts import FILE --bot BOT [--url URL] [--key KEY] [--format csv|ndjson] [--region NL]")
	}
	fs := flag.NewFlagSet("flowgate contacts import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if slices.ContainsFunc(args[1:], func(a string) bool { return a == "-h" || a == "-help" || a == "--help" }) {
		fs.SetOutput(stdout) // asked for: help is the output, not an error
	}
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: flowgate contacts import FILE --bot BOT [flags]\n\n"+
			"Exit status: 0 when every row was imported, 2 when some rows were rejected (listed in the summary), 1 on errors.\n\nflags:")
		fs.PrintDefaults()
	}
	var o ImportOptions
	def := os.Getenv("FLOWGATE_URL")
	if def == "" {
		def = "http://localhost:8080"
	}
	fs.StringVar(&o.URL, "url", def, "Flowgate base URL ($FLOWGATE_URL)")
	fs.StringVar(&o.Bot, "bot", os.Getenv("FLOWGATE_BOT"), "bot id ($FLOWGATE_BOT)")
	fs.StringVar(&o.Key, "key", os.Getenv("FLOWGATE_API_KEY"), "the bot's API key ($FLOWGATE_API_KEY)")
	fs.StringVar(&o.Format, "format", "", "csv or ndjson (default: from the file extension)")
	fs.StringVar(&o.Region, "region", "", "country of phone numbers written without country code, e.g. NL")
	quiet := fs.Bool("quiet", false, "no progress bar (there is none either when stderr is not a terminal)")
	// The file may come before or after the flags.
	rest := args[1:]
	var file string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		file, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if file == "" && fs.NArg() == 1 {
		file = fs.Arg(0)
	} else if fs.NArg() > 0 || file == "" {
		return errors.New("usage: flowgate contacts import FILE --bot BOT [flags]")
	}
	if !*quiet && isTerminal(stderr) {
		// The bar redraws one line with carriage returns: only for a
		// terminal, never into a log file or a pipe.
		o.Progress = stderr
	}
	sum, err := ImportContactsFile(ctx, file, o)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sum); err != nil {
		return err
	}
	if sum.RejectedCount > 0 {
		return RejectedRowsError{Count: sum.RejectedCount}
	}
	return nil
}

// RejectedRowsError says an import finished with rejected rows; the
// command exits with status 2 (ExitCode), so scripts notice.
type RejectedRowsError struct{ Count int }

func (e RejectedRowsError) Error() string {
	return fmt.Sprintf("%d rows were rejected (see \"rejected\" in the summary)", e.Count)
}

// ExitCode is the process exit status for this error.
func (RejectedRowsError) ExitCode() int { return 2 }

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// ImportContactsFile streams file to POST /v1/bots/{bot}/contacts/import
// and returns the import's summary.
func ImportContactsFile(ctx context.Context, file string, o ImportOptions) (ingress.ImportSummary, error) {
	var sum ingress.ImportSummary
	if o.Bot == "" {
		return sum, errors.New("--bot is required")
	}
	if o.Key == "" {
		return sum, errors.New("--key or FLOWGATE_API_KEY is required")
	}
	format := strings.ToLower(o.Format)
	if format == "" {
		switch strings.ToLower(filepath.Ext(file)) {
		case ".csv":
			format = "csv"
		case ".ndjson", ".jsonl":
			format = "ndjson"
		default:
			return sum, fmt.Errorf("cannot tell the format of %s from its extension: give --format csv or ndjson", file)
		}
	}
	var contentType string
	switch format {
	case "csv":
		contentType = "text/csv"
	case "ndjson":
		contentType = "application/x-ndjson"
	default:
		return sum, fmt.Errorf("unknown format %q (csv or ndjson)", o.Format)
	}
	f, err := os.Open(file)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return sum, err
	}
	u := strings.TrimRight(o.URL, "/") + "/v1/bots/" + url.PathEscape(o.Bot) + "/contacts/import"
	if o.Region != "" {
		u += "?region=" + url.QueryEscape(o.Region)
	}
	var body io.Reader = f
	var bar *progressBar
	if o.Progress != nil {
		bar = newProgressBar(o.Progress, st.Size())
		body = bar.reader(f)
		defer bar.finish()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return sum, err
	}
	req.ContentLength = st.Size()
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+o.Key)
	client := o.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return sum, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return sum, err
	}
	if bar != nil {
		bar.finish()
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code, Message, Field string
			}
			Summary *ingress.ImportSummary
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Message != "" {
			msg := fmt.Sprintf("import refused (%d %s): %s", resp.StatusCode, e.Error.Code, e.Error.Message)
			if e.Error.Field != "" {
				msg += " [field " + e.Error.Field + "]"
			}
			if e.Summary != nil {
				sum = *e.Summary
				msg += fmt.Sprintf(" (before that: %d created, %d updated)", sum.Created, sum.Updated)
			}
			return sum, errors.New(msg)
		}
		return sum, fmt.Errorf("import refused: %s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	if err := json.Unmarshal(raw, &sum); err != nil {
		return sum, fmt.Errorf("unreadable answer: %w", err)
	}
	return sum, nil
}

// progressBar draws "[#####.....]  45%  12.3 MiB / 27.4 MiB  8.1 MiB/s" on
// one terminal line, at most every 200 ms.
type progressBar struct {
	w     io.Writer
	total int64
	start time.Time

	mu   sync.Mutex
	sent int64
	last time.Time
	done bool
}

func newProgressBar(w io.Writer, total int64) *progressBar {
	return &progressBar{w: w, total: total, start: time.Now()}
}

type countingReader struct {
	r   io.Reader
	bar *progressBar
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.bar.add(int64(n))
	return n, err
}

func (b *progressBar) reader(r io.Reader) io.Reader { return countingReader{r: r, bar: b} }

func (b *progressBar) add(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent += n
	if now := time.Now(); now.Sub(b.last) >= 200*time.Millisecond {
		b.last = now
		b.draw(now)
	}
}

func (b *progressBar) draw(now time.Time) {
	const width = 30
	frac := 1.0
	if b.total > 0 {
		frac = min(float64(b.sent)/float64(b.total), 1)
	}
	filled := int(frac * width)
	rate := float64(b.sent) / max(now.Sub(b.start).Seconds(), 1e-3)
	fmt.Fprintf(b.w, "\r[%s%s] %3.0f%%  %s / %s  %s/s ", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
		frac*100, mib(float64(b.sent)), mib(float64(b.total)), mib(rate))
}

// finish draws the final state and ends the line (once).
func (b *progressBar) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	b.draw(time.Now())
	fmt.Fprintln(b.w)
}

func mib(n float64) string { return fmt.Sprintf("%.1f MiB", n/(1<<20)) }
