package ingress

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// A generated retry key names one trigger id: the same for every retry,
// bound to the bot, a UUIDv7 that sorts by the key's time.
func TestRetryKeyTriggerID(t *testing.T) {
	k1 := newRetryKey()
	require.True(t, strings.HasPrefix(k1, retryKeyPrefix))
	id := TriggerID("acme", k1)
	require.Equal(t, id, TriggerID("acme", k1), "a retry names the same trigger")
	require.NotEqual(t, id, TriggerID("globex", k1), "another bot's key names another trigger")
	u, err := uuid.Parse(id)
	require.NoError(t, err)
	require.EqualValues(t, 7, u.Version())
	require.Equal(t, uuid.RFC4122, u.Variant())

	time.Sleep(2 * time.Millisecond) // UUIDv7 time has millisecond precision
	k2 := newRetryKey()
	require.Less(t, id, TriggerID("acme", k2), "ids of later keys sort after")

	// Anything else with the prefix is an ordinary key.
	require.Equal(t, TriggerID("acme", "flowgate-retry-not-a-uuid"), TriggerID("acme", "flowgate-retry-not-a-uuid"))
	v4 := retryKeyPrefix + uuid.NewString()
	_, ok := retryKeyID("acme", v4)
	require.False(t, ok, "only a UUIDv7 key takes the time-ordered form")
}
