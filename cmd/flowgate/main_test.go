package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
)

func TestVersionAndHelp(t *testing.T) {
	var out, errw bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errw); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "flowgate ") {
		t.Fatalf("version: %q", out.String())
	}
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}} {
		out.Reset()
		if err := run(context.Background(), args, &out, &errw); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.Contains(out.String(), "commands:") {
			t.Fatalf("%v: usage not on stdout: %q", args, out.String())
		}
	}
	if errw.Len() != 0 {
		t.Fatalf("help wrote to stderr: %q", errw.String())
	}
}

// TestPerCommandFlags: `flowgate CMD -h` prints on stdout, exits 0, and
// lists only that command's flags.
func TestPerCommandFlags(t *testing.T) {
	cases := map[string]struct{ has, hasNot []string }{
		"dev":          {[]string{"-http-addr", "-no-demo", "-nats-listen", "-rate-limit", "-retention"}, []string{"-poll", "-metrics-addr", "-set-webhook"}},
		"ingress":      {[]string{"-http-addr", "-admin-key", "-rate-limit", "-nats-url"}, []string{"-poll", "-no-demo", "-metrics-addr", "-http-allow-private", "-webhook-retry-period"}},
		"orchestrator": {[]string{"-metrics-addr", "-webhook-retry-period", "-http-allow-private"}, []string{"-http-addr", "-admin-key", "-poll", "-rate-limit", "-no-demo"}},
		"channel":      {[]string{"-metrics-addr", "-poll", "-set-webhook"}, []string{"-http-addr", "-admin-key", "-rate-limit", "-webhook-retry-period"}},
	}
	for cmd, c := range cases {
		var out, errw bytes.Buffer
		if err := run(context.Background(), []string{cmd, "-h"}, &out, &errw); err != nil {
			t.Fatalf("%s -h: %v", cmd, err)
		}
		lists := func(f string) bool {
			return strings.Contains(out.String(), "  "+f+" ") || strings.Contains(out.String(), "  "+f+"\n")
		}
		for _, f := range c.has {
			if !lists(f) {
				t.Errorf("%s -h lacks %s:\n%s", cmd, f, out.String())
			}
		}
		for _, f := range c.hasNot {
			if lists(f) {
				t.Errorf("%s -h lists %s, which it does not use", cmd, f)
			}
		}
		if errw.Len() != 0 {
			t.Errorf("%s -h wrote to stderr: %q", cmd, errw.String())
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"orchestrator", "-poll"}, &out, &out); err == nil {
		t.Fatal("orchestrator accepted the channel's -poll flag")
	}
	out.Reset()
	if err := run(context.Background(), []string{"contacts", "import", "-h"}, &out, &out); err != nil {
		t.Fatalf("contacts import -h: %v", err)
	}
	if !strings.Contains(out.String(), "-bot") || !strings.Contains(out.String(), "Exit status") {
		t.Fatalf("contacts import -h: %q", out.String())
	}
}

func TestExitCode(t *testing.T) {
	if exitCode(errors.New("x")) != 1 {
		t.Fatal("plain errors exit 1")
	}
	if exitCode(app.RejectedRowsError{Count: 3}) != 2 {
		t.Fatal("rejected rows exit 2")
	}
}
