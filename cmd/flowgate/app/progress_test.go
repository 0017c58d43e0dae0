package app

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestProgressBarDraws(t *testing.T) {
	var b bytes.Buffer
	bar := newProgressBar(&b, 2<<20)
	r := bar.reader(strings.NewReader(strings.Repeat("x", 2<<20)))
	buf := make([]byte, 1<<20)
	for {
		if _, err := r.Read(buf); err != nil {
			break
		}
	}
	bar.finish()
	require.Contains(t, b.String(), "\r[")
	require.Contains(t, b.String(), "100%")
}

func TestIsTerminal(t *testing.T) {
	require.False(t, isTerminal(&bytes.Buffer{}))
	f, err := os.CreateTemp(t.TempDir(), "log")
	require.NoError(t, err)
	defer f.Close()
	require.False(t, isTerminal(f), "a file is not a terminal")
}
