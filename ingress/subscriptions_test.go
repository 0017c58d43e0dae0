package ingress_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/egress/egresstest"
)

// newSubscriptionEnv is newEnv with a chosen AllowPrivateWebhooks; every
// host name resolves to 127.0.0.1.
func newSubscriptionEnv(t *testing.T, allowPrivate bool) *env {
	t.Helper()
	en := startEnv(t, ingress.Config{AllowPrivateWebhooks: allowPrivate},
		egresstest.Resolver(t, netip.MustParseAddr("127.0.0.1")))
	en.createBot("acme")
	en.createBot("globex")
	return en
}

type subscriptionJSON struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	CreatedAt time.Time `json:"created_at"`
}

func TestSubscriptionCreateListDelete(t *testing.T) {
	e := newSubscriptionEnv(t, true)
	key := e.keys["acme"]
	const secret = "0123456789abcdef-secret"
	body := e.do("POST", "/v1/bots/acme/webhooks", key, "application/json",
		`{"url":"http://127.0.0.1:9/hook","secret":"`+secret+`","events":["run.failed","run.completed","run.failed"]}`, 201)
	require.NotContains(t, string(body), secret, "the secret is never returned")
	var created struct{ Subscription subscriptionJSON }
	require.NoError(t, json.Unmarshal(body, &created))
	sub := created.Subscription
	require.True(t, strings.HasPrefix(sub.ID, "wh_"), sub.ID)
	require.Equal(t, "http://127.0.0.1:9/hook", sub.URL)
	require.Equal(t, []string{"run.completed", "run.failed"}, sub.Events)
	require.False(t, sub.CreatedAt.IsZero())

	// Without events a subscription gets every status change.
	body = e.do("POST", "/v1/bots/acme/webhooks", key, "application/json",
		`{"url":"https://hooks.example/x","secret":"`+secret+`"}`, 201)
	var second struct{ Subscription subscriptionJSON }
	require.NoError(t, json.Unmarshal(body, &second))
	require.Equal(t, []string{"run.status"}, second.Subscription.Events)

	body = e.do("GET", "/v1/bots/acme/webhooks", key, "", "", 200)
	require.NotContains(t, string(body), secret)
	require.NotContains(t, string(body), "secret")
	var list struct{ Subscriptions []subscriptionJSON }
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Subscriptions, 2)
	require.Equal(t, sub.ID, list.Subscriptions[0].ID)

	// The store keeps the secret for the delivery service.
	stored, err := e.store.ListSubscriptions(context.Background(), "acme")
	require.NoError(t, err)
	require.Equal(t, secret, stored[0].Secret)

	// Another bot sees none of them and cannot delete them.
	body = e.do("GET", "/v1/bots/globex/webhooks", e.keys["globex"], "", "", 200)
	require.JSONEq(t, `{"subscriptions":[]}`, string(body))
	e.do("DELETE", "/v1/bots/globex/webhooks/"+sub.ID, e.keys["globex"], "", "", 404)
	e.do("DELETE", "/v1/bots/acme/webhooks/"+sub.ID, e.keys["globex"], "", "", 403)

	resp := e.request("DELETE", "/v1/bots/acme/webhooks/"+sub.ID, key, "", "")
	resp.Body.Close()
	require.Equal(t, 204, resp.StatusCode)
	e.do("DELETE", "/v1/bots/acme/webhooks/"+sub.ID, key, "", "", 404)
	body = e.do("GET", "/v1/bots/acme/webhooks", key, "", "", 200)
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Subscriptions, 1)
	require.Equal(t, second.Subscription.ID, list.Subscriptions[0].ID)
}

func TestSubscriptionBadInput(t *testing.T) {
	e := newSubscriptionEnv(t, true)
	key := e.keys["acme"]
	const ok = `"secret":"0123456789abcdef"`
	cases := []struct {
		name, contentType, body string
		status                  int
		code, field             string
	}{
		{"not json media type", "text/plain", `{"url":"http://127.0.0.1/h",` + ok + `}`, 415, "unsupported_media_type", ""},
		{"malformed json", "application/json", `{"url":`, 400, "invalid_json", ""},
		{"unknown field", "application/json", `{"url":"http://127.0.0.1/h",` + ok + `,"secrets":"x"}`, 400, "invalid_json", ""},
		{"trailing data", "application/json", `{"url":"http://127.0.0.1/h",` + ok + `} {}`, 400, "invalid_json", ""},
		{"no url", "application/json", `{` + ok + `}`, 422, "required", "url"},
		{"ftp url", "application/json", `{"url":"ftp://example.com/h",` + ok + `}`, 422, "invalid", "url"},
		{"relative url", "application/json", `{"url":"/hook",` + ok + `}`, 422, "invalid", "url"},
		{"credentials in url", "application/json", `{"url":"https://u:p@example.com/h",` + ok + `}`, 422, "invalid", "url"},
		{"no secret", "application/json", `{"url":"http://127.0.0.1/h"}`, 422, "required", "secret"},
		{"short secret", "application/json", `{"url":"http://127.0.0.1/h","secret":"0123456789abcde"}`, 422, "invalid", "secret"},
		{"unknown event", "application/json", `{"url":"http://127.0.0.1/h",` + ok + `,"events":["run.exploded"]}`, 422, "invalid", "events"},
		{"events not a list", "application/json", `{"url":"http://127.0.0.1/h",` + ok + `,"events":"run.status"}`, 400, "invalid_json", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := e.do("POST", "/v1/bots/acme/webhooks", key, tc.contentType, tc.body, tc.status)
			var resp struct {
				Error struct{ Code, Message, Field string }
			}
			require.NoError(t, json.Unmarshal(body, &resp), string(body))
			require.Equal(t, tc.code, resp.Error.Code, string(body))
			require.Equal(t, tc.field, resp.Error.Field, string(body))
			require.NotEmpty(t, resp.Error.Message)
		})
	}
	// Nothing was half-created.
	subs, err := e.store.ListSubscriptions(context.Background(), "acme")
	require.NoError(t, err)
	require.Empty(t, subs)
	// Authentication as everywhere else.
	e.do("POST", "/v1/bots/acme/webhooks", "", "application/json", `{"url":"http://127.0.0.1/h",`+ok+`}`, 401)
	e.do("GET", "/v1/bots/acme/webhooks", e.keys["globex"], "", "", 403)
}

func TestSubscriptionPrivateTargetsRefusedByDefault(t *testing.T) {
	e := newSubscriptionEnv(t, false)
	key := e.keys["acme"]
	urls := egresstest.RefusedTargets("") // the resolver points every name at 127.0.0.1
	for _, u := range []string{
		"http://127.0.0.1:8080/hook", "http://10.0.0.5/hook", "http://192.168.1.1/hook", "http://localhost:3000/x",
		"http://api.localhost/x", "http://[::1]/x", "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/x",
		"http://2130706433/x",
	} {
		urls = append(urls, u)
	}
	for _, u := range urls {
		body := e.do("POST", "/v1/bots/acme/webhooks", key, "application/json",
			`{"url":"`+u+`","secret":"0123456789abcdef"}`, 422)
		require.Contains(t, string(body), `"field":"url"`, u)
	}
	// A public address is accepted.
	e.do("POST", "/v1/bots/acme/webhooks", key, "application/json",
		`{"url":"https://93.184.215.14/hook","secret":"0123456789abcdef"}`, 201)
}

func TestSubscriptionPrivateTargetsAllowedByConfig(t *testing.T) {
	e := newSubscriptionEnv(t, true)
	key := e.keys["acme"]
	for _, u := range egresstest.RefusedTargets("") { // stored, never called
		e.do("POST", "/v1/bots/acme/webhooks", key, "application/json",
			`{"url":"`+u+`","secret":"0123456789abcdef"}`, 201)
	}
}
