package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
)

// runnableBlocks are docs/api.md's examples that run as written: the sh
// blocks that begin with BASE=http://localhost:8080.
func runnableBlocks(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../../docs/api.md")
	require.NoError(t, err)
	var out []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		if strings.HasPrefix(m[1], "BASE=http://localhost:8080\n") {
			out = append(out, m[1])
		}
	}
	require.GreaterOrEqual(t, len(out), 2, "docs/api.md has the Management block and the every-route block")
	return out
}

// logicalLines joins shell continuation lines.
func logicalLines(script string) []string {
	return strings.Split(strings.ReplaceAll(script, "\\\n", " "), "\n")
}

var (
	curlCall   = regexp.MustCompile(`(^|[\s($|])curl\s`)
	wantStatus = regexp.MustCompile(`#\s*([1-5]\d\d)\b`)
)

// expectCurl turns every curl of a runnable block into a checked call:
// a curl whose line ends with a "# NNN" comment must be answered NNN (the
// test's curl wrapper checks it); any other curl must use -f (fail on an
// error status). It returns the script to run and the curl lines.
func expectCurl(t *testing.T, block string) (string, []string) {
	t.Helper()
	var lines, calls []string
	for _, l := range logicalLines(block) {
		loc := curlCall.FindStringIndex(l)
		if loc == nil || strings.HasPrefix(strings.TrimSpace(l), "#") {
			lines = append(lines, l)
			continue
		}
		calls = append(calls, l)
		at := loc[1] - len("curl ")
		if m := wantStatus.FindStringSubmatch(l[at:]); m != nil {
			l = l[:at] + "FG_EXPECT=" + m[1] + " " + l[at:]
		} else {
			require.Regexp(t, `\scurl\s+-f|^curl\s+-f|\(curl\s+-f`, l, "a documented curl must say its status (# 200) or use -f: %s", l)
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n"), calls
}

// curlWrapper checks FG_EXPECT, when set, against the answer's status and
// prints the body as curl would.
const curlWrapper = `curl() {
  if [ -z "${FG_EXPECT:-}" ]; then command curl "$@"; return; fi
  local out code; out=$(mktemp)
  code=$(command curl -sS -o "$out" -w '%{http_code}' "$@") || { echo "curl failed: curl $*" >&2; return 1; }
  cat "$out"; rm -f "$out"; echo
  if [ "$code" != "$FG_EXPECT" ]; then echo "expected $FG_EXPECT, got $code: curl $*" >&2; return 1; fi
}
`

// TestAPIDocExamples runs docs/api.md's runnable examples as written
// against a running Flowgate (only the address and the data directory are
// replaced): every curl is answered the status it documents (# 201), or
// succeeds (-f).
func TestAPIDocExamples(t *testing.T) {
	_, err := exec.LookPath("curl")
	require.NoError(t, err, "the examples use curl; install it (apt-get install curl)")
	for _, tool := range []string{"openssl", "base64"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "the examples use %s", tool)
	}
	dir := t.TempDir()
	d, err := app.StartDev(context.Background(), app.Config{
		HTTPAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Stop()) }()

	var all strings.Builder
	for i, block := range runnableBlocks(t) {
		script, _ := expectCurl(t, block)
		script = strings.ReplaceAll(curlWrapper+script, "localhost:8080", d.Addr)
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "block %d:\n%s", i, out)
		all.Write(out)
	}
	s := all.String()
	require.Contains(t, s, `"scope":"trigger"`)
	require.Contains(t, s, `"activated_from":1`)
	require.Contains(t, s, `"deleted":true`)
	require.NotContains(t, s, "123:rotated", "secrets are never shown")
	require.Contains(t, s, `"type":"webhooks"`, "the Recrubo webhook was registered")
	y, err := os.ReadFile(filepath.Join(dir, "welcome.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(y), "text: Hello {{ name }}")
}

// TestAPIDocCoversRoutes: every path of /openapi.json is in docs/api.md,
// and every operation (method and path) has a curl example in a runnable
// block (so TestAPIDocExamples runs it).
func TestAPIDocCoversRoutes(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/api.md")
	require.NoError(t, err)
	spec, err := os.ReadFile("../../../ingress/openapi.json")
	require.NoError(t, err)
	var o struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(spec, &o))
	for p := range o.Paths {
		require.Contains(t, string(doc), p, "docs/api.md does not mention %s", p)
	}
	type call struct{ method, path string }
	var calls []call
	urlRe := regexp.MustCompile(`\$BASE(/[^\s"'?]*)`)
	methodRe := regexp.MustCompile(`\s-X\s+([A-Z]+)`)
	for _, block := range runnableBlocks(t) {
		_, lines := expectCurl(t, block)
		for _, l := range lines {
			u := urlRe.FindStringSubmatch(l)
			require.NotNil(t, u, "a documented curl names its URL as $BASE/...: %s", l)
			method := "GET"
			if m := methodRe.FindStringSubmatch(l); m != nil {
				method = m[1]
			} else if regexp.MustCompile(`\s(-d|--data|--data-binary|-F|--form)\s`).MatchString(l) {
				method = "POST"
			}
			calls = append(calls, call{method, u[1]})
		}
	}
	var missing []string
	for p, ops := range o.Paths {
		re := regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(p), `[^/]+`) + "$")
		for m := range ops {
			method := strings.ToUpper(m)
			if method != "GET" && method != "POST" && method != "PUT" && method != "PATCH" && method != "DELETE" {
				continue
			}
			found := false
			for _, c := range calls {
				if c.method == method && re.MatchString(c.path) {
					found = true
					break
				}
			}
			if !found {
				missing = append(missing, method+" "+p)
			}
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "operations of /openapi.json without a runnable curl example in docs/api.md")
}
