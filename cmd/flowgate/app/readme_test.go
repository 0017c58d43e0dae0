package app_test

import (
	"context"
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

// TestReadmeQuickStart runs the README's quick start as written against a
// running Flowgate; only the address and the data directory are replaced.
func TestReadmeQuickStart(t *testing.T) {
	_, err := exec.LookPath("curl")
	require.NoError(t, err, "the quick start uses curl; install it (apt-get install curl)")
	readme, err := os.ReadFile("../../../README.md")
	require.NoError(t, err)
	quick := strings.SplitN(string(readme), "## Quick start", 2)
	require.Len(t, quick, 2, "README has a Quick start section")
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(quick[1])
	require.NotNil(t, block, "the quick start has a sh block")

	dir := t.TempDir()
	d, err := app.StartDev(context.Background(), app.Config{
		HTTPAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Stop()) }()

	script := strings.ReplaceAll(block[1], "localhost:8080", d.Addr)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir // data/admin.key is relative to the repository root in the README
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	s := string(out)
	i1 := strings.Index(s, `"text":"Welcome John Doe! 🎉"`)
	i2 := strings.Index(s, `"text":"You've signed up for the Premium plan."`)
	i3 := strings.Index(s, `"text":"Referral code: REF123"`)
	require.True(t, i1 >= 0 && i2 > i1 && i3 > i2, "three welcome messages in order, got:\n%s", s)
}
