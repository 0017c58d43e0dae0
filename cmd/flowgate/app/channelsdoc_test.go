package app_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// The bot of docs/channels.md's example (a WhatsApp account) is one the
// admin API creates as written.
func TestChannelsDocBotExample(t *testing.T) {
	raw, err := os.ReadFile("../../../docs/channels.md")
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(string(raw), -1)
	require.Len(t, blocks, 1, "docs/channels.md's examples changed: test the new ones")
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	out := c.must("POST", "/v1/bots", admin, blocks[0][1], 201)
	require.NotEmpty(t, out["api_key"])
}
