// Package events owns the messages Flowgate services exchange on the bus:
// their CloudEvent types, NATS subjects and JSON payloads.
package events

import (
	"encoding/json"
	"strings"
	"time"
)

// CloudEvent types. Every bus message carries one of these as ce-type.
const (
	TypeTriggerAccepted = "dev.flowgate.trigger.accepted"
	// TypeTriggerBatch carries several accepted triggers, of one bot or of
	// several, in one message (TriggerBatch): the ingress's group commit.
	TypeTriggerBatch = "dev.flowgate.trigger.batch"
	TypeOutbound     = "dev.flowgate.outbound"
	// TypeOutboundBatch carries several runs' bundles of one outbound
	// subject in one message (OutboundBatch).
	TypeOutboundBatch = "dev.flowgate.outbound.batch"
	TypeInbound       = "dev.flowgate.inbound.message"
	TypeDelivery      = "dev.flowgate.message.status"
	TypeRunStatus     = "dev.flowgate.run.status"
	TypeRunCommand    = "dev.flowgate.run.command"
)

// Subject prefixes. A full subject appends the bot id (and channel where
// relevant), e.g. "flowgate.outbound.whatsapp.acme".
const (
	SubjectTrigger = "flowgate.trigger"
	// SubjectTriggerStandby carries the triggers the ingress could not
	// publish on SubjectTrigger because that stream had no leader (a NATS
	// node lost): flowgate.trigger-standby.<bot>, read by the orchestrator
	// as the triggers are (bus.StreamTriggersStandby).
	SubjectTriggerStandby = "flowgate.trigger-standby"
	SubjectOutbound       = "flowgate.outbound"
	SubjectInbound        = "flowgate.inbound"
	SubjectDelivery       = "flowgate.delivery"
	SubjectRunStatus      = "flowgate.run"
	SubjectDLQ            = "flowgate.dlq"
	// SubjectWebhook carries run status changes fanned out to one webhook
	// subscription each: flowgate.webhook.<bot>.<subscription>.
	SubjectWebhook = "flowgate.webhook"
	SubjectControl = "flowgate.control"
	// SubjectReplay carries dead letters replayed to the one consumer that
	// gave up on them, for a stream read by several (FLOWGATE_RUNS):
	// flowgate.replay.<consumer>.<original subject>.
	SubjectReplay = "flowgate.replay"
)

// TriggerSubject is where the ingress publishes accepted triggers of a bot.
func TriggerSubject(bot string) string { return SubjectTrigger + "." + bot }

// SubjectTriggerBots is where the ingress publishes a trigger batch that
// carries triggers of several bots (its group commit, ingress/batch.go).
// A bot id cannot start with "_", so no bot's trigger subject is this one.
const SubjectTriggerBots = SubjectTrigger + "._bots"

// Delivery lanes. Every outbound bundle travels in one lane of its bot:
// LaneHigh carries messages that answer a user or target one user (replies
// inside a conversation, ask re-prompts, dispatches to one user), LaneBulk
// carries broadcast fan-out. Channel workers serve an account's high lane
// first and still give its bulk lane a share (docs/channels.md).
const (
	LaneHigh = "high"
	LaneBulk = "bulk"
)

// KnownLane reports whether l names a lane.
func KnownLane(l string) bool { return l == LaneHigh || l == LaneBulk }

// OutboundSubject is where the orchestrator publishes a bot's messages for
// a channel in one lane ("" = LaneHigh):
// flowgate.outbound.<channel>.<bot>.<lane>. One subject per bot and lane
// lets channel workers consume each of them on its own (no bot's backlog
// stands in front of another's).
func OutboundSubject(channel, bot, lane string) string {
	if lane == "" {
		lane = LaneHigh
	}
	return SubjectOutbound + "." + channel + "." + bot + "." + lane
}

// ParseOutboundSubject returns the bot and lane of an outbound subject.
// Subjects of releases before lanes (flowgate.outbound.<channel>.<bot>)
// are LaneHigh. ok is false for anything else.
func ParseOutboundSubject(subject string) (channel, bot, lane string, ok bool) {
	rest, found := strings.CutPrefix(subject, SubjectOutbound+".")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, ".")
	switch {
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return parts[0], parts[1], LaneHigh, true
	case len(parts) == 3 && parts[0] != "" && parts[1] != "" && KnownLane(parts[2]):
		return parts[0], parts[1], parts[2], true
	}
	return "", "", "", false
}

// InboundSubject carries user messages received on a channel.
func InboundSubject(channel, bot string) string {
	return SubjectInbound + "." + channel + "." + bot
}

// DeliverySubject carries message status changes reported for a channel.
func DeliverySubject(channel, bot string) string {
	return SubjectDelivery + "." + channel + "." + bot
}

// ControlSubject carries commands for a bot's runs (cancel).
func ControlSubject(bot string) string { return SubjectControl + "." + bot }

// RunCommand asks the orchestrator to act on a run.
type RunCommand struct {
	BotID   string    `json:"bot_id"`
	RunID   string    `json:"run_id"`
	Command string    `json:"command"` // cancel
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// RunStatusSubject carries run status changes of a bot.
func RunStatusSubject(bot string) string { return SubjectRunStatus + "." + bot }

// WebhookSubject carries the deliveries of one webhook subscription of a bot.
func WebhookSubject(bot, subscription string) string {
	return SubjectWebhook + "." + bot + "." + subscription
}

// The built-in channels' names (each channel package registers its
// provider under its name: shared/provider).
const (
	ChannelSandbox  = "sandbox"
	ChannelWhatsApp = "whatsapp"
	ChannelTelegram = "telegram"
	ChannelRCS      = "rcs"
)

// Audience says who a trigger is for. Exactly one of Users, UsersBM or
// Everyone selects the contacts; Filter narrows Everyone.
type Audience struct {
	// Users are external ids (E.164 phone numbers, Telegram chat ids) on Platform.
	Users []string `json:"users,omitempty"`
	// UsersBM are internal contact ids.
	UsersBM []string `json:"users_bm,omitempty"`
	// Everyone selects every reachable contact of the bot on Platform.
	Everyone bool `json:"everyone,omitempty"`
	// Platform is a channel name or "any".
	Platform string `json:"platform,omitempty"`
	// Filter is an expr-lang condition over contact attributes.
	Filter string `json:"filter,omitempty"`
}

// TriggerBatch is the payload of a TypeTriggerBatch message: triggers
// accepted together, each as the JSON of a Trigger with its own id and
// bot; the message's id names the first. A batch of one bot is published
// on that bot's TriggerSubject with the bot as its CloudEvent subject; a
// batch of several on SubjectTriggerBots, without a CloudEvent subject.
type TriggerBatch struct {
	Triggers []json.RawMessage `json:"triggers"`
}

// Trigger is one accepted external request, as published by the ingress.
type Trigger struct {
	ID     string `json:"id"`
	BotID  string `json:"bot_id"`
	Source string `json:"source"` // dispatch, native, cloudevents, botmother, engati, recrubo
	// Event is the event name the caller used, if any; FlowID is resolved by the ingress.
	Event   string `json:"event,omitempty"`
	FlowID  string `json:"flow_id"`
	Channel string `json:"channel"`
	// Audience selects the contacts.
	Audience Audience `json:"audience"`
	// Name is the contact's display name, when the caller gave one.
	Name string `json:"name,omitempty"`
	// Data is merged into each run and stored as the contact's last_request.
	Data map[string]any `json:"data,omitempty"`
	// NoData says the request carried no data at all: the contacts keep
	// their last_request. A request with data, even {}, replaces it.
	NoData bool `json:"no_data,omitempty"`
	// Attributes are set on the contact (Engati).
	Attributes map[string]any `json:"attributes,omitempty"`
	// IdempotencyKey, when given, makes retries of the request harmless.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// InitialMessage is a template for users outside the WhatsApp 24-hour window.
	InitialMessage *Content `json:"initial_message,omitempty"`
	// RunID, when set, is the id the single run of this trigger must have
	// (Recrubo creates the flow run id before the run exists).
	RunID string `json:"run_id,omitempty"`
	// Priority is the lane of the trigger's messages (LaneHigh or LaneBulk);
	// "" chooses by audience: one user is high, a broadcast is bulk.
	Priority   string    `json:"priority,omitempty"`
	AcceptedAt time.Time `json:"accepted_at"`
}

// OutboundMessage is one message of an Outbound bundle.
type OutboundMessage struct {
	// ID is deterministic (run id + sequence): the idempotency key of the send.
	ID      string  `json:"id"`
	Seq     int     `json:"seq"`
	Step    string  `json:"step,omitempty"`
	Content Content `json:"content"`
}

// Outbound is an ordered bundle of messages for one contact of one run. A
// channel worker sends them in order, skipping those already accepted.
type Outbound struct {
	BotID     string            `json:"bot_id"`
	RunID     string            `json:"run_id"`
	TriggerID string            `json:"trigger_id,omitempty"`
	ContactID string            `json:"contact_id"`
	Channel   string            `json:"channel"`
	To        string            `json:"to"`
	Messages  []OutboundMessage `json:"messages"`
	// LastInboundAt is when the contact last wrote (WhatsApp window).
	LastInboundAt *time.Time `json:"last_inbound_at,omitempty"`
	// Lane is the delivery lane the bundle was published in (LaneHigh or
	// LaneBulk; "" before lanes existed: high).
	Lane string `json:"lane,omitempty"`
}

// OutboundID is the id of a bundle's message of its own: its first
// message's (each message's id names its run and sequence).
func OutboundID(out Outbound) string { return "out:" + out.Messages[0].ID }

// Bundles decodes the bundles of an outbound message of type typ: its own
// (TypeOutbound) or those it carries (TypeOutboundBatch).
func Bundles(typ string, data []byte) ([]Outbound, error) {
	if typ == TypeOutboundBatch {
		var b OutboundBatch
		err := json.Unmarshal(data, &b)
		return b.Bundles, err
	}
	var out Outbound
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return []Outbound{out}, nil
}

// OutboundBatch is the payload of a TypeOutboundBatch message: bundles of
// one bot's lane on one channel, each for another contact, published
// together by one commit of the orchestrator. A channel worker handles
// each bundle as it would a message of its own; the message's id names
// the bundles it carries.
type OutboundBatch struct {
	Bundles []Outbound `json:"bundles"`
}

// Inbound is a message a user sent to a bot.
type Inbound struct {
	BotID             string `json:"bot_id"`
	Channel           string `json:"channel"`
	From              string `json:"from"`
	Name              string `json:"name,omitempty"`
	ProviderMessageID string `json:"provider_message_id"`
	Text              string `json:"text,omitempty"`
	// ButtonID is the id of a pressed quick reply or list row.
	ButtonID string `json:"button_id,omitempty"`
	// FlowToken and FlowResponse carry a completed WhatsApp Flow (nfm_reply).
	FlowToken    string         `json:"flow_token,omitempty"`
	FlowResponse map[string]any `json:"flow_response,omitempty"`
	ReceivedAt   time.Time      `json:"received_at"`
}

// Message statuses, in order of progress.
const (
	StatusQueued    = "queued"
	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusRead      = "read"
	StatusFailed    = "failed"
)

// Delivery is a status change of one outbound message, reported by a
// channel worker (sent / failed) or a provider webhook (delivered / read / failed).
type Delivery struct {
	BotID   string `json:"bot_id"`
	Channel string `json:"channel"`
	// MessageID is Flowgate's id; provider webhooks only know ProviderMessageID.
	MessageID         string    `json:"message_id,omitempty"`
	ProviderMessageID string    `json:"provider_message_id,omitempty"`
	RunID             string    `json:"run_id,omitempty"`
	TriggerID         string    `json:"trigger_id,omitempty"`
	ContactID         string    `json:"contact_id,omitempty"`
	Seq               int       `json:"seq,omitempty"`
	Status            string    `json:"status"`
	Reason            string    `json:"reason,omitempty"`
	Code              string    `json:"code,omitempty"`
	Unreachable       bool      `json:"unreachable,omitempty"`
	At                time.Time `json:"at"`
}

// RunStatus is a run's status change, delivered to webhook subscribers.
type RunStatus struct {
	BotID     string    `json:"bot_id"`
	RunID     string    `json:"run_id"`
	TriggerID string    `json:"trigger_id,omitempty"`
	FlowID    string    `json:"flow_id"`
	ContactID string    `json:"contact_id"`
	Status    string    `json:"status"`
	Previous  string    `json:"previous,omitempty"`
	Error     string    `json:"error,omitempty"`
	Version   int64     `json:"version"`
	At        time.Time `json:"at"`
	// RunVersion is the run's store version once this change is written
	// (store.Run.Version): the change is published before the write, and a
	// reader of the run (a webhook's receiver) sees it once the stored
	// version has reached this. 0 in changes published before it existed.
	RunVersion int64 `json:"run_version,omitempty"`
}
