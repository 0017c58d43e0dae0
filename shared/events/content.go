package events

// Content is one channel-neutral outbound message. The flow interpreter
// produces it; each channel worker translates it to its provider's payload.
// Only the fields of the given Type are meaningful.
type Content struct {
	// Type is one of the Content* constants.
	Type string `json:"type"`
	// Text is the body for text, buttons, list and whatsapp_flow messages.
	Text string `json:"text,omitempty"`
	// MediaURL, Caption and Filename describe image, document and video messages.
	MediaURL string `json:"media_url,omitempty"`
	Caption  string `json:"caption,omitempty"`
	Filename string `json:"filename,omitempty"`
	// Buttons are quick replies (WhatsApp reply buttons, Telegram inline
	// keyboard, RCS suggestions).
	Buttons []Button `json:"buttons,omitempty"`
	// List is a WhatsApp interactive list (rendered as buttons elsewhere).
	List *List `json:"list,omitempty"`
	// Template is a WhatsApp template message.
	Template *Template `json:"template,omitempty"`
	// Flow is an interactive WhatsApp Flow message.
	Flow *InteractiveFlow `json:"flow,omitempty"`
}

// Content types.
const (
	ContentText         = "text"
	ContentImage        = "image"
	ContentDocument     = "document"
	ContentVideo        = "video"
	ContentButtons      = "buttons"
	ContentList         = "list"
	ContentTemplate     = "template"
	ContentWhatsAppFlow = "whatsapp_flow"
)

// Button is a quick reply: ID comes back when the user presses it.
type Button struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	// URL makes the button open a link instead of replying (Telegram, RCS).
	URL string `json:"url,omitempty"`
}

// List is an interactive list message.
type List struct {
	Button   string        `json:"button"`
	Sections []ListSection `json:"sections"`
}

// ListSection groups the rows of a List.
type ListSection struct {
	Title string    `json:"title,omitempty"`
	Rows  []ListRow `json:"rows"`
}

// ListRow is one selectable row of a List.
type ListRow struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
}

// Template is an approved WhatsApp template.
type Template struct {
	Name     string `json:"name"`
	Language string `json:"language"`
	// BodyParams fill {{1}}, {{2}}, ... of the template body.
	BodyParams []string `json:"body_params,omitempty"`
	// Components, when set, are sent verbatim (Recrubo initialMessage
	// passes provider components through); BodyParams are then ignored.
	Components []map[string]any `json:"components,omitempty"`
	// FlowButton attaches a WhatsApp Flow to a button of the template.
	FlowButton *FlowButton `json:"flow_button,omitempty"`
}

// FlowButton is the "flow" sub_type button component of a template.
type FlowButton struct {
	Index          string         `json:"index"`
	FlowToken      string         `json:"flow_token,omitempty"`
	FlowActionData map[string]any `json:"flow_action_data,omitempty"`
}

// InteractiveFlow is a WhatsApp Flow sent as an interactive message
// (inside the 24-hour window only).
type InteractiveFlow struct {
	FlowID     string         `json:"flow_id,omitempty"`
	FlowName   string         `json:"flow_name,omitempty"`
	CTA        string         `json:"cta"`
	Token      string         `json:"token,omitempty"`
	Action     string         `json:"action,omitempty"` // navigate | data_exchange
	Screen     string         `json:"screen,omitempty"`
	Data       map[string]any `json:"data,omitempty"`
	Mode       string         `json:"mode,omitempty"` // published | draft
	Header     string         `json:"header,omitempty"`
	FooterText string         `json:"footer,omitempty"`
}
