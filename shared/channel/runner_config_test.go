package channel_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	rcs "github.com/flowgate/flowgate/channel-rcs"
	telegram "github.com/flowgate/flowgate/channel-telegram"
	whatsapp "github.com/flowgate/flowgate/channel-whatsapp"
	"github.com/flowgate/flowgate/shared/bus"
	"github.com/flowgate/flowgate/shared/bus/bustest"
	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/channel/sandbox"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store/sqlite"
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// The in-flight limit per account: 32 by default for providers without an
// idempotency key (WhatsApp, Telegram), none for RCS and the sandbox (they
// declare idempotent sends), overridden by the config. The runner reads no
// environment: main fills the config.
func TestRunnerInFlightLimitDefaults(t *testing.T) {
	_, b := bustest.Bus(t, bus.Config{Source: "/test"})
	st := sqlitetest.Open(t)

	limit := func(cfg channel.RunnerConfig, p provider.Provider) int {
		t.Helper()
		s, err := p.NewSender(provider.SenderDeps{Store: st})
		require.NoError(t, err)
		r, err := channel.NewRunner(cfg, channel.RunnerDeps{Sender: s, Capabilities: p.Capabilities.Runner(), Bus: b, Store: st})
		require.NoError(t, err)
		return r.Config().MaxInFlightPerAccount
	}
	wa, tg, rc, sb := whatsapp.Provider, telegram.Provider, rcs.Provider, sandbox.Provider
	require.Equal(t, channel.DefaultMaxInFlightPerAccount, limit(channel.RunnerConfig{}, wa))
	require.Equal(t, channel.DefaultMaxInFlightPerAccount, limit(channel.RunnerConfig{}, tg))
	require.Negative(t, limit(channel.RunnerConfig{}, rc), "RBM deduplicates the messageId")
	require.Negative(t, limit(channel.RunnerConfig{}, sb), "one transcript entry per id")
	require.Equal(t, 1, limit(channel.RunnerConfig{MaxInFlightPerAccount: 1}, wa))
	require.Equal(t, 4, limit(channel.RunnerConfig{MaxInFlightPerAccount: 4}, rc), "configured explicitly")
	require.Negative(t, limit(channel.RunnerConfig{MaxInFlightPerAccount: -1}, tg))

	// The environment variable main reads is no business of the runner's.
	t.Setenv("FLOWGATE_CHANNEL_MAX_IN_FLIGHT", "8")
	require.Equal(t, channel.DefaultMaxInFlightPerAccount, limit(channel.RunnerConfig{}, wa))

	// A provider declaring bundles needs a sender that takes them.
	_, err := channel.NewRunner(channel.RunnerConfig{}, channel.RunnerDeps{Sender: mustSender(t, wa, st),
		Capabilities: channel.Capabilities{IdempotentSends: true, Bundles: true}, Bus: b, Store: st})
	require.Error(t, err)
}

func mustSender(t *testing.T, p provider.Provider, st *sqlite.Store) channel.Sender {
	t.Helper()
	s, err := p.NewSender(provider.SenderDeps{Store: st})
	require.NoError(t, err)
	return s
}
