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
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
)

// TestAPIDocExamples runs the curl examples of docs/api.md's Management
// section as written against a running Flowgate (only the address and the
// data directory are replaced): every command must succeed (curl -f).
func TestAPIDocExamples(t *testing.T) {
	_, err := exec.LookPath("curl")
	require.NoError(t, err, "the examples use curl; install it (apt-get install curl)")
	doc, err := os.ReadFile("../../../docs/api.md")
	require.NoError(t, err)
	parts := strings.SplitN(string(doc), "## Management", 2)
	require.Len(t, parts, 2, "docs/api.md has a Management section")
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(parts[1])
	require.NotNil(t, block, "the Management section has a sh block")

	dir := t.TempDir()
	d, err := app.StartDev(context.Background(), app.Config{
		HTTPAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Stop()) }()

	script := strings.ReplaceAll(block[1], "localhost:8080", d.Addr)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	s := string(out)
	require.Contains(t, s, `"scope":"trigger"`)
	require.Contains(t, s, `"activated_from":1`)
	require.Contains(t, s, `"deleted":true`)
	require.NotContains(t, s, "123:rotated", "secrets are never shown")
	y, err := os.ReadFile(filepath.Join(dir, "welcome.yaml"))
	require.NoError(t, err)
	require.Contains(t, string(y), "text: Hello {{ name }}")
}

// TestAPIDocCoversRoutes: every path of /openapi.json is in docs/api.md.
func TestAPIDocCoversRoutes(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/api.md")
	require.NoError(t, err)
	spec, err := os.ReadFile("../../../ingress/openapi.json")
	require.NoError(t, err)
	var o struct {
		Paths map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(spec, &o))
	for p := range o.Paths {
		require.Contains(t, string(doc), p, "docs/api.md does not mention %s", p)
	}
}
