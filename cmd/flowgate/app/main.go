package app

import (
	"context"
	"errors"
	"fmt"
)

// Main runs one command with a parsed configuration.
func Main(ctx context.Context, cmd string, args []string, cfg Config) error {
	cfg.setDefaults()
	if cmd == "dev" {
		return RunDev(ctx, cfg)
	}
	if cmd == "channel" && len(args) != 1 {
		return errors.New("usage: flowgate channel NAME (sandbox, whatsapp, telegram, rcs)")
	}
	if cmd == "ingress" && cfg.AdminKey == "" {
		return errors.New("FLOWGATE_ADMIN_KEY is required")
	}
	st, err := OpenServiceStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	st = instrumentStore(cfg, st)
	b, err := connectBus(ctx, cfg, "/flowgate/"+cmd, retryWaitFor(cfg, cmd))
	if err != nil {
		return err
	}
	defer b.Close()
	registerJetStreamCollector(b, cfg.Logger)
	var service func(context.Context) error
	switch cmd {
	case "ingress":
		service = func(ctx context.Context) error { return RunIngress(ctx, cfg, st, b) }
	case "orchestrator":
		service = func(ctx context.Context) error { return RunOrchestrator(ctx, cfg, st, b) }
	case "channel":
		service = func(ctx context.Context) error { return RunChannel(ctx, cfg, args[0], st, b) }
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	addr := metricsAddr(cfg, cmd)
	if addr == "" {
		return service(ctx)
	}
	return waitAll(ctx, service, func(ctx context.Context) error { return serveOps(ctx, addr, b, st, cfg.Logger) })
}
