package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	wadouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
)

// TestLaneRuleOnEveryAPI: in `flowgate dev`, the lane rule holds whatever
// API a trigger came through: aimed at one user (BuilderBot dispatch,
// Engati, Recrubo, a CloudEvent with one subject, Botmother with one user,
// native) → high lane; a broadcast (several users) → bulk; an explicit
// priority (native body, CloudEvents extension attribute, ?priority= on
// the others) wins. The lane is on every message record, on the trigger
// resource and in flowgate_lane_runs_started_total{bot,lane}; a bad
// priority is a 422 naming it, with nothing queued.
func TestLaneRuleOnEveryAPI(t *testing.T) {
	wa := wadouble.New()
	defer wa.Close()
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "lanes", map[string]any{
		"whatsapp": map[string]any{"phone_number_id": "1077", "access_token": wadouble.DefaultToken, "app_secret": "app-secret",
			"verify_token": "v", "api_base": wa.APIBase()}})
	c.must("PUT", "/v1/bots/lanes/flows/hello", key, `{"steps":[{"id":"t","type":"template","template":"hello","language":"en"}]}`, 200)
	ev := c.must("PUT", "/v1/bots/lanes/events/HELLO", key, `{"flow":"hello"}`, 201)["event"].(map[string]any)
	bmURL := ev["trigger_url"].(string)
	jsonapi := func(path, body string, want int) map[string]any {
		t.Helper()
		code, b := c.call("POST", path, key, body, "Content-Type", "application/vnd.api+json")
		require.Equal(t, want, code, "%s: %s", path, b)
		var out map[string]any
		require.NoError(t, json.Unmarshal(b, &out))
		return out
	}
	thread := jsonapi("/public/v2/message-threads", `{"data":{"type":"messageThreads","attributes":{"channel":"whatsapp","identifier":"+31612340020"}}}`, 201)["data"].(map[string]any)["id"].(string)
	flowRun := func(q string) string {
		return jsonapi("/public/v2/flow-runs"+q, `{"data":{"type":"flowRuns","attributes":{"flowId":"hello","messageThreadId":"`+thread+`",
		  "initialMessage":{"type":"template","template":{"id":"hello"}}}}}`, 202)["data"].(map[string]any)["id"].(string)
	}
	trig := func(m map[string]any) string { return m["trigger_id"].(string) }
	engati := func(q, phone string) string {
		code, b := c.call("POST", "/bot_api/v2.0/customer/42/bot/lanes/flow/hello"+q, "", `{"user_channel":"whatsapp","user_phone_no":"`+phone+`"}`,
			"Authorization", "Basic "+key)
		require.Equal(t, 202, code, string(b))
		var out map[string]any
		require.NoError(t, json.Unmarshal(b, &out))
		return trig(out)
	}
	ce := func(body string, hdr ...string) []any {
		code, b := c.call("POST", "/v1/bots/lanes/cloudevents", key, body, hdr...)
		require.Equal(t, 202, code, string(b))
		var out map[string]any
		require.NoError(t, json.Unmarshal(b, &out))
		return out["trigger_ids"].([]any)
	}
	const structured = "application/cloudevents+json"
	batch := ce(`[{"specversion":"1.0","id":"b1","source":"crm","type":"HELLO","subject":"+31612340010"},
	             {"specversion":"1.0","id":"b2","source":"crm","type":"HELLO","subject":"+31612340011","priority":"bulk"}]`,
		"Content-Type", "application/cloudevents-batch+json")
	cases := []struct {
		name, trigger, lane string
		runs                int
	}{
		{"dispatch, one user", trig(c.must("POST", "/v1/bots/lanes/dispatch/HELLO", key, `{"from":"+31612340001"}`, 202)), "high", 1},
		{"dispatch ?priority=bulk", trig(c.must("POST", "/v1/bots/lanes/dispatch/HELLO?priority=bulk", key, `{"from":"+31612340002"}`, 202)), "bulk", 1},
		{"native, one user", trig(c.must("POST", "/v1/bots/lanes/triggers", key, `{"flow":"hello","audience":{"users":["+31612340003"]}}`, 202)), "high", 1},
		{"native, two users", trig(c.must("POST", "/v1/bots/lanes/triggers", key, `{"flow":"hello","audience":{"users":["+31612340004","+31612340005"]}}`, 202)), "bulk", 2},
		{"native, two users, priority high", trig(c.must("POST", "/v1/bots/lanes/triggers", key, `{"flow":"hello","priority":"high","audience":{"users":["+31612340006","+31612340007"]}}`, 202)), "high", 2},
		{"cloudevent, one subject (structured)", ce(`{"specversion":"1.0","id":"s1","source":"crm","type":"HELLO","subject":"+31612340008"}`, "Content-Type", structured)[0].(string), "high", 1},
		{"cloudevent, priority extension (binary)", ce(`{}`, "Content-Type", "application/json", "ce-specversion", "1.0", "ce-id", "x1", "ce-source", "crm",
			"ce-type", "HELLO", "ce-subject", "+31612340009", "ce-priority", "bulk")[0].(string), "bulk", 1},
		{"cloudevent batch [0], one subject", batch[0].(string), "high", 1},
		{"cloudevent batch [1], priority bulk", batch[1].(string), "bulk", 1},
		{"botmother, one user", trig(c.must("POST", bmURL, "", `{"platform":"whatsapp","users":["+31612340012"],"data":{}}`, 202)), "high", 1},
		{"botmother, two users", trig(c.must("POST", bmURL, "", `{"platform":"whatsapp","users":["+31612340013","+31612340014"],"data":{}}`, 202)), "bulk", 2},
		{"botmother, two users ?priority=high", trig(c.must("POST", bmURL+"?priority=high", "", `{"platform":"whatsapp","users":["+31612340015","+31612340016"],"data":{}}`, 202)), "high", 2},
		{"engati v2", engati("", "31612340017"), "high", 1},
		{"engati v2 ?priority=bulk", engati("?priority=bulk", "31612340018"), "bulk", 1},
		{"recrubo flow run", flowRun(""), "high", 1},
		{"recrubo flow run ?priority=bulk", flowRun("?priority=bulk"), "bulk", 1},
	}
	want := map[string]int{}
	for _, tc := range cases {
		want[tc.lane] += tc.runs
		var lanes []string
		require.Eventually(t, func() bool {
			runs := c.must("GET", "/v1/bots/lanes/runs?trigger="+tc.trigger, key, "", 200)["runs"].([]any)
			if len(runs) != tc.runs {
				return false
			}
			lanes = lanes[:0]
			for _, r := range runs {
				msgs := c.must("GET", "/v1/bots/lanes/runs/"+r.(map[string]any)["id"].(string), key, "", 200)["messages"].([]any)
				for _, m := range msgs {
					lanes = append(lanes, m.(map[string]any)["lane"].(string))
				}
			}
			return len(lanes) >= tc.runs
		}, 20*time.Second, 50*time.Millisecond, tc.name)
		for _, l := range lanes {
			require.Equal(t, tc.lane, l, "%s: message lane", tc.name)
		}
		require.Equal(t, tc.lane, getTrigger(t, c, "lanes", key, tc.trigger).Delivery.Lane, "%s: trigger resource", tc.name)
	}

	// The per-bot, per-lane run counter.
	resp, err := http.Get(c.base + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for lane, n := range want {
		m := regexp.MustCompile(`(?m)^flowgate_lane_runs_started_total\{bot="lanes",lane="` + lane + `"\} (\d+)$`).FindSubmatch(body)
		require.NotNil(t, m, "flowgate_lane_runs_started_total for lane %s", lane)
		got, _ := strconv.Atoi(string(m[1]))
		require.Equal(t, n, got, "runs started in lane %s", lane)
	}

	// A bad priority anywhere: 422 naming it, nothing queued.
	before := len(c.must("GET", "/v1/bots/lanes/runs?limit=100", key, "", 200)["runs"].([]any))
	code, b := c.call("POST", "/v1/bots/lanes/dispatch/HELLO?priority=urgent", key, `{"from":"+31612340030"}`)
	require.Equal(t, 422, code, string(b))
	require.Contains(t, string(b), `"field":"priority"`)
	code, b = c.call("POST", bmURL+"?priority=low", "", `{"platform":"whatsapp","users":["+31612340031"],"data":{}}`)
	require.Equal(t, 422, code, string(b))
	require.Contains(t, string(b), `"field":"priority"`)
	code, b = c.call("POST", "/v1/bots/lanes/cloudevents", key, `{"specversion":"1.0","id":"bad","source":"crm","type":"HELLO","subject":"+31612340032","priority":"urgent"}`,
		"Content-Type", structured)
	require.Equal(t, 422, code, string(b))
	require.Contains(t, string(b), `"field":"priority"`)
	code, b = c.call("POST", "/public/v2/flow-runs?priority=x", key, `{"data":{"type":"flowRuns","attributes":{"flowId":"hello","messageThreadId":"`+thread+`",
	  "initialMessage":{"type":"template","template":{"id":"hello"}}}}}`, "Content-Type", "application/vnd.api+json")
	require.Equal(t, 422, code, string(b))
	require.Contains(t, string(b), `"parameter":"priority"`)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, c.must("GET", "/v1/bots/lanes/runs?limit=100", key, "", 200)["runs"].([]any), before, "nothing queued")
}
