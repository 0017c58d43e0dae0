package ingress

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/events"
)

// drain parses and validates every record of rr and checks what must hold
// for any input: no panic, line numbers that only grow, and accepted
// records in the stored form.
func drain(t *testing.T, rr recordReader, maxLine int) {
	last := 0
	for i := 0; ; i++ {
		rec, rej, err := rr.next()
		if err != nil {
			var re readError
			if !errors.Is(err, io.EOF) && !errors.As(err, &re) {
				// The input is a string: only EOF and oversized records end it.
				if !strings.Contains(err.Error(), "record") {
					t.Fatalf("unexpected read error: %v", err)
				}
			}
			return
		}
		line := rec.line
		if rej != nil {
			line = rej.Line
			if rej.Reason == "" {
				t.Fatalf("rejection without a reason: %+v", rej)
			}
		}
		if line < 1 || line < last || line > maxLine {
			t.Fatalf("line %d after %d (input has %d lines)", line, last, maxLine)
		}
		last = line
		if rej != nil {
			continue
		}
		u, vrej := validateRecord("bot", rec, "NL", time.Now())
		if vrej != nil {
			if vrej.Line != rec.line || vrej.Reason == "" {
				t.Fatalf("bad rejection %+v for line %d", vrej, rec.line)
			}
			continue
		}
		switch u.Channel {
		case events.ChannelWhatsApp, events.ChannelRCS:
			if !strings.HasPrefix(u.ExternalID, "+") {
				t.Fatalf("accepted phone number %q is not E.164", u.ExternalID)
			}
		case events.ChannelTelegram, events.ChannelSandbox:
		default:
			t.Fatalf("accepted unknown channel %q", u.Channel)
		}
		if u.ExternalID == "" || u.NewID == "" {
			t.Fatalf("accepted record without id: %+v", u)
		}
	}
}

func lineCount(s string) int { return strings.Count(s, "\n") + 1 }

func FuzzImportCSV(f *testing.F) {
	f.Add("channel,external_id,name,plan\nwhatsapp,+31612345678,Ann,Premium\nsandbox,bob,\"B, b\",\n")
	f.Add("channel,external_id\ntelegram,123\nfax,1\nwhatsapp,\"unterminated\n")
	f.Add("\ufeffChannel,External_ID,opted_out\nrcs,0612345678,true\nrcs,x,maybe\n")
	f.Add("channel,external_id\n\"a\"b,c\n\n\nsandbox,z,extra\n")
	f.Fuzz(func(t *testing.T, in string) {
		rr, err := newCSVReader(strings.NewReader(in))
		if err != nil {
			return // a refused header
		}
		drain(t, rr, lineCount(in))
	})
}

func FuzzImportNDJSON(f *testing.F) {
	f.Add(`{"channel":"whatsapp","external_id":"+31612345678","attributes":{"a":1}}` + "\n" + `not json` + "\n")
	f.Add(`{"channel":"telegram","external_id":123,"opted_out":"yes"}` + "\r\n\r\n" + `{"x":[1,{"y":null}]}`)
	f.Add(`{"channel":"sandbox","external_id":"a\u0000b","name":"\u202e"} {}`)
	f.Add(`{"attributes":[],"external_id":1e400}`)
	f.Fuzz(func(t *testing.T, in string) {
		drain(t, newNDJSONReader(strings.NewReader(in)), lineCount(in))
	})
}
