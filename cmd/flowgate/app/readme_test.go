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

// runDocBlock runs the first sh block after heading in the document at path
// (relative to the repository root) as written, against a running Flowgate:
// only the address (localhost:8080) and the data directory are replaced. It
// returns the block's output and the directory it ran in, and fails the test
// when a command fails.
func runDocBlock(t *testing.T, path, heading string) (out, dir string) {
	t.Helper()
	_, err := exec.LookPath("curl")
	require.NoError(t, err, "%s's examples use curl; install it (apt-get install curl)", path)
	doc, err := os.ReadFile(filepath.Join("../../..", path))
	require.NoError(t, err)
	parts := strings.SplitN(string(doc), heading, 2)
	require.Len(t, parts, 2, "%s has a %q section", path, heading)
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(parts[1])
	require.NotNil(t, block, "the %q section of %s has a sh block", heading, path)

	dir = t.TempDir()
	d, err := app.StartDev(context.Background(), app.Config{
		HTTPAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Stop()) }()

	script := strings.ReplaceAll(block[1], "localhost:8080", d.Addr)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir // data/admin.key is relative to the repository root in the documents
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, string(b))
	return string(b), dir
}

// TestReadmeQuickStart runs the README's quick start as written against a
// running Flowgate; only the address and the data directory are replaced.
func TestReadmeQuickStart(t *testing.T) {
	s, _ := runDocBlock(t, "README.md", "## Quick start")
	i1 := strings.Index(s, `"text":"Welcome John Doe! 🎉"`)
	i2 := strings.Index(s, `"text":"You've signed up for the Premium plan."`)
	i3 := strings.Index(s, `"text":"Referral code: REF123"`)
	require.True(t, i1 >= 0 && i2 > i1 && i3 > i2, "three welcome messages in order, got:\n%s", s)
}
