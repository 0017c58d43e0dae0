package telegram_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	telegram "github.com/flowgate/flowgate/channel-telegram"
	telegramdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
)

func TestPollerDeliversUpdatesInOrderAndRetriesFailedBatches(t *testing.T) {
	f := newFixture(t)
	acct := *f.bot.Channels.Telegram
	p, err := f.sender.NewPoller(acct, telegram.PollerConfig{Timeout: 2 * time.Second, RetryDelay: 10 * time.Millisecond})
	require.NoError(t, err)

	var mu sync.Mutex
	var got []int64
	failOnce := true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- p.Run(ctx, func(batch []telegram.Update) error {
			mu.Lock()
			defer mu.Unlock()
			if failOnce {
				failOnce = false
				return errors.New("store unavailable")
			}
			for _, u := range batch {
				parsed, err := telegram.ParseUpdate("acme", u.Raw)
				require.NoError(t, err)
				require.Equal(t, u.ID, parsed.UpdateID)
				got = append(got, u.ID)
			}
			return nil
		})
	}()

	// The poller is waiting in a long poll: pushed updates arrive at once.
	time.Sleep(100 * time.Millisecond)
	u1 := f.double.PushUpdate(testToken, telegramdouble.TextUpdate(0, alice, 1, "one"))
	u2 := f.double.PushUpdate(testToken, telegramdouble.CallbackUpdate(0, alice, 1, "two"))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	}, 5*time.Second, 10*time.Millisecond)
	u3 := f.double.PushUpdate(testToken, telegramdouble.TextUpdate(0, alice, 2, "three"))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 3
	}, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	mu.Lock()
	require.Equal(t, []int64{u1.UpdateID, u2.UpdateID, u3.UpdateID}, got, "the failed batch came back; nothing twice after success")
	mu.Unlock()
	require.Equal(t, u3.UpdateID+1, p.Offset())

	// A new poller starting from the saved offset sees nothing old: Run
	// confirmed the offset to Telegram on the way out.
	p2, err := f.sender.NewPoller(acct, telegram.PollerConfig{Timeout: 0})
	require.NoError(t, err)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	var again int
	require.NoError(t, p2.Run(ctx2, func(b []telegram.Update) error { again += len(b); return nil }))
	require.Zero(t, again)
}

func TestPollerStopsWhileWebhookIsSet(t *testing.T) {
	f := newFixture(t)
	acct := *f.bot.Channels.Telegram
	require.NoError(t, f.sender.SetWebhook(context.Background(), acct, "https://example.com/hook", "abc"))
	p, err := f.sender.NewPoller(acct, telegram.PollerConfig{Timeout: time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = p.Run(ctx, func([]telegram.Update) error { return nil })
	requirePermanent(t, err, "409", false)
}

func TestPollerHonoursRetryAfter(t *testing.T) {
	f := newFixture(t)
	f.double.FailNext(1, telegramdouble.APIError{Code: 429, Description: "Too Many Requests: retry after 1", RetryAfter: 1})
	p, err := f.sender.NewPoller(*f.bot.Channels.Telegram, telegram.PollerConfig{Timeout: time.Second})
	require.NoError(t, err)
	f.double.PushUpdate(testToken, telegramdouble.TextUpdate(0, alice, 1, "x"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	var at time.Duration
	_ = p.Run(ctx, func(b []telegram.Update) error {
		at = time.Since(start)
		cancel()
		return nil
	})
	require.GreaterOrEqual(t, at, time.Second, "the poller waited retry_after before asking again")
}

func TestPollerConfigValidation(t *testing.T) {
	s, err := telegram.NewSender()
	require.NoError(t, err)
	acct := *newFixture(t).bot.Channels.Telegram
	_, err = s.NewPoller(acct, telegram.PollerConfig{Timeout: time.Minute})
	require.Error(t, err)
	_, err = s.NewPoller(acct, telegram.PollerConfig{Limit: 101})
	require.Error(t, err)
	acct.BotToken = "bad"
	_, err = s.NewPoller(acct, telegram.PollerConfig{})
	require.Error(t, err)
}
