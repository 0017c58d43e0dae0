package ingress_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/ingress"
)

func importContacts(e *env, bot, contentType, body string, want int, query ...string) ingress.ImportSummary {
	e.t.Helper()
	path := "/v1/bots/" + bot + "/contacts/import"
	if len(query) > 0 {
		path += "?" + query[0]
	}
	b := e.do("POST", path, e.keys[bot], contentType, body, want)
	var sum ingress.ImportSummary
	require.NoError(e.t, json.Unmarshal(b, &sum), string(b))
	return sum
}

func TestContactsImportCSV(t *testing.T) {
	e := newEnv(t)
	csv := strings.Join([]string{
		"channel,external_id,name,plan,city,age,opted_out",
		"whatsapp,+31 6 1234 5678,Ann,Premium,Lima,30,",
		"whatsapp,0612345679,Bob,Basic,Quito,007,true", // national number: read in ?region=NL
		"telegram,123456789,Cem,Premium,Lima,,",
		`sandbox,alice,"Alice, ""the first""",Premium,,41.5,false`,
		"whatsapp,+1 555 0100,Fake,Basic,,,",         // line 6: fictional range
		"fax,+31612345680,Dan,,,,",                   // line 7: unknown channel
		"telegram,@someone,Eve,,,,",                  // line 8: not a chat id
		"whatsapp,+31612345681,Too,Many,Fields,1,,x", // line 9
		"sandbox,,Nobody,,,,",                        // line 10: no id
		"rcs,+31 6 1234 5682,Rhea,,,,",
	}, "\n") + "\n"
	sum := importContacts(e, "acme", "text/csv; charset=utf-8", csv, 200, "region=NL")
	require.Equal(t, 5, sum.Created)
	require.Equal(t, 0, sum.Updated)
	require.Equal(t, 5, sum.RejectedCount)
	lines := map[int]string{}
	for _, r := range sum.Rejected {
		lines[r.Line] = r.Field
	}
	require.Equal(t, map[int]string{6: "external_id", 7: "channel", 8: "external_id", 9: "", 10: "external_id"}, lines)

	ctx := context.Background()
	ann, err := e.store.GetContactByExternalID(ctx, "acme", "whatsapp", "+31612345678")
	require.NoError(t, err, "stored in E.164")
	require.Equal(t, "Ann", ann.Name)
	require.Equal(t, map[string]any{"plan": "Premium", "city": "Lima", "age": float64(30)}, ann.Attributes)
	require.False(t, ann.OptedOut)
	bob, err := e.store.GetContactByExternalID(ctx, "acme", "whatsapp", "+31612345679")
	require.NoError(t, err)
	require.Equal(t, "007", bob.Attributes["age"], "a number with a leading zero stays text")
	require.True(t, bob.OptedOut)
	alice, err := e.store.GetContactByExternalID(ctx, "acme", "sandbox", "alice")
	require.NoError(t, err)
	require.Equal(t, `Alice, "the first"`, alice.Name)
	require.Equal(t, 41.5, alice.Attributes["age"])
	_, err = e.store.GetContactByExternalID(ctx, "acme", "rcs", "+31612345682")
	require.NoError(t, err)
	_, err = e.store.GetContactByExternalID(ctx, "globex", "sandbox", "alice")
	require.Error(t, err, "imported into the path's bot only")

	// The same file again updates, keyed by channel + external id.
	sum = importContacts(e, "acme", "text/csv", csv, 200, "region=NL")
	require.Equal(t, 0, sum.Created)
	require.Equal(t, 5, sum.Updated)
	ann2, err := e.store.GetContactByExternalID(ctx, "acme", "whatsapp", "+31612345678")
	require.NoError(t, err)
	require.Equal(t, ann.ID, ann2.ID)

	// Without a region a national number has no country code.
	sum = importContacts(e, "acme", "text/csv", "channel,external_id\nwhatsapp,0612345679\n", 200)
	require.Equal(t, 1, sum.RejectedCount)
	require.Equal(t, "external_id", sum.Rejected[0].Field)
	require.Contains(t, sum.Rejected[0].Reason, "country code")
}

func TestContactsImportNDJSON(t *testing.T) {
	e := newEnv(t)
	long := `{"channel":"sandbox","external_id":"long","name":"` + strings.Repeat("x", ingress.MaxImportLine) + `"}`
	body := strings.Join([]string{
		`{"channel":"whatsapp","external_id":"+447911123456","name":"Ann","attributes":{"plan":"Premium","score":7}}`,
		``,
		`{"channel":"telegram","external_id":987654321,"city":"Lima","opted_out":true}`,
		`not json`,       // line 4
		`["an","array"]`, // line 5
		`{"channel":"whatsapp","external_id":"12"}`,        // line 6: too short
		`{"channel":"sandbox","external_id":"x","name":7}`, // line 7
		long, // line 8
		`{"channel":"sandbox","external_id":"bob","attributes":{"tags":["a","b"],"n":1.5}}`,
		`{"channel":"sandbox","external_id":"zed"} {"second":"value"}`, // line 10
	}, "\n")
	sum := importContacts(e, "acme", "application/x-ndjson", body, 200)
	require.Equal(t, 3, sum.Created)
	require.Equal(t, 6, sum.RejectedCount)
	got := map[int]string{}
	for _, r := range sum.Rejected {
		got[r.Line] = r.Field
	}
	require.Equal(t, map[int]string{4: "", 5: "", 6: "external_id", 7: "name", 8: "", 10: ""}, got)

	ctx := context.Background()
	ann, err := e.store.GetContactByExternalID(ctx, "acme", "whatsapp", "+447911123456")
	require.NoError(t, err)
	require.Equal(t, map[string]any{"plan": "Premium", "score": float64(7)}, ann.Attributes)
	tg, err := e.store.GetContactByExternalID(ctx, "acme", "telegram", "987654321")
	require.NoError(t, err)
	require.True(t, tg.OptedOut)
	require.Equal(t, "Lima", tg.Attributes["city"], "other keys are attributes")
	bob, err := e.store.GetContactByExternalID(ctx, "acme", "sandbox", "bob")
	require.NoError(t, err)
	require.Equal(t, []any{"a", "b"}, bob.Attributes["tags"])
}

// TestContactsImportStreamsLargeBodies sends far more than the 1 MiB body
// limit of the other endpoints, and more rejections than are listed.
func TestContactsImportStreamsLargeBodies(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	b.WriteString("channel,external_id,name,segment\n")
	for i := range 40_000 {
		fmt.Fprintf(&b, "sandbox,user-%06d,User number %d with a longish name,segment-%d\n", i, i, i%17)
	}
	for range 150 {
		b.WriteString("pager,1,x,y\n")
	}
	require.Greater(t, b.Len(), 2<<20)
	sum := importContacts(e, "acme", "text/csv", b.String(), 200)
	require.Equal(t, 40_000, sum.Created)
	require.Equal(t, 150, sum.RejectedCount)
	require.Len(t, sum.Rejected, ingress.MaxImportRejections)
	require.Equal(t, 40_002, sum.Rejected[0].Line)
	c, err := e.store.GetContactByExternalID(context.Background(), "acme", "sandbox", "user-039999")
	require.NoError(t, err)
	require.Equal(t, "segment-"+fmt.Sprint(39_999%17), c.Attributes["segment"])
}

func TestContactsImportRefusals(t *testing.T) {
	e := newEnv(t)
	path := "/v1/bots/acme/contacts/import"
	csv := "channel,external_id\nsandbox,a\n"
	errOf := func(b []byte) map[string]any {
		var out struct{ Error map[string]any }
		require.NoError(t, json.Unmarshal(b, &out), string(b))
		return out.Error
	}
	for _, tc := range []struct {
		name, key, ct, body, query string
		status                     int
		code, field                string
	}{
		{"no key", "", "text/csv", csv, "", 401, "unauthenticated", ""},
		{"another bot's key", e.keys["globex"], "text/csv", csv, "", 403, "forbidden", ""},
		{"json", e.keys["acme"], "application/json", `{"channel":"sandbox"}`, "", 415, "unsupported_media_type", ""},
		{"no content type", e.keys["acme"], "", csv, "", 415, "unsupported_media_type", ""},
		{"empty csv", e.keys["acme"], "text/csv", "", "", 422, "invalid_header", "header"},
		{"no external_id column", e.keys["acme"], "text/csv", "channel,phone\nsandbox,1\n", "", 422, "invalid_header", "header"},
		{"repeated column", e.keys["acme"], "text/csv", "channel,external_id,channel\n", "", 422, "invalid_header", "header"},
		{"unknown region", e.keys["acme"], "text/csv", csv, "region=XX", 422, "invalid", "region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := path
			if tc.query != "" {
				p += "?" + tc.query
			}
			resp := e.request("POST", p, tc.key, tc.ct, tc.body)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tc.status, resp.StatusCode, string(body))
			er := errOf(body)
			require.Equal(t, tc.code, er["code"])
			if tc.field != "" {
				require.Equal(t, tc.field, er["field"])
			}
		})
	}
	_, err := e.store.GetContactByExternalID(context.Background(), "acme", "sandbox", "a")
	require.Error(t, err, "nothing was imported by a refused request")
}
