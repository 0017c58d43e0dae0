package apitest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/apitest"
)

// The client sends the key, the JSON body and the extra headers, and
// returns any status as it is; Expect refuses another status and decodes.
func TestClientSendsWhatItIsGiven(t *testing.T) {
	type seen struct{ method, path, auth, ctype, extra, body string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("X-Extra"), string(b)}
		if r.URL.Path == "/missing" {
			http.Error(w, `{"error":{"code":"not_found"}}`, http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(`{"id":"b1"}`))
	}))
	defer srv.Close()
	c := apitest.Client{Base: srv.URL, Timeout: 30 * time.Second}

	code, b := c.Call(t, "POST", "/v1/bots", "k1", map[string]string{"id": "b1"}, "X-Extra", "x")
	require.Equal(t, 200, code)
	require.JSONEq(t, `{"id":"b1"}`, string(b))
	require.Equal(t, seen{"POST", "/v1/bots", "Bearer k1", "application/json", "x", `{"id":"b1"}`}, <-got)

	code, _ = c.Call(t, "GET", "/missing", "", nil)
	require.Equal(t, 404, code, "a status is returned, not an error")
	require.Equal(t, seen{"GET", "/missing", "", "", "", ""}, <-got, "no key, no body: no headers")

	var out struct{ ID string }
	_, err := c.Expect("PUT", "/v1/x", "k2", `{"a":1}`, &out)
	require.NoError(t, err)
	require.Equal(t, "b1", out.ID)
	require.Equal(t, `{"a":1}`, (<-got).body, "a string is sent as it is")

	_, err = c.Expect("GET", "/missing", "k2", nil, nil, 200, 201)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "not_found"), err.Error())
	<-got
	_, err = c.Expect("GET", "/missing", "k2", nil, nil)
	require.Error(t, err, "not a 2xx")
	<-got
	_, err = c.Expect("GET", "/missing", "k2", nil, nil, 404)
	require.NoError(t, err, "the status wanted")
	<-got

	_, _, err = apitest.Client{Base: "http://127.0.0.1:1"}.Do("GET", "/", "", nil)
	require.Error(t, err, "no answer is an error")
}
