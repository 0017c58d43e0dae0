package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets a test run this binary's main as a child process:
// FLOWGATE_TEST_RUN_MAIN holds the command line.
func TestMain(m *testing.M) {
	if args := os.Getenv("FLOWGATE_TEST_RUN_MAIN"); args != "" {
		os.Args = append([]string{"flowgate"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestUnreachableDependencyExitsWithAClearError: every service, given a
// MongoDB or a NATS server that does not answer (port 1 on loopback
// refuses connections), stops with exit status 1 and a message naming the
// dependency — not a panic, not a hang.
func TestUnreachableDependencyExitsWithAClearError(t *testing.T) {
	const mongoDown = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500&connectTimeoutMS=500"
	const natsDown = "nats://127.0.0.1:1"
	services := []string{"dev", "ingress", "orchestrator", "channel sandbox", "channel whatsapp"}
	cases := []struct {
		dep  string
		env  []string
		want string
	}{
		{"mongodb", []string{"FLOWGATE_MONGODB_URI=" + mongoDown, "FLOWGATE_NATS_URL=" + natsDown}, "MongoDB (FLOWGATE_MONGODB_URI) unreachable"},
		{"nats", []string{"FLOWGATE_NATS_URL=" + natsDown}, "bus: unavailable: connect nats://127.0.0.1:1"},
	}
	for _, svc := range services {
		for _, c := range cases {
			if svc == "dev" && c.dep == "mongodb" {
				// dev embeds NATS: only the store is external.
				c.env = []string{"FLOWGATE_MONGODB_URI=" + mongoDown}
			}
			t.Run(svc+"/"+c.dep, func(t *testing.T) {
				t.Parallel()
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(),
					"FLOWGATE_TEST_RUN_MAIN="+svc,
					"FLOWGATE_DATA_DIR="+t.TempDir(),
					"FLOWGATE_HTTP_ADDR=127.0.0.1:0",
					"FLOWGATE_METRICS_ADDR=off",
					"FLOWGATE_ADMIN_KEY=test-admin-key-0123456789",
					"FLOWGATE_NO_DEMO=true",
					"FLOWGATE_MONGODB_URI=", "FLOWGATE_NATS_URL=",
				)
				cmd.Env = append(cmd.Env, c.env...)
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 {
					t.Fatalf("exit: %v, want status 1; output:\n%s", err, out)
				}
				text := string(out)
				if strings.Contains(text, "panic") || strings.Contains(text, "goroutine ") {
					t.Fatalf("panicked:\n%s", text)
				}
				if !strings.Contains(text, "flowgate: ") || !strings.Contains(text, c.want) {
					t.Fatalf("output does not say %q:\n%s", c.want, text)
				}
			})
		}
	}
}
