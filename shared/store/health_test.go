package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"

	"github.com/stretchr/testify/require"
)

func TestErrUnavailableIsTransientAndComparable(t *testing.T) {
	err := fmt.Errorf("%w: sqlite: commit: disk full", ErrUnavailable)
	require.ErrorIs(t, err, ErrUnavailable)
	var tr interface{ Transient() bool }
	require.True(t, errors.As(err, &tr) && tr.Transient())
	require.NotErrorIs(t, ErrNotFound, ErrUnavailable)
	require.Equal(t, "store: unavailable", ErrUnavailable.Error())
}

func TestOutagesEndOnAWriteNotARead(t *testing.T) {
	now := testclock.Date(2026, 1, 2, 3, 4, 5)
	o := Outages{now: func() time.Time { return now }}
	require.NoError(t, o.RecentUnavailable())

	o.Observe(true, ErrNotFound) // an answer, not an outage
	require.NoError(t, o.RecentUnavailable())

	o.Observe(true, fmt.Errorf("%w: disk full", ErrUnavailable))
	require.ErrorIs(t, o.RecentUnavailable(), ErrUnavailable)

	now = now.Add(time.Second)
	o.Observe(false, nil) // reads go on working on a full disk
	require.ErrorIs(t, o.RecentUnavailable(), ErrUnavailable)

	now = now.Add(time.Second)
	o.Observe(true, nil)
	require.NoError(t, o.RecentUnavailable(), "a write succeeded since")

	o.Observe(true, fmt.Errorf("%w: disk full", ErrUnavailable))
	require.Error(t, o.RecentUnavailable())
	now = now.Add(UnavailableWindow + time.Second)
	require.NoError(t, o.RecentUnavailable(), "an old failure no longer counts")
}
