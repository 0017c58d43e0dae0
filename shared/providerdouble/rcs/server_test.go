package rcsdouble_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	rcsdouble "github.com/flowgate/flowgate/shared/providerdouble/rcs"
)

type googleErr struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
	} `json:"error"`
}

func TestTokenEndpointRefusesBadGrants(t *testing.T) {
	d := rcsdouble.Start(t)
	for name, form := range map[string]url.Values{
		"wrong grant":   {"grant_type": {"client_credentials"}},
		"no assertion":  {"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}},
		"bad signature": {"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {"eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}},
	} {
		resp, err := http.PostForm(d.TokenURL, form)
		require.NoError(t, err)
		var body struct {
			Error string `json:"error"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		require.Equal(t, 400, resp.StatusCode, name)
		require.NotEmpty(t, body.Error, name)
	}
	c := d.Counters()
	require.EqualValues(t, 3, c.TokenRequests)
	require.Zero(t, c.TokensIssued)
}

func TestAPIRefusesMissingOrUnknownBearer(t *testing.T) {
	d := rcsdouble.Start(t)
	for _, auth := range []string{"", "Bearer ya29.forged"} {
		req, _ := http.NewRequest(http.MethodPost, d.URL+"/v1/phones/+14155550100/agentMessages?messageId=1&agentId=a", strings.NewReader(`{"contentMessage":{"text":"x"}}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var e googleErr
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		resp.Body.Close()
		require.Equal(t, 401, resp.StatusCode)
		require.Equal(t, 401, e.Error.Code)
		require.Equal(t, "UNAUTHENTICATED", e.Error.Status)
	}
	require.Empty(t, d.Accepted())
}

func TestSignature(t *testing.T) {
	// HMAC-SHA512 with key "key" over "The quick brown fox jumps over the lazy dog" (RFC 4231 style vector).
	require.Equal(t, "tCrwkFe6weLUFwjkipAuCbX/fxKrQopP6GZTxz3SSPuC+UilSfe3kaW0GRXuTR7Dk1NX5OIxclDQNyr6Lr7rOg==",
		rcsdouble.Signature([]byte("The quick brown fox jumps over the lazy dog"), "key"))
}
