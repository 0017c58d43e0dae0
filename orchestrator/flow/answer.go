package flow

import (
	"math"
	"net/mail"
	"strconv"
	"strings"
	"unicode/utf8"
)

// checkAnswer validates a reply to an ask step. It returns the value to
// store, the reply as text (vars.last_reply) and, when the answer is not
// acceptable, a short reason (empty when it is).
//
// Stored values: text, email and regex answers as the trimmed text; numbers
// as float64 (what JSON gives back, so a stored state behaves the same);
// phone numbers as digits with a leading + when the user typed one; button
// answers as the button or row id, so flows do not depend on wording.
//
// Option titles are compared as the user saw them, placeholders rendered
// with sc (nil renders nothing, for tests of static titles).
func checkAnswer(def *Definition, s *Step, e Reply, sc *scope) (value any, input, problem string) {
	// Invalid UTF-8 would turn into U+FFFD when the state is stored as
	// JSON; replace it now so a reloaded state equals the returned one.
	input = strings.ToValidUTF8(strings.TrimSpace(e.Text), "\uFFFD")
	if input == "" && e.ButtonID != "" {
		input = strings.ToValidUTF8(buttonTitle(s, e.ButtonID, sc), "\uFFFD")
	}
	kind := ValidateText
	var val Validation
	if s.Validate != nil {
		val = *s.Validate
		kind = val.Type
	}
	if input == "" && kind != ValidateButton {
		return nil, input, "empty answer"
	}
	switch kind {
	case ValidateText:
		n := float64(utf8.RuneCountInString(input))
		if val.Min != nil && n < *val.Min {
			return nil, input, "too short"
		}
		if val.Max != nil && n > *val.Max {
			return nil, input, "too long"
		}
		return input, input, ""
	case ValidateNumber:
		f, ok := parseNumber(input)
		if !ok {
			return nil, input, "not a number"
		}
		if val.Min != nil && f < *val.Min {
			return nil, input, "below the minimum"
		}
		if val.Max != nil && f > *val.Max {
			return nil, input, "above the maximum"
		}
		return f, input, ""
	case ValidateEmail:
		addr, err := mail.ParseAddress(input)
		if err != nil || addr.Address != input || !strings.Contains(input[strings.LastIndexByte(input, '@')+1:], ".") {
			return nil, input, "not an email address"
		}
		return input, input, ""
	case ValidatePhone:
		p, ok := normalizePhone(input)
		if !ok {
			return nil, input, "not a phone number"
		}
		return p, input, ""
	case ValidateRegex:
		re := def.regexps[val.Regex]
		if re == nil || !re.MatchString(input) {
			return nil, input, "does not match the expected format"
		}
		return input, input, ""
	case ValidateButton:
		if id, ok := matchOption(s, e.ButtonID, input, sc); ok {
			return id, input, ""
		}
		return nil, input, "not one of the options"
	}
	return nil, input, "unknown validation " + kind
}

// parseNumber accepts integers and decimals, with a decimal comma as many
// users type it ("1,5"); it refuses NaN and infinities, which ParseFloat
// would otherwise accept.
func parseNumber(s string) (float64, bool) {
	s = strings.ReplaceAll(s, " ", "")
	if strings.Count(s, ",") == 1 && !strings.Contains(s, ".") {
		s = strings.Replace(s, ",", ".", 1)
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r == '.' || r == '-' || r == '+' || r == 'e' || r == 'E') {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// normalizePhone accepts 7–15 digits (E.164's maximum) separated by
// spaces, dots, dashes or parentheses, optionally after a +.
func normalizePhone(s string) (string, bool) {
	var b strings.Builder
	plus := strings.HasPrefix(s, "+")
	if plus {
		b.WriteByte('+')
		s = s[1:]
	}
	digits := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
			digits++
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')':
		default:
			return "", false
		}
	}
	if digits < 7 || digits > 15 {
		return "", false
	}
	return b.String(), true
}

// matchOption finds the button or list row the user chose: by id when the
// channel reports one, else by id or title typed as text (channels without
// buttons, the sandbox).
func matchOption(s *Step, buttonID, text string, sc *scope) (string, bool) {
	type option struct{ id, title string }
	var opts []option
	for _, b := range s.Buttons {
		if b.ID != "" {
			opts = append(opts, option{b.ID, shown(b.Title, sc)})
		}
	}
	if s.List != nil {
		for _, sec := range s.List.Sections {
			for _, row := range sec.Rows {
				opts = append(opts, option{row.ID, shown(row.Title, sc)})
			}
		}
	}
	if buttonID != "" {
		for _, o := range opts {
			if o.id == buttonID {
				return o.id, true
			}
		}
	}
	for _, o := range opts {
		if strings.EqualFold(o.id, text) || strings.EqualFold(strings.TrimSpace(o.title), text) {
			return o.id, true
		}
	}
	return "", false
}

// buttonTitle is the title of the option with the given id, or the id.
func buttonTitle(s *Step, id string, sc *scope) string {
	for _, b := range s.Buttons {
		if b.ID == id {
			return shown(b.Title, sc)
		}
	}
	if s.List != nil {
		for _, sec := range s.List.Sections {
			for _, row := range sec.Rows {
				if row.ID == id {
					return shown(row.Title, sc)
				}
			}
		}
	}
	return id
}

// shown is a title as the user saw it.
func shown(title string, sc *scope) string {
	if sc == nil {
		return title
	}
	out, _ := render(title, sc)
	return out
}
