package deploytest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The external tools the checks need, all from Debian's packages.
var externalTools = []string{"prometheus", "promtool", "docker-compose"}

var (
	installOnce sync.Once
	installErr  error
)

// requireTools makes sure the named tools are on PATH: when one is missing
// and the test runs as root (as CI does), it runs
// deploy/scripts/install-test-deps.sh. It fails the test when they still
// cannot be had, unless FLOWGATE_SKIP_PROMETHEUS=1 says to skip, which is
// announced loudly.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Getenv("FLOWGATE_SKIP_PROMETHEUS") == "1" {
		msg := fmt.Sprintf("\n*** FLOWGATE_SKIP_PROMETHEUS=1: SKIPPING %s, which needs %v. ***\n*** The Prometheus, promtool and docker-compose checks did NOT run. ***\n", t.Name(), tools)
		fmt.Fprint(os.Stderr, msg)
		t.Skip(msg)
	}
	missing := func() []string {
		var m []string
		for _, tool := range tools {
			if _, err := exec.LookPath(tool); err != nil {
				m = append(m, tool)
			}
		}
		return m
	}
	if len(missing()) == 0 {
		return
	}
	installOnce.Do(func() {
		if os.Geteuid() != 0 {
			installErr = fmt.Errorf("not root, so the test cannot install them itself")
			return
		}
		script := filepath.Join(repoRoot(t), "deploy", "scripts", "install-test-deps.sh")
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "sh", script).CombinedOutput()
		if err != nil {
			installErr = fmt.Errorf("%s: %v\n%s", script, err, out)
		}
	})
	if m := missing(); len(m) > 0 {
		t.Fatalf("%v not found (%v).\nInstall them with `sh deploy/scripts/install-test-deps.sh` (Debian packages prometheus and docker-compose; needs root),\nor set FLOWGATE_SKIP_PROMETHEUS=1 to skip these checks knowingly.", m, installErr)
	}
}

// run runs a command and fails the test with its output when it fails.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}
