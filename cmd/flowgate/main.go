// Command flowgate runs Flowgate: `flowgate dev` runs everything in one
// process; `flowgate ingress|orchestrator|channel NAME` run one service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "flowgate:", err)
		stop()
		os.Exit(exitCode(err))
	}
}

// exitCode is 1, or the code an error carries.
func exitCode(err error) int {
	var c interface{ ExitCode() int }
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return fmt.Errorf("missing command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev", "ingress", "orchestrator", "channel":
	case "contacts":
		return app.ContactsCommand(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "flowgate", versionString())
		return nil
	case "dlq":
		return app.DLQCommand(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		usage(stdout)
		return nil
	default:
		usage(stderr)
		return fmt.Errorf("unknown command %q", cmd)
	}
	cfg, rest, err := parseConfig(cmd, rest, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	return app.Main(ctx, cmd, rest, cfg)
}

// versionString is the -ldflags version, else the module version and VCS
// revision the binary was built from.
func versionString() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += " (modified)"
			}
		}
	}
	return v
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: flowgate COMMAND [flags]

commands:
  dev                  everything in one process: embedded NATS, embedded store, sandbox channel
  ingress              the HTTP API (needs FLOWGATE_NATS_URL)
  orchestrator         flow runs (needs FLOWGATE_NATS_URL)
  channel NAME         a channel worker: sandbox, whatsapp, telegram, rcs
  contacts import FILE upload contacts (CSV or NDJSON) to a running Flowgate, with a progress bar
  dlq list|show|replay|purge  inspect and replay dead-lettered messages (admin key)
  version              print the version

Run 'flowgate COMMAND -h' for the command's flags; each flag has a FLOWGATE_* environment variable.
`)
}
