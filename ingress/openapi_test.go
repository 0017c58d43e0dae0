package ingress

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOpenAPICoversRoutes keeps /openapi.json in step with the routes:
// every route is documented, and every documented path is served.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(openAPI, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	s := &server{}
	param := regexp.MustCompile(`:([A-Za-z_]+)`)
	served := map[string]bool{}
	for _, r := range s.routes().Routes() {
		path := param.ReplaceAllString(r.Path, "{$1}")
		served[strings.ToLower(r.Method)+" "+path] = true
		ops, ok := doc.Paths[path]
		require.True(t, ok, "route %s %s is not in openapi.json", r.Method, path)
		_, ok = ops[strings.ToLower(r.Method)]
		require.True(t, ok, "method %s of %s is not in openapi.json", r.Method, path)
	}
	for path, ops := range doc.Paths {
		for m := range ops {
			require.True(t, served[m+" "+path], "openapi.json documents %s %s, which is not served", m, path)
		}
	}
}
