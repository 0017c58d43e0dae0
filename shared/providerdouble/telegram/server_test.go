package telegramdouble_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	telegramdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
)

const token = "42:secret_part"

type answer struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  struct {
		RetryAfter int `json:"retry_after"`
	} `json:"parameters"`
}

func call(t *testing.T, base, tok, method, body string) (int, answer) {
	t.Helper()
	resp, err := http.Post(base+"/bot"+tok+"/"+method, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var a answer
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
	return resp.StatusCode, a
}

func TestErrorShapes(t *testing.T) {
	d := telegramdouble.Start(t)
	d.AddBot(token)
	cases := []struct {
		tok, method, body string
		status            int
		desc              string
	}{
		{"1:nope", "sendMessage", `{"chat_id":1,"text":"x"}`, 401, "Unauthorized"},
		{token, "sendSticker", `{}`, 404, "Not Found"},
		{token, "sendMessage", `{"text":"x"}`, 400, "Bad Request: chat_id is empty"},
		{token, "sendMessage", `{"chat_id":1}`, 400, "Bad Request: message text is empty"},
		{token, "sendMessage", `{"chat_id":1,"text":"` + strings.Repeat("a", 4097) + `"}`, 400, "Bad Request: message is too long"},
		{token, "sendMessage", `{"chat_id":1,"text":"x","reply_markup":{"inline_keyboard":[[{"text":"a","callback_data":"` + strings.Repeat("d", 65) + `"}]]}}`, 400, "Bad Request: BUTTON_DATA_INVALID"},
		{token, "sendMessage", `{"chat_id":1,"text":"x","reply_markup":{"inline_keyboard":[[{"text":"a"}]]}}`, 400, "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"},
		{token, "sendPhoto", `{"chat_id":1}`, 400, "Bad Request: there is no photo in the request"},
		{token, "sendPhoto", `{"chat_id":1,"photo":"x"}`, 400, "Bad Request: wrong file identifier/HTTP URL specified"},
		{token, "sendDocument", `{"chat_id":1,"document":"https://e.x/a.pdf","caption":"` + strings.Repeat("c", 1025) + `"}`, 400, "Bad Request: message caption is too long"},
		{token, "answerCallbackQuery", `{}`, 400, "Bad Request: query is too old and response timeout expired or query ID is invalid"},
		{token, "setWebhook", `{"url":"https://e.x/h","secret_token":"bad secret"}`, 400, "Bad Request: secret token contains unallowed characters"},
	}
	for _, tc := range cases {
		status, a := call(t, d.URL, tc.tok, tc.method, tc.body)
		require.Equal(t, tc.status, status, tc.desc)
		require.False(t, a.OK)
		require.Equal(t, tc.status, a.ErrorCode)
		require.Equal(t, tc.desc, a.Description)
	}
	require.Empty(t, d.Accepted())
}

func TestFormEncodingAndRateLimitAnswer(t *testing.T) {
	d := telegramdouble.Start(t)
	d.AddBot(token)
	form := url.Values{"chat_id": {"5"}, "text": {"hi"}, "reply_markup": {`{"inline_keyboard":[[{"text":"a","url":"https://e.x"}]]}`}}
	resp, err := http.PostForm(d.URL+"/bot"+token+"/sendMessage", form)
	require.NoError(t, err)
	var a answer
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
	resp.Body.Close()
	require.True(t, a.OK, a.Description)
	var m struct {
		MessageID int64 `json:"message_id"`
		Chat      struct {
			ID int64 `json:"id"`
		} `json:"chat"`
		Text string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(a.Result, &m))
	require.Equal(t, int64(1), m.MessageID)
	require.Equal(t, int64(5), m.Chat.ID)
	require.Equal(t, "hi", m.Text)

	status, a := call(t, d.URL, token, "sendMessage", `{"chat_id":5,"text":"again"}`)
	require.Equal(t, 429, status)
	require.Equal(t, "Too Many Requests: retry after 1", a.Description)
	require.Equal(t, 1, a.Parameters.RetryAfter)
	// allow_paid_broadcast lifts the per-bot limit, not the per-chat one.
	status, _ = call(t, d.URL, token, "sendMessage", `{"chat_id":5,"text":"paid","allow_paid_broadcast":true}`)
	require.Equal(t, 429, status)
	for i := range 40 {
		status, a = call(t, d.URL, token, "sendMessage", `{"chat_id":`+itoa(int64(100+i))+`,"text":"paid","allow_paid_broadcast":true}`)
		require.Equal(t, 200, status, a.Description)
	}
	status, _ = call(t, d.URL, token, "sendMessage", `{"chat_id":999,"text":"unpaid"}`)
	require.Equal(t, 429, status)
}

func TestGetUpdatesOffsetsAndConflict(t *testing.T) {
	d := telegramdouble.Start(t)
	d.AddBot(token)
	u := telegramdouble.User{ID: 9, FirstName: "A"}
	first := d.PushUpdate(token, telegramdouble.TextUpdate(0, u, 1, "a"))
	d.PushUpdate(token, telegramdouble.TextUpdate(0, u, 2, "b"))

	_, a := call(t, d.URL, token, "getUpdates", `{"limit":1}`)
	var ups []telegramdouble.Update
	require.NoError(t, json.Unmarshal(a.Result, &ups))
	require.Len(t, ups, 1)
	require.Equal(t, first.UpdateID, ups[0].UpdateID)

	_, a = call(t, d.URL, token, "getUpdates", `{"offset":`+itoa(first.UpdateID+1)+`}`)
	require.NoError(t, json.Unmarshal(a.Result, &ups))
	require.Len(t, ups, 1)
	require.Equal(t, "b", ups[0].Message.Text)

	_, a = call(t, d.URL, token, "getUpdates", `{"offset":`+itoa(first.UpdateID+2)+`}`)
	require.NoError(t, json.Unmarshal(a.Result, &ups))
	require.Empty(t, ups)

	status, _ := call(t, d.URL, token, "setWebhook", `{"url":"https://e.x/h","secret_token":"ok_1"}`)
	require.Equal(t, 200, status)
	status, a = call(t, d.URL, token, "getUpdates", `{}`)
	require.Equal(t, 409, status)
	require.Contains(t, a.Description, "Conflict: can't use getUpdates method while webhook is active")
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestGroupLimit(t *testing.T) {
	d := telegramdouble.Start(t, telegramdouble.WithLimits(telegramdouble.Limits{PerGroup: telegramdouble.Rate{N: 2, Window: time.Minute}}))
	d.AddBot(token)
	for i := range 2 {
		status, a := call(t, d.URL, token, "sendMessage", `{"chat_id":-100123,"text":"x"}`)
		require.Equal(t, 200, status, "message %d: %s", i, a.Description)
	}
	status, a := call(t, d.URL, token, "sendMessage", `{"chat_id":-100123,"text":"x"}`)
	require.Equal(t, 429, status)
	require.Greater(t, a.Parameters.RetryAfter, 50, "the window is a minute")
	// Private chats are not groups.
	for range 3 {
		status, _ := call(t, d.URL, token, "sendMessage", `{"chat_id":77,"text":"x"}`)
		require.Equal(t, 200, status)
	}
}

func TestRequireKnownChats(t *testing.T) {
	d := telegramdouble.Start(t, telegramdouble.WithRequireKnownChats())
	d.AddBot(token)
	d.SetChat(token, 10, telegramdouble.ChatActive)
	status, a := call(t, d.URL, token, "sendMessage", `{"chat_id":11,"text":"x"}`)
	require.Equal(t, 400, status)
	require.Equal(t, "Bad Request: chat not found", a.Description)
	status, _ = call(t, d.URL, token, "sendMessage", `{"chat_id":10,"text":"x"}`)
	require.Equal(t, 200, status)
	c := d.Counters()
	require.EqualValues(t, 1, c.ChatNotFound)
	require.EqualValues(t, 1, c.Accepted)
}
