package events_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/events"
)

func bundle(run string) events.Outbound {
	return events.Outbound{BotID: "acme", RunID: run, ContactID: "c-" + run, Channel: events.ChannelSandbox, To: "u-" + run, Lane: events.LaneHigh,
		Messages: []events.OutboundMessage{{ID: run + ":1", Seq: 1, Content: events.Content{Type: events.ContentText, Text: "hi"}}}}
}

// Bundles reads an outbound message of either type: a bundle alone, or the
// bundles a batch carries, in order; anything that is not JSON of the type
// is an error.
func TestBundles(t *testing.T) {
	one, err := json.Marshal(bundle("r1"))
	require.NoError(t, err)
	got, err := events.Bundles(events.TypeOutbound, one)
	require.NoError(t, err)
	require.Equal(t, []events.Outbound{bundle("r1")}, got)
	require.Equal(t, "out:r1:1", events.OutboundID(got[0]))

	batch, err := json.Marshal(events.OutboundBatch{Bundles: []events.Outbound{bundle("r1"), bundle("r2")}})
	require.NoError(t, err)
	got, err = events.Bundles(events.TypeOutboundBatch, batch)
	require.NoError(t, err)
	require.Equal(t, []events.Outbound{bundle("r1"), bundle("r2")}, got)

	for _, bad := range []string{``, `{`, `[]`, `"x"`, `{"messages": 3}`} {
		_, err := events.Bundles(events.TypeOutbound, []byte(bad))
		require.Error(t, err, bad)
	}
	for _, bad := range []string{``, `{`, `[]`, `{"bundles": {}}`, `{"bundles": [3]}`} {
		_, err := events.Bundles(events.TypeOutboundBatch, []byte(bad))
		require.Error(t, err, bad)
	}
}

// FuzzBundles: any payload either fails to decode or decodes to bundles
// that encode again and decode to as many bundles; it never panics.
func FuzzBundles(f *testing.F) {
	one, _ := json.Marshal(bundle("r1"))
	batch, _ := json.Marshal(events.OutboundBatch{Bundles: []events.Outbound{bundle("r1"), bundle("r2")}})
	f.Add(true, batch)
	f.Add(false, one)
	f.Add(true, []byte(`{"bundles":null}`))
	f.Add(false, []byte(`{"messages":[{"id":"x","content":{"type":"text"}}]}`))
	f.Fuzz(func(t *testing.T, isBatch bool, data []byte) {
		typ := events.TypeOutbound
		if isBatch {
			typ = events.TypeOutboundBatch
		}
		got, err := events.Bundles(typ, data)
		if err != nil {
			return
		}
		if !isBatch && len(got) != 1 {
			t.Fatalf("a bundle alone decoded to %d bundles", len(got))
		}
		var again []byte
		if isBatch {
			again, err = json.Marshal(events.OutboundBatch{Bundles: got})
		} else {
			again, err = json.Marshal(got[0])
		}
		if err != nil {
			return // values JSON cannot encode again (e.g. NaN inside data) are the decoder's to accept
		}
		back, err := events.Bundles(typ, again)
		if err != nil {
			t.Fatalf("re-encoded bundles do not decode: %v", err)
		}
		if len(back) != len(got) {
			t.Fatalf("round trip: %d bundles, then %d", len(got), len(back))
		}
	})
}
