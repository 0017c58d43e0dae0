package phone

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeAccepts(t *testing.T) {
	cases := []struct {
		raw, region, want string
	}{
		{"+31612345678", "", "+31612345678"},
		{"31612345678", "", "+31612345678"},
		{"0031 6 1234 5678", "", "+31612345678"},
		{"(+1) 415-555-2671", "", "+14155552671"},
		{"+1 (415) 555-2671", "", "+14155552671"},
		{"  +44 7911 123456 ", "", "+447911123456"},
		{"919876543210", "", "+919876543210"},
		{"+91 98765.43210", "", "+919876543210"},
		{"5491122334455", "", "+5491122334455"},
		{"0612345678", "NL", "+31612345678"},
		{"0612345678", "nl", "+31612345678"},
		{"4155552671", "US", "+14155552671"},
		// Country code without "+" still wins when the region reading is invalid.
		{"31612345678", "US", "+31612345678"},
		// A decoded query string turns "+" into a space.
		{" 31612345678", "", "+31612345678"},
	}
	for _, c := range cases {
		got, err := Normalize(c.raw, c.region)
		if err != nil {
			t.Errorf("Normalize(%q, %q): %v", c.raw, c.region, err)
			continue
		}
		if got != c.want {
			t.Errorf("Normalize(%q, %q) = %q, want %q", c.raw, c.region, got, c.want)
		}
	}
}

func TestNormalizeRefuses(t *testing.T) {
	cases := []struct {
		raw, region string
		want        error
	}{
		{"", "", ErrEmpty},
		{"   ", "", ErrEmpty},
		{"+", "", ErrEmpty},
		{"abc", "", ErrNotANumber},
		{"+31 6 1234 5678 ext 12", "", ErrNotANumber},
		{"+31+612345678", "", ErrNotANumber},
		{"3161234+5678", "", ErrNotANumber},
		{"-919876543210", "", ErrNotANumber}, // a negative number (an integer column gone wrong), not a phone number
		{"+-919876543210", "", ErrNotANumber},
		{".31612345678", "", ErrNotANumber},
		{"0612345678", "", ErrNoCountryCode},
		{"612345678", "", ErrInvalid},
		{"+123", "", ErrTooShort},
		{"00", "", ErrTooShort},
		{"+999123456789", "", ErrInvalidCountryCode},
		{"+15550100000", "", ErrInvalid},
		{"+3161234567890123", "", ErrTooLong},
		{strings.Repeat("1", 100), "", ErrTooLong},
		{"0612345678", "XX", ErrUnknownRegion},
	}
	for _, c := range cases {
		got, err := Normalize(c.raw, c.region)
		if err == nil {
			t.Errorf("Normalize(%q, %q) = %q, want error %v", c.raw, c.region, got, c.want)
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("Normalize(%q, %q): error %v, want %v", c.raw, c.region, err, c.want)
		}
		var pe *Error
		if !errors.As(err, &pe) || pe.Raw != c.raw {
			t.Errorf("Normalize(%q, %q): error %#v is not a *Error naming the input", c.raw, c.region, err)
		}
	}
}

// isE164 reports whether s is "+" followed by 8 to 15 digits, the first not 0.
func isE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"+31612345678", "31612345678", "0031 6 1234 5678", "(+1) 415-555-2671",
		"0612345678", "", "+", "00", "+999", "abc", "+44 7911 123456", "1-800-FLOWERS", "\u00a0+49 30 123456"} {
		f.Add(s, "")
		f.Add(s, "NL")
	}
	f.Fuzz(func(t *testing.T, raw, region string) {
		got, err := Normalize(raw, region)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Reason == nil {
				t.Fatalf("Normalize(%q, %q): untyped error %v", raw, region, err)
			}
			if got != "" {
				t.Fatalf("Normalize(%q, %q) returned %q with error", raw, region, got)
			}
			return
		}
		if !isE164(got) || !utf8.ValidString(got) {
			t.Fatalf("Normalize(%q, %q) = %q: not E.164", raw, region, got)
		}
		// E.164 output is a fixed point, with or without a region.
		again, err := Normalize(got, "")
		if err != nil || again != got {
			t.Fatalf("Normalize(%q) = %q, %v; want it unchanged", got, again, err)
		}
	})
}
