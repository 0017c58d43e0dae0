package store

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The management part of the port: what an operator lists, changes and
// deletes through the admin API. Each aggregate's methods live in their own
// interface, so that a service declares only the slice it uses.

// API key scopes.
const (
	// ScopeAdmin keys may do everything on their bot.
	ScopeAdmin = "admin"
	// ScopeTrigger keys may only trigger flows (dispatch, native triggers,
	// CloudEvents and the drop-in trigger APIs), optionally only some events.
	ScopeTrigger = "trigger"
)

// MaxKeyEvents caps the events a trigger-scope key may be limited to.
const MaxKeyEvents = 100

func checkKeyScope(k APIKey) error {
	switch k.Scope {
	case "", ScopeAdmin:
		if len(k.Events) > 0 {
			return &InvalidError{Field: "events", Reason: "only a trigger-scope key is limited to events"}
		}
	case ScopeTrigger:
	default:
		return &InvalidError{Field: "scope", Reason: fmt.Sprintf("unknown scope %q (admin or trigger)", k.Scope)}
	}
	if len(k.Events) > MaxKeyEvents {
		return &InvalidError{Field: "events", Reason: fmt.Sprintf("more than %d events", MaxKeyEvents)}
	}
	for i, e := range k.Events {
		if err := CheckID(fmt.Sprintf("events[%d]", i), e); err != nil {
			return err
		}
	}
	if len(k.Name) > 256 {
		return &InvalidError{Field: "name", Reason: "longer than 256 bytes"}
	}
	return nil
}

// TriggerFilter selects triggers of a bot. Zero fields do not filter.
type TriggerFilter struct {
	BotID  string
	Status string
	Event  string
	// Since is inclusive, on CreatedAt.
	Since time.Time
	// Limit caps the page (default 100, max 1000).
	Limit int
	// Cursor continues a previous page.
	Cursor string
}

// CheckTriggerStatus returns an *InvalidError unless s is a trigger status.
func CheckTriggerStatus(s string) error {
	switch s {
	case TriggerAccepted, TriggerFanningOut, TriggerDone, TriggerCancelled:
		return nil
	}
	return &InvalidError{Field: "status", Reason: fmt.Sprintf("unknown trigger status %q", s)}
}

// ContactSearch selects contacts of a bot. Zero fields do not filter;
// several filters must all match.
type ContactSearch struct {
	BotID   string
	Channel string
	// ExternalIDPrefix matches external ids starting with it.
	ExternalIDPrefix string
	// Name matches names containing it, ignoring ASCII case.
	Name string
	// Attribute and Value match contacts whose attribute equals Value
	// (compared as text: 30 matches the number 30 and the string "30").
	Attribute string
	Value     string
	// Limit caps the page (default 100, max 1000).
	Limit int
	// Cursor continues a previous page (contacts are in id order).
	Cursor string
}

// MaxAttributeName caps an attribute name used in a search.
const MaxAttributeName = 128

// ChannelSandbox is the sandbox channel's name (as events.ChannelSandbox):
// deleting a sandbox contact deletes its transcript.
const ChannelSandbox = "sandbox"

// ContactCursor is the cursor of a contact search page that ended at id.
func ContactCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// CheckContactSearch checks a search before any I/O and returns the id the
// page starts after and the page size.
func CheckContactSearch(q ContactSearch) (after string, limit int, err error) {
	if err := CheckBotID("bot_id", q.BotID); err != nil {
		return "", 0, err
	}
	if limit, err = CheckLimit(q.Limit, 100, 1000); err != nil {
		return "", 0, err
	}
	for _, f := range []struct{ name, v string }{
		{"channel", q.Channel}, {"external_id_prefix", q.ExternalIDPrefix}, {"name", q.Name}, {"value", q.Value},
	} {
		if len(f.v) > MaxIDBytes || !utf8.ValidString(f.v) || strings.ContainsRune(f.v, 0) {
			return "", 0, &InvalidError{Field: f.name, Reason: fmt.Sprintf("at most %d bytes of UTF-8 text", MaxIDBytes)}
		}
	}
	if q.Attribute != "" {
		if err := CheckID("attribute", q.Attribute); err != nil {
			return "", 0, err
		}
	} else if q.Value != "" {
		return "", 0, &InvalidError{Field: "value", Reason: "a value needs an attribute"}
	}
	if q.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || CheckID("cursor", string(b)) != nil {
			return "", 0, &InvalidError{Field: "cursor", Reason: "malformed"}
		}
		after = string(b)
	}
	return after, limit, nil
}

// BotDeletion is a requested deletion of a bot and all its data.
type BotDeletion struct {
	BotID       string    `json:"bot_id"`
	RequestedAt time.Time `json:"requested_at"`
}

// CheckSubscriptionSecret is the rule for a webhook secret: 16 to 256 bytes.
func CheckSubscriptionSecret(secret string) error {
	if len(secret) < 16 || len(secret) > 256 {
		return &InvalidError{Field: "secret", Reason: "16 to 256 characters"}
	}
	return nil
}
