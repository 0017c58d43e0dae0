package app_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAPIDocExamples runs the curl examples of docs/api.md's Management
// section as written against a running Flowgate (only the address and the
// data directory are replaced): every command must succeed (curl -f).
func TestAPIDocExamples(t *testing.T) {
	s, dir := runDocBlock(t, "docs/api.md", "## Management")
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
