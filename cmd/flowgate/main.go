// Command flowgate runs Flowgate: `flowgate dev` runs everything in one
// process; `flowgate ingress|orchestrator|channel NAME` run one service.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "flowgate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		usage()
		return fmt.Errorf("missing command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev", "ingress", "orchestrator", "channel":
	case "contacts":
		return app.ContactsCommand(ctx, rest, os.Stdout, os.Stderr)
	case "dlq":
		return app.DLQCommand(ctx, rest, os.Stdout, os.Stderr)
	case "help", "-h", "--help":
		usage()
		return nil
	default:
		usage()
		return fmt.Errorf("unknown command %q", cmd)
	}
	cfg, rest, err := parseConfig(cmd, rest)
	if err != nil {
		return err
	}
	return app.Main(ctx, cmd, rest, cfg)
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: flowgate COMMAND [flags]

commands:
  dev                  everything in one process: embedded NATS, embedded store, sandbox channel
  ingress              the HTTP API (needs FLOWGATE_NATS_URL)
  orchestrator         flow runs (needs FLOWGATE_NATS_URL)
  channel NAME         a channel worker: sandbox, whatsapp, telegram, rcs
  contacts import FILE upload contacts (CSV or NDJSON) to a running Flowgate, with a progress bar
  dlq list|show|replay|purge  inspect and replay dead-lettered messages (admin key)

Run 'flowgate COMMAND -h' for the flags; each flag has a FLOWGATE_* environment variable.
`)
}
