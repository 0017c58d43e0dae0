package compat

import (
	"fmt"
	"strings"
	"testing"
)

var (
	benchDispatch = []byte(`{"from":"31612345678","name":"John Doe","plan":"Premium","referralCode":"REF123","amount":49.99,"orderId":"ORD-1001"}`)
	benchNative   = []byte(`{"event":"WELCOME_NEW_USER","channel":"whatsapp",
		"audience":{"users":["+31612345678"]},
		"data":{"plan":"Premium","referralCode":"REF123","amount":49.99},
		"idempotency_key":"order-1001"}`)
	benchNativeFilter = []byte(`{"event":"WELCOME_NEW_USER","channel":"telegram",
		"audience":{"filter":"plan == \"Premium\" && city == \"Lima\""},
		"data":{"plan":"Premium"}}`)
)

func BenchmarkParseDispatch(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchDispatch)))
	for b.Loop() {
		if _, err := ParseDispatch(ctJSON, benchDispatch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseNative(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchNative)))
	for b.Loop() {
		if _, err := ParseNative(ctJSON, benchNative); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseNativeFilter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseNative(ctJSON, benchNativeFilter); err != nil {
			b.Fatal(err)
		}
	}
}

// A full list of telegram ids: the cost of the largest accepted request.
func BenchmarkParseNativeMaxList(b *testing.B) {
	body := []byte(`{"event":"E","channel":"telegram","audience":{"users":` + idList(MaxAudienceIDs) + `}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := ParseNative(ctJSON, body); err != nil {
			b.Fatal(err)
		}
	}
}

// A full list of WhatsApp numbers: phone validation dominates.
func BenchmarkParseNativeMaxPhoneList(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"event":"E","channel":"whatsapp","audience":{"users":[`)
	for i := 0; i < MaxAudienceIDs; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"+3161%07d"`, i)
	}
	sb.WriteString(`]}}`)
	body := []byte(sb.String())
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req, err := ParseNative(ctJSON, body)
		if err != nil {
			b.Fatal(err)
		}
		if len(req.Audience.Users) != MaxAudienceIDs {
			b.Fatalf("%d users", len(req.Audience.Users))
		}
	}
}
