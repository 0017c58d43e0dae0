// Package phone owns phone-number normalisation: every phone number that
// enters Flowgate (trigger requests, contact imports, provider webhooks) is
// stored and compared in E.164 form ("+31612345678").
package phone

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// Reasons a number is refused. Normalize returns them wrapped in *Error, so
// callers test them with errors.Is.
var (
	ErrEmpty              = errors.New("empty phone number")
	ErrNotANumber         = errors.New("not a phone number")
	ErrNoCountryCode      = errors.New("phone number has no country code (add +<country code>)")
	ErrInvalidCountryCode = errors.New("unknown country code")
	ErrTooShort           = errors.New("phone number is too short")
	ErrTooLong            = errors.New("phone number is too long")
	ErrInvalid            = errors.New("not a valid phone number for its country")
	ErrUnknownRegion      = errors.New("unknown default region")
)

// maxInput bounds what is handed to the parser: no real number with its
// punctuation comes near it, and long inputs are where parsers are slow.
const maxInput = 64

// Error says why a raw number was refused.
type Error struct {
	// Raw is the input as given.
	Raw string
	// Reason is one of the Err* sentinels.
	Reason error
}

func (e *Error) Error() string { return fmt.Sprintf("phone %q: %v", e.Raw, e.Reason) }

// Unwrap returns the reason, for errors.Is.
func (e *Error) Unwrap() error { return e.Reason }

// Normalize returns raw in E.164 form, or an *Error whose Reason says why not.
//
// Accepted forms: "+31612345678", "(+1) 415-555-2671", "0031 6 1234 5678"
// ("00" is read as the international prefix), and a number written with its
// country code but without "+" ("31612345678", as Recrubo, BuilderBot and
// Engati callers send them, and as "+" arrives once a query string is
// decoded). A number without country code ("0612345678") is read in
// defaultRegion (ISO 3166 code such as "NL"); with no default region it is
// refused with ErrNoCountryCode.
//
// The number must be valid for its country according to the libphonenumber
// metadata, not only of a plausible length: fictional ranges such as
// +1 555-0100 are refused.
func Normalize(raw string, defaultRegion string) (string, error) {
	fail := func(reason error) (string, error) { return "", &Error{Raw: raw, Reason: reason} }

	region := strings.ToUpper(strings.TrimSpace(defaultRegion))
	if region != "" && !phonenumbers.GetSupportedRegions()[region] {
		return fail(ErrUnknownRegion)
	}
	s := strings.TrimSpace(raw)
	if s == "" {
		return fail(ErrEmpty)
	}
	if len(s) > maxInput {
		return fail(ErrTooLong)
	}
	digits, plus, ok := clean(s)
	if !ok {
		return fail(ErrNotANumber)
	}
	if digits == "" {
		return fail(ErrEmpty)
	}

	switch {
	case plus:
		return parseInternational(raw, digits)
	case strings.HasPrefix(digits, "00"):
		return parseInternational(raw, digits[2:])
	case region != "":
		// A national number first; if the region does not make it valid,
		// the caller may have written the country code without "+".
		e164, err := parse(raw, digits, region)
		if err == nil {
			return e164, nil
		}
		if alt, altErr := parseInternational(raw, digits); altErr == nil {
			return alt, nil
		}
		return "", err
	case digits[0] == '0':
		// A trunk prefix: a national number, and no region to read it in.
		return fail(ErrNoCountryCode)
	default:
		e164, err := parseInternational(raw, digits)
		if err != nil {
			var pe *Error
			if errors.As(err, &pe) && pe.Reason == ErrInvalidCountryCode {
				return fail(ErrNoCountryCode)
			}
		}
		return e164, err
	}
}

// clean keeps the digits of s and reports whether it starts with "+". It
// allows the punctuation people write numbers with and nothing else (no
// letters: a messaging address is never a vanity number).
func clean(s string) (digits string, plus bool, ok bool) {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+':
			// Only one plus, before any digit.
			if plus || b.Len() > 0 {
				return "", false, false
			}
			plus = true
		case r == '-' || r == '.' || r == '/':
			// Separators go between digits: "-919876543210" is a negative
			// integer (a caller's number column gone wrong), not a number.
			if b.Len() == 0 {
				return "", false, false
			}
		case r == ' ' || r == '(' || r == ')' || r == '\u00a0' || r == '\t':
		default:
			return "", false, false
		}
	}
	return b.String(), plus, true
}

func parseInternational(raw, digits string) (string, error) {
	if digits == "" {
		return "", &Error{Raw: raw, Reason: ErrTooShort}
	}
	return parse(raw, "+"+digits, "ZZ")
}

func parse(raw, number, region string) (string, error) {
	fail := func(reason error) (string, error) { return "", &Error{Raw: raw, Reason: reason} }
	num, err := phonenumbers.Parse(number, region)
	if err != nil {
		switch {
		case errors.Is(err, phonenumbers.ErrInvalidCountryCode):
			return fail(ErrInvalidCountryCode)
		case errors.Is(err, phonenumbers.ErrTooShortNSN), errors.Is(err, phonenumbers.ErrTooShortAfterIDD):
			return fail(ErrTooShort)
		case errors.Is(err, phonenumbers.ErrNumTooLong):
			return fail(ErrTooLong)
		default:
			return fail(ErrNotANumber)
		}
	}
	if num.GetExtension() != "" {
		return fail(ErrNotANumber) // an extension cannot receive messages
	}
	if !phonenumbers.IsValidNumber(num) {
		switch phonenumbers.IsPossibleNumberWithReason(num) {
		case phonenumbers.INVALID_COUNTRY_CODE:
			return fail(ErrInvalidCountryCode)
		case phonenumbers.TOO_SHORT:
			return fail(ErrTooShort)
		case phonenumbers.TOO_LONG:
			return fail(ErrTooLong)
		default:
			return fail(ErrInvalid)
		}
	}
	return phonenumbers.Format(num, phonenumbers.E164), nil
}
