package compat

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/shared/events"
)

func TestTelegramIDsAreCanonical(t *testing.T) {
	req, err := ParseBotmother(ctJSON, []byte(`{"platform":"tg","users":["42","0042","+42"," 42 ","-1001234567890","-0012",-12,"\u0031\u0032"]}`))
	require.Nil(t, err)
	require.Equal(t, []string{"42", "-1001234567890", "-12", "12"}, req.Audience.Users)

	for _, bad := range []string{`"0"`, `"-0"`, `"9223372036854775808"`, `"4 2"`, `"0x2A"`, `""`} {
		_, err := ParseBotmother(ctJSON, []byte(`{"platform":"tg","users":[`+bad+`]}`))
		require.NotNil(t, err, bad)
		require.Equal(t, CodeInvalidUserID, err.Code, bad)
		require.Equal(t, "users[0]", err.Field, bad)
	}
}

func TestEscapedAndUnicodeStrings(t *testing.T) {
	req, err := ParseDispatch(ctJSON, []byte(`{"from":"\u0031\u0032\u0033","name":"Zoë \"Z\" O'Hara","note":"line\nbreak","emoji":"🎉"}`))
	require.Nil(t, err)
	require.Equal(t, []string{"123"}, req.Audience.Users)
	require.Equal(t, `Zoë "Z" O'Hara`, req.Name)
	require.Equal(t, "line\nbreak", req.Data["note"])
	require.Equal(t, "🎉", req.Data["emoji"])
	require.Equal(t, `Zoë "Z" O'Hara`, req.Data["name"])
}

func TestDataSizeIsMeasuredExactly(t *testing.T) {
	// The quick upper bound (6 bytes a character) is over the limit; the
	// real encoding is not.
	s := strings.Repeat("x", MaxDataBytes/2)
	req, err := ParseNative(ctJSON, []byte(`{"event":"E","audience":{"everyone":true},"data":{"s":"`+s+`"}}`))
	require.Nil(t, err)
	require.Equal(t, s, req.Data["s"])

	// "<" is not escaped when measuring: 60 KiB of it fits.
	lt := strings.Repeat("<", 60<<10)
	_, err = ParseNative(ctJSON, []byte(`{"event":"E","audience":{"everyone":true},"data":{"s":"`+lt+`"}}`))
	require.Nil(t, err)

	// Exactly at the limit: {"s":"…"} is 8 bytes of syntax.
	at := strings.Repeat("y", MaxDataBytes-8)
	_, err = ParseNative(ctJSON, []byte(`{"event":"E","audience":{"everyone":true},"data":{"s":"`+at+`"}}`))
	require.Nil(t, err)
	_, err = ParseNative(ctJSON, []byte(`{"event":"E","audience":{"everyone":true},"data":{"s":"`+at+`y"}}`))
	require.NotNil(t, err)
	require.Equal(t, CodeDataTooLarge, err.Code)
}

func TestDepthLimitIsInclusive(t *testing.T) {
	ok := strings.Repeat(`[`, MaxDepth-1) + strings.Repeat(`]`, MaxDepth-1)
	_, err := ParseNative(ctJSON, []byte(`{"event":"E","audience":{"everyone":true},"data":{"a":`+ok+`}}`))
	require.Nil(t, err, "data itself plus %d levels", MaxDepth-1)
	tooDeep := "[" + ok + "]"
	_, err = ParseNative(ctJSON, []byte(`{"event":"E","audience":{"everyone":true},"data":{"a":`+tooDeep+`}}`))
	require.NotNil(t, err)
	require.Equal(t, CodeTooDeep, err.Code)
}

func TestPlatformNamesAndCodes(t *testing.T) {
	for in, want := range map[string]string{
		"tg": events.ChannelTelegram, "TG": events.ChannelTelegram, "telegram": events.ChannelTelegram,
		"wa": events.ChannelWhatsApp, " WhatsApp ": events.ChannelWhatsApp, "rcs": events.ChannelRCS,
		"sandbox": events.ChannelSandbox, "any": PlatformAny, "Any": PlatformAny,
	} {
		got, ok := platformOf(in)
		require.True(t, ok, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "fb", "viber", "sms", "t g"} {
		_, ok := platformOf(in)
		require.False(t, ok, in)
	}
}

func TestJSONAPIContentTypes(t *testing.T) {
	for _, ct := range []string{ctAPI, "Application/Vnd.Api+JSON", ctAPI + `; profile="https://example.com/recrubo"`} {
		_, err := ParseRecruboThread(ct, []byte(recruboThreadSeed))
		require.Nil(t, err, ct)
	}
	for _, ct := range []string{"", ctJSON, "application/vnd.api+json; charset=utf-8", "application/vnd.api+json; ext=x", "application/vnd.api+json;;", "text/json"} {
		_, err := ParseRecruboFlowRun(ct, []byte(recruboFlowRunSeed))
		require.NotNil(t, err, ct)
		require.Equal(t, 415, err.Status, ct)
	}
}

func TestJSONContentTypes(t *testing.T) {
	for _, ct := range []string{ctJSON, "application/json; charset=UTF-8", "application/json;charset=utf8", "application/problem+json", "APPLICATION/JSON"} {
		_, err := ParseBotmother(ct, []byte(`{"users":"everyone"}`))
		require.Nil(t, err, ct)
	}
}
