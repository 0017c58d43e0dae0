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
	"github.com/flowgate/flowgate/shared/store/sqlite/sqlitetest"
)

// The in-flight limit per account: 32 by default for senders without an
// idempotency key (WhatsApp, Telegram), none for RCS and the sandbox,
// overridden by the config or FLOWGATE_CHANNEL_MAX_IN_FLIGHT.
func TestRunnerInFlightLimitDefaults(t *testing.T) {
	_, b := bustest.Bus(t, bus.Config{Source: "/test"})
	st := sqlitetest.Open(t)

	wa, err := whatsapp.NewSender()
	require.NoError(t, err)
	tg, err := telegram.NewSender()
	require.NoError(t, err)
	rc, err := rcs.NewSender()
	require.NoError(t, err)
	limit := func(cfg channel.RunnerConfig, s channel.Sender) int {
		t.Helper()
		r, err := channel.NewRunner(cfg, s, b, st, nil, nil)
		require.NoError(t, err)
		return r.Config().MaxInFlightPerAccount
	}
	require.Equal(t, channel.DefaultMaxInFlightPerAccount, limit(channel.RunnerConfig{}, wa))
	require.Equal(t, channel.DefaultMaxInFlightPerAccount, limit(channel.RunnerConfig{}, tg))
	require.Negative(t, limit(channel.RunnerConfig{}, rc), "RBM deduplicates the messageId")
	require.Negative(t, limit(channel.RunnerConfig{}, sandbox.NewSender(st)), "one transcript entry per id")
	require.Equal(t, 1, limit(channel.RunnerConfig{MaxInFlightPerAccount: 1}, wa))
	require.Equal(t, 4, limit(channel.RunnerConfig{MaxInFlightPerAccount: 4}, rc), "configured explicitly")

	t.Setenv(channel.EnvMaxInFlight, "8")
	require.Equal(t, 8, limit(channel.RunnerConfig{}, wa))
	require.Equal(t, 2, limit(channel.RunnerConfig{MaxInFlightPerAccount: 2}, wa), "the config wins over the environment")
	t.Setenv(channel.EnvMaxInFlight, "-1")
	require.Negative(t, limit(channel.RunnerConfig{}, tg))
	for _, bad := range []string{"0", "many"} {
		t.Setenv(channel.EnvMaxInFlight, bad)
		_, err := channel.NewRunner(channel.RunnerConfig{}, wa, b, st, nil, nil)
		require.Error(t, err, bad)
	}
}
