package app_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRegisterFlowConversation is the BuilderBot seed's REGISTER_FLOW: ask
// the name, ask the age (re-asked until it is a number), thank.
func TestRegisterFlowConversation(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "reg", nil)
	c.must("PUT", "/v1/bots/reg/flows/register", key, `{"steps":[
	  {"id":"name","type":"ask","text":"What is your name?","attribute":"name"},
	  {"id":"age","type":"ask","text":"What is your age?","attribute":"age","validate":{"type":"number"},"retry_text":"Please send your age as a number.","retries":2},
	  {"id":"thanks","type":"send","text":"{{ name }}, thanks for your information! Your age: {{ age }}"}]}`, 200)
	c.must("PUT", "/v1/bots/reg/events/REGISTER_FLOW", key, `{"flow":"register"}`, 201)
	trig := c.must("POST", "/v1/bots/reg/dispatch/REGISTER_FLOW", key, `{"from":"5511999","name":"Visitor"}`, 202)["trigger_id"].(string)

	waitTexts := func(n int) []string {
		t.Helper()
		require.Eventually(t, func() bool { return len(c.sandbox("reg", key, "5511999")) >= n }, 10*time.Second, 20*time.Millisecond)
		return texts(c.sandbox("reg", key, "5511999"))
	}
	require.Equal(t, []string{"What is your name?"}, waitTexts(1))
	c.must("POST", "/v1/bots/reg/sandbox/messages", key, `{"from":"5511999","text":"Maria"}`, 202)
	require.Equal(t, "What is your age?", waitTexts(2)[1])
	c.must("POST", "/v1/bots/reg/sandbox/messages", key, `{"from":"5511999","text":"thirty"}`, 202)
	require.Equal(t, "Please send your age as a number.", waitTexts(3)[2])
	c.must("POST", "/v1/bots/reg/sandbox/messages", key, `{"from":"5511999","text":"30"}`, 202)
	require.Equal(t, "Maria, thanks for your information! Your age: 30", waitTexts(4)[3])

	runs := c.must("GET", "/v1/bots/reg/runs?trigger="+trig, key, "", 200)["runs"].([]any)
	require.Len(t, runs, 1)
	id := runs[0].(map[string]any)["id"].(string)
	require.Eventually(t, func() bool {
		return c.must("GET", "/v1/bots/reg/runs/"+id, key, "", 200)["run"].(map[string]any)["status"] == "completed"
	}, 5*time.Second, 20*time.Millisecond)
	// The answers were stored on the contact.
	ct := c.must("GET", "/v1/bots/reg/runs/"+id, key, "", 200)["run"].(map[string]any)
	require.NotEmpty(t, ct["state"])
}

// TestVIPBranchFromTriggerData routes on an attribute passed in the
// trigger, as Engati's decision node does.
func TestVIPBranchFromTriggerData(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "vip", nil)
	c.must("PUT", "/v1/bots/vip/flows/route", key, `{"steps":[
	  {"id":"route","type":"branch","conditions":[{"when":"user_type == \"vip\"","next":"vip"}],"default":"standard"},
	  {"id":"vip","type":"send","text":"Welcome to the VIP lounge, {{ name }}","next":"done"},
	  {"id":"standard","type":"send","text":"Welcome, {{ name }}"},
	  {"id":"done","type":"end"}]}`, 200)
	c.must("POST", "/v1/bots/vip/triggers", key, `{"flow":"route","audience":{"users":["a"]},"data":{"name":"Ann","user_type":"vip"}}`, 202)
	c.must("POST", "/v1/bots/vip/triggers", key, `{"flow":"route","audience":{"users":["b"]},"data":{"name":"Bob","user_type":"trial"}}`, 202)
	require.Eventually(t, func() bool {
		return len(c.sandbox("vip", key, "a")) == 1 && len(c.sandbox("vip", key, "b")) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "Welcome to the VIP lounge, Ann", c.sandbox("vip", key, "a")[0].Text)
	require.Equal(t, "Welcome, Bob", c.sandbox("vip", key, "b")[0].Text)
}

// TestWaitSurvivesRestart: a run waiting on a `wait` step when Flowgate
// stops continues after it starts again on the same data.
func TestWaitSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	d, c := startDev(t, dir)
	key := createBot(c, "w", nil)
	c.must("PUT", "/v1/bots/w/flows/later", key, `{"steps":[
	  {"id":"first","type":"send","text":"See you in a moment"},
	  {"id":"pause","type":"wait","duration":"2s"},
	  {"id":"second","type":"send","text":"Here I am again"}]}`, 200)
	c.must("POST", "/v1/bots/w/triggers", key, `{"flow":"later","audience":{"users":["u1"]}}`, 202)
	require.Eventually(t, func() bool { return len(c.sandbox("w", key, "u1")) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, d.Stop())
	time.Sleep(2500 * time.Millisecond) // the timer falls due while nothing runs

	d, c = startDev(t, dir)
	defer func() { require.NoError(t, d.Stop()) }()
	require.Eventually(t, func() bool { return len(c.sandbox("w", key, "u1")) == 2 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"See you in a moment", "Here I am again"}, texts(c.sandbox("w", key, "u1")))
}

// TestCancelMidWait cancels a run waiting for a reply: the reply no longer resumes it.
func TestCancelMidWait(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "cx", nil)
	c.must("PUT", "/v1/bots/cx/flows/q", key, `{"steps":[
	  {"id":"q","type":"ask","text":"Still there?","attribute":"a"},
	  {"id":"t","type":"send","text":"Thanks"}]}`, 200)
	trig := c.must("POST", "/v1/bots/cx/triggers", key, `{"flow":"q","audience":{"users":["u"]}}`, 202)["trigger_id"].(string)
	id := cancelWaitingRun(t, c, "cx", key, trig)
	c.must("POST", "/v1/bots/cx/sandbox/messages", key, `{"from":"u","text":"yes"}`, 202)
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, []string{"Still there?"}, texts(c.sandbox("cx", key, "u")))
	code, _ := c.call("POST", "/v1/bots/cx/runs/"+id+"/cancel", key, "")
	require.Equal(t, 409, code, "an ended run cannot be cancelled")
	code, _ = c.call("POST", "/v1/bots/cx/runs/nope/cancel", key, "")
	require.Equal(t, 404, code)
}

// TestNewerTriggerSupersedesWaitingRun: a contact answers one question at a
// time; a newer trigger's run cancels the contact's run still waiting on the
// same channel (reason "superseded"), and the next reply goes to the new run.
func TestNewerTriggerSupersedesWaitingRun(t *testing.T) {
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "sup", nil)
	c.must("PUT", "/v1/bots/sup/flows/survey", key, `{"steps":[
	  {"id":"q","type":"ask","text":"{{ data.question }}","attribute":"a"},
	  {"id":"t","type":"send","text":"Got it: {{ a }}"}]}`, 200)
	first := c.must("POST", "/v1/bots/sup/triggers", key, `{"flow":"survey","audience":{"users":["u"]},"data":{"question":"Old question?"}}`, 202)["trigger_id"].(string)
	require.Eventually(t, func() bool { return len(c.sandbox("sup", key, "u")) == 1 }, 10*time.Second, 20*time.Millisecond)
	second := c.must("POST", "/v1/bots/sup/triggers", key, `{"flow":"survey","audience":{"users":["u"]},"data":{"question":"New question?"}}`, 202)["trigger_id"].(string)
	require.Eventually(t, func() bool { return len(c.sandbox("sup", key, "u")) == 2 }, 10*time.Second, 20*time.Millisecond)

	runOf := func(trig string) map[string]any {
		runs := c.must("GET", "/v1/bots/sup/runs?trigger="+trig, key, "", 200)["runs"].([]any)
		require.Len(t, runs, 1)
		return runs[0].(map[string]any)
	}
	require.Eventually(t, func() bool { return runOf(first)["status"] == "cancelled" }, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, runOf(first)["error"], "superseded")
	c.must("POST", "/v1/bots/sup/sandbox/messages", key, `{"from":"u","text":"blue"}`, 202)
	require.Eventually(t, func() bool { return runOf(second)["status"] == "completed" }, 10*time.Second, 20*time.Millisecond)
	// The run's write and the sandbox worker's delivery of its last message
	// are not ordered: the message may land just after the run completed.
	require.Eventually(t, func() bool { return len(c.sandbox("sup", key, "u")) == 3 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"Old question?", "New question?", "Got it: blue"}, texts(c.sandbox("sup", key, "u")))
}

// cancelWaitingRun waits for the one run of trigger trig to wait, cancels
// it through the API, waits until it is cancelled and returns its id.
func cancelWaitingRun(t *testing.T, c client, bot, key, trig string) string {
	t.Helper()
	var id string
	require.Eventually(t, func() bool {
		runs := c.must("GET", "/v1/bots/"+bot+"/runs?trigger="+trig+"&status=waiting", key, "", 200)["runs"].([]any)
		if len(runs) == 1 {
			id = runs[0].(map[string]any)["id"].(string)
		}
		return id != ""
	}, 10*time.Second, 20*time.Millisecond)
	c.must("POST", "/v1/bots/"+bot+"/runs/"+id+"/cancel", key, "", 202)
	require.Eventually(t, func() bool {
		return c.must("GET", "/v1/bots/"+bot+"/runs/"+id, key, "", 200)["run"].(map[string]any)["status"] == "cancelled"
	}, 10*time.Second, 20*time.Millisecond)
	return id
}
