package ingress_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCreateBotBadAccounts: channel accounts a provider could not work with
// are refused with 422 naming the field, and no bot is created.
func TestCreateBotBadAccounts(t *testing.T) {
	e := newEnv(t)
	const wa = `"phone_number_id":"106540352242922","access_token":"tok","app_secret":"app"`
	cases := []struct {
		name, channels, field string
	}{
		{"whatsapp without access_token", `{"whatsapp":{"phone_number_id":"106540352242922","app_secret":"app"}}`, "channels.whatsapp.access_token"},
		{"whatsapp without app_secret", `{"whatsapp":{"phone_number_id":"106540352242922","access_token":"tok"}}`, "channels.whatsapp.app_secret"},
		{"whatsapp without token and app secret", `{"whatsapp":{"phone_number_id":"106540352242922"}}`, "channels.whatsapp.access_token"},
		{"whatsapp without phone_number_id", `{"whatsapp":{"access_token":"tok","app_secret":"app"}}`, "channels.whatsapp.phone_number_id"},
		{"whatsapp phone number instead of its id", `{"whatsapp":{"phone_number_id":"+31 6 1234 5678","access_token":"tok","app_secret":"app"}}`, "channels.whatsapp.phone_number_id"},
		{"whatsapp api_base not a URL", `{"whatsapp":{` + wa + `,"api_base":"graph.facebook.com"}}`, "channels.whatsapp.api_base"},
		{"telegram without bot_token", `{"telegram":{"webhook_secret":"s3cret"}}`, "channels.telegram.bot_token"},
		{"telegram bot_token without id", `{"telegram":{"bot_token":"nocolon","webhook_secret":"s3cret"}}`, "channels.telegram.bot_token"},
		{"telegram webhook_secret with a space", `{"telegram":{"bot_token":"123456:ABC-DEF","webhook_secret":"my secret"}}`, "channels.telegram.webhook_secret"},
		{"telegram webhook_secret with punctuation", `{"telegram":{"bot_token":"123456:ABC-DEF","webhook_secret":"s3cret!"}}`, "channels.telegram.webhook_secret"},
		{"telegram webhook_secret non-ASCII", `{"telegram":{"bot_token":"123456:ABC-DEF","webhook_secret":"sécret"}}`, "channels.telegram.webhook_secret"},
		{"telegram webhook_secret of 257 characters", `{"telegram":{"bot_token":"123456:ABC-DEF","webhook_secret":"` + string(make257()) + `"}}`, "channels.telegram.webhook_secret"},
		{"rcs api_base not http", `{"rcs":{"agent_id":"a","api_base":"ftp://x"}}`, "channels.rcs.api_base"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := e.do("POST", "/v1/bots", adminKey, "application/json", `{"id":"acct","channels":`+tc.channels+`}`, 422)
			var doc struct {
				Error struct{ Code, Message, Field string }
			}
			require.NoError(t, json.Unmarshal(b, &doc))
			require.Equal(t, tc.field, doc.Error.Field)
			require.NotEmpty(t, doc.Error.Code)
			require.NotEmpty(t, doc.Error.Message)
		})
	}
	// Nothing was created; good accounts are accepted.
	e.do("GET", "/v1/bots/acct", adminKey, "", "", 404)
	e.do("POST", "/v1/bots", adminKey, "application/json", `{"id":"acct","channels":{"whatsapp":{`+wa+`},
	  "telegram":{"bot_token":"123456:ABC-DEF","webhook_secret":"A-Za-z_0-9-`+string(make257()[:200])+`"}}}`, 201)
}

func make257() []byte {
	b := make([]byte, 257)
	for i := range b {
		b[i] = 'a'
	}
	return b
}
