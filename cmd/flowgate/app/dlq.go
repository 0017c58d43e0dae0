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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowgate/flowgate/shared/bus"
)

const dlqUsage = `usage: flowgate dlq COMMAND [flags]

  list [--from SEQ] [--limit N] [--json]   dead-lettered messages, oldest first
  show SEQ                                 one, with its payload (JSON)
  replay SEQ... | --all                    publish again on the original subject, then remove
  purge SEQ... | --all                     remove without replaying

flags: --url URL ($FLOWGATE_URL, default http://localhost:8080)
       --key KEY ($FLOWGATE_ADMIN_KEY: the admin key)`

// DLQClient calls the ingress's dead-letter admin routes.
type DLQClient struct {
	// URL is the base URL of the ingress, e.g. http://localhost:8080.
	URL string
	// Key is the admin key.
	Key    string
	Client *http.Client
}

func (c DLQClient) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	hc := c.Client
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string }
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			return fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return json.Unmarshal(body, out)
}

// List returns a page of dead letters from sequence from, and the next page's start (0: none).
func (c DLQClient) List(ctx context.Context, from uint64, limit int) ([]bus.DeadLetter, uint64, error) {
	var out struct {
		DeadLetters []bus.DeadLetter `json:"dead_letters"`
		Next        uint64           `json:"next"`
	}
	q := url.Values{"from": {strconv.FormatUint(from, 10)}, "limit": {strconv.Itoa(limit)}}
	err := c.do(ctx, "GET", "/v1/admin/dlq?"+q.Encode(), &out)
	return out.DeadLetters, out.Next, err
}

// All returns every dead letter.
func (c DLQClient) All(ctx context.Context) ([]bus.DeadLetter, error) {
	var all []bus.DeadLetter
	var from uint64
	for {
		page, next, err := c.List(ctx, from, 1000)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == 0 {
			return all, nil
		}
		from = next
	}
}

// Show returns one dead letter with its payload.
func (c DLQClient) Show(ctx context.Context, seq uint64) (bus.DeadLetter, error) {
	var dl bus.DeadLetter
	err := c.do(ctx, "GET", "/v1/admin/dlq/"+strconv.FormatUint(seq, 10), &dl)
	return dl, err
}

// Replay publishes a dead letter again on its original subject.
func (c DLQClient) Replay(ctx context.Context, seq uint64) (bus.DeadLetter, error) {
	var out struct {
		Replayed bus.DeadLetter `json:"replayed"`
	}
	err := c.do(ctx, "POST", "/v1/admin/dlq/"+strconv.FormatUint(seq, 10)+"/replay", &out)
	return out.Replayed, err
}

// Purge removes one dead letter.
func (c DLQClient) Purge(ctx context.Context, seq uint64) error {
	return c.do(ctx, "DELETE", "/v1/admin/dlq/"+strconv.FormatUint(seq, 10), nil)
}

// PurgeAll removes every dead letter and returns how many there were.
func (c DLQClient) PurgeAll(ctx context.Context) (uint64, error) {
	var out struct {
		Purged uint64 `json:"purged"`
	}
	err := c.do(ctx, "DELETE", "/v1/admin/dlq?all=true", &out)
	return out.Purged, err
}

// DLQCommand runs `flowgate dlq list|show|replay|purge`.
func DLQCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(dlqUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("flowgate dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv("FLOWGATE_URL")
	if def == "" {
		def = "http://localhost:8080"
	}
	var c DLQClient
	fs.StringVar(&c.URL, "url", def, "Flowgate base URL ($FLOWGATE_URL)")
	fs.StringVar(&c.Key, "key", os.Getenv("FLOWGATE_ADMIN_KEY"), "the admin key ($FLOWGATE_ADMIN_KEY)")
	from := fs.Uint64("from", 0, "list: first sequence")
	limit := fs.Int("limit", 100, "list: at most this many (1-1000)")
	asJSON := fs.Bool("json", false, "list: JSON instead of a table")
	all := fs.Bool("all", false, "replay, purge: every dead letter")
	// Sequences may come before or after the flags.
	var seqArgs []string
	rest := args[1:]
	for len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		seqArgs, rest = append(seqArgs, rest[0]), rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	seqArgs = append(seqArgs, fs.Args()...)
	if c.Key == "" {
		return errors.New("the admin key is required (--key or FLOWGATE_ADMIN_KEY)")
	}
	seqs := make([]uint64, 0, len(seqArgs))
	for _, a := range seqArgs {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a dead letter's sequence", a)
		}
		seqs = append(seqs, n)
	}
	switch sub {
	case "list":
		page, next, err := c.List(ctx, *from, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(map[string]any{"dead_letters": page, "next": next})
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tCONSUMER\tSUBJECT\tEVENT\tREASON")
		for _, dl := range page {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", dl.Seq, dl.Time.Format(time.RFC3339), dl.Consumer, dl.Subject, dl.EventID, dl.Reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if next != 0 {
			fmt.Fprintf(stderr, "more: flowgate dlq list --from %d\n", next)
		}
		return nil
	case "show":
		if len(seqs) != 1 {
			return errors.New("usage: flowgate dlq show SEQ")
		}
		dl, err := c.Show(ctx, seqs[0])
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(dl)
	case "replay", "purge":
		if *all == (len(seqs) > 0) {
			return fmt.Errorf("usage: flowgate dlq %s SEQ... | --all", sub)
		}
		if sub == "purge" && *all {
			n, err := c.PurgeAll(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "purged %d dead letters\n", n)
			return nil
		}
		if *all {
			list, err := c.All(ctx)
			if err != nil {
				return err
			}
			for _, dl := range list {
				seqs = append(seqs, dl.Seq)
			}
		}
		for _, seq := range seqs {
			if sub == "purge" {
				if err := c.Purge(ctx, seq); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "purged %d\n", seq)
				continue
			}
			dl, err := c.Replay(ctx, seq)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "replayed %d to %s (event %s)\n", seq, dl.Subject, dl.EventID)
		}
		return nil
	default:
		return errors.New(dlqUsage)
	}
}
