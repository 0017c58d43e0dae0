package whatsappdouble

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Cloud API limits the double enforces. Beyond providers.md's (buttons,
// titles, body, rows, list button) it applies Meta's published row, section,
// footer, caption and text limits.
const (
	maxButtons      = 3
	maxButtonTitle  = 20
	maxButtonID     = 256
	maxButtonBody   = 1024
	maxListBody     = 4096
	maxListButton   = 20
	maxListRows     = 10
	maxSections     = 10
	maxRowTitle     = 24
	maxRowDesc      = 72
	maxRowID        = 200
	maxSectionTitle = 24
	maxFooter       = 60
	maxHeaderText   = 60
	maxCaption      = 1024
	maxTextBody     = 4096
)

type validationError struct {
	code    int
	details string
}

func invalidParam(format string, a ...any) *validationError {
	return &validationError{CodeInvalidParameter, fmt.Sprintf(format, a...)}
}
func missing(format string, a ...any) *validationError {
	return &validationError{CodeMissingParameter, fmt.Sprintf(format, a...)}
}
func badValue(format string, a ...any) *validationError {
	return &validationError{CodeInvalidValue, fmt.Sprintf(format, a...)}
}

type sendRequest struct {
	MessagingProduct      string `json:"messaging_product"`
	RecipientType         string `json:"recipient_type"`
	To                    string `json:"to"`
	Type                  string `json:"type"`
	BizOpaqueCallbackData string `json:"biz_opaque_callback_data"`
	Context               *struct {
		MessageID string `json:"message_id"`
	} `json:"context"`
	Text *struct {
		Body       *string `json:"body"`
		PreviewURL *bool   `json:"preview_url"`
	} `json:"text"`
	Image       *media       `json:"image"`
	Document    *media       `json:"document"`
	Video       *media       `json:"video"`
	Audio       *media       `json:"audio"`
	Sticker     *media       `json:"sticker"`
	Interactive *interactive `json:"interactive"`
	Template    *template    `json:"template"`
}

type media struct {
	ID       string `json:"id"`
	Link     string `json:"link"`
	Caption  string `json:"caption"`
	Filename string `json:"filename"`
}

type textObject struct {
	Text string `json:"text"`
}

type interactive struct {
	Type   string `json:"type"`
	Header *struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"header"`
	Body   *textObject `json:"body"`
	Footer *textObject `json:"footer"`
	Action *struct {
		Buttons []struct {
			Type  string `json:"type"`
			Reply *struct {
				ID    string `json:"id"`
				Title string `json:"title"`
			} `json:"reply"`
		} `json:"buttons"`
		Button   string `json:"button"`
		Sections []struct {
			Title string `json:"title"`
			Rows  []struct {
				ID          string `json:"id"`
				Title       string `json:"title"`
				Description string `json:"description"`
			} `json:"rows"`
		} `json:"sections"`
		Name       string          `json:"name"`
		Parameters *flowParameters `json:"parameters"`
	} `json:"action"`
}

type flowParameters struct {
	FlowMessageVersion string `json:"flow_message_version"`
	FlowCTA            string `json:"flow_cta"`
	FlowID             string `json:"flow_id"`
	FlowName           string `json:"flow_name"`
	FlowToken          string `json:"flow_token"`
	FlowAction         string `json:"flow_action"`
	FlowActionPayload  *struct {
		Screen string         `json:"screen"`
		Data   map[string]any `json:"data"`
	} `json:"flow_action_payload"`
	Mode string `json:"mode"`
}

type template struct {
	Name     string `json:"name"`
	Language *struct {
		Code   string `json:"code"`
		Policy string `json:"policy"`
	} `json:"language"`
	Components []component `json:"components"`
}

type component struct {
	Type       string      `json:"type"`
	SubType    string      `json:"sub_type"`
	Index      json.Number `json:"index"`
	Parameters []parameter `json:"parameters"`
}

type parameter struct {
	Type     string          `json:"type"`
	Text     *string         `json:"text"`
	Payload  string          `json:"payload"`
	Currency json.RawMessage `json:"currency"`
	DateTime json.RawMessage `json:"date_time"`
	Image    *media          `json:"image"`
	Document *media          `json:"document"`
	Video    *media          `json:"video"`
	Action   *struct {
		FlowToken      *string        `json:"flow_token"`
		FlowActionData map[string]any `json:"flow_action_data"`
	} `json:"action"`
}

// validate decodes body strictly (unknown fields are refused, as Meta
// refuses unknown parameters) and checks it against the contract.
func validate(body []byte, templates map[string]bool) (*sendRequest, *validationError) {
	var r sendRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, invalidParam("request body: %v", err)
	}
	if dec.More() {
		return nil, invalidParam("request body: trailing data")
	}
	if r.MessagingProduct != "whatsapp" {
		return nil, invalidParam("messaging_product must be whatsapp, got %q", r.MessagingProduct)
	}
	if r.RecipientType != "individual" {
		return nil, invalidParam("recipient_type must be individual, got %q", r.RecipientType)
	}
	if !validPhone(r.To) {
		return nil, invalidParam("to %q is not a phone number", r.To)
	}
	// The message objects, in a fixed order (no map per request: the double
	// runs inside throughput benchmarks).
	objects := [...]struct {
		name    string
		present bool
	}{
		{"text", r.Text != nil}, {"image", r.Image != nil}, {"document", r.Document != nil},
		{"video", r.Video != nil}, {"audio", r.Audio != nil}, {"sticker", r.Sticker != nil},
		{"interactive", r.Interactive != nil}, {"template", r.Template != nil},
	}
	known := false
	for _, o := range objects {
		if o.name == r.Type {
			known = true
			if !o.present {
				return nil, missing("type is %s but the %s object is missing", r.Type, r.Type)
			}
		}
	}
	if !known {
		return nil, invalidParam("type %q is not supported", r.Type)
	}
	for _, o := range objects {
		if o.present && o.name != r.Type {
			return nil, invalidParam("type is %s but a %s object is present", r.Type, o.name)
		}
	}
	var err *validationError
	switch r.Type {
	case "text":
		switch {
		case r.Text.Body == nil || *r.Text.Body == "":
			err = missing("text.body is required")
		case utf8.RuneCountInString(*r.Text.Body) > maxTextBody:
			err = badValue("text.body is longer than %d characters", maxTextBody)
		}
	case "image", "document", "video", "audio", "sticker":
		err = validateMedia(r.Type, map[string]*media{"image": r.Image, "document": r.Document, "video": r.Video, "audio": r.Audio, "sticker": r.Sticker}[r.Type])
	case "interactive":
		err = validateInteractive(r.Interactive)
	case "template":
		err = validateTemplate(r.Template, templates)
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func validPhone(s string) bool {
	s = strings.TrimPrefix(s, "+")
	return len(s) >= 6 && len(s) <= 15 && digits(s)
}

func validateMedia(kind string, m *media) *validationError {
	if (m.ID == "") == (m.Link == "") {
		return invalidParam("%s needs exactly one of id and link", kind)
	}
	if m.Link != "" && !strings.HasPrefix(m.Link, "https://") && !strings.HasPrefix(m.Link, "http://") {
		return badValue("%s.link %q is not an http(s) URL", kind, m.Link)
	}
	if m.Caption != "" && (kind == "audio" || kind == "sticker") {
		return invalidParam("%s has no caption", kind)
	}
	if utf8.RuneCountInString(m.Caption) > maxCaption {
		return badValue("%s.caption is longer than %d characters", kind, maxCaption)
	}
	if m.Filename != "" && kind != "document" {
		return invalidParam("%s has no filename", kind)
	}
	return nil
}

func runes(s string) int { return utf8.RuneCountInString(s) }

func validateInteractive(in *interactive) *validationError {
	if in.Action == nil {
		return missing("interactive.action is required")
	}
	if in.Body == nil || in.Body.Text == "" {
		return missing("interactive.body.text is required")
	}
	if in.Footer != nil && (in.Footer.Text == "" || runes(in.Footer.Text) > maxFooter) {
		return badValue("interactive.footer.text must have 1 to %d characters", maxFooter)
	}
	if in.Header != nil {
		if in.Header.Type != "text" {
			return invalidParam("interactive.header.type %q is not supported by the double", in.Header.Type)
		}
		if in.Header.Text == "" || runes(in.Header.Text) > maxHeaderText {
			return badValue("interactive.header.text must have 1 to %d characters", maxHeaderText)
		}
	}
	a := in.Action
	switch in.Type {
	case "button":
		if runes(in.Body.Text) > maxButtonBody {
			return badValue("interactive.body.text is longer than %d characters", maxButtonBody)
		}
		if len(a.Buttons) == 0 || len(a.Buttons) > maxButtons {
			return badValue("action.buttons must have 1 to %d buttons, got %d", maxButtons, len(a.Buttons))
		}
		ids, titles := map[string]bool{}, map[string]bool{}
		for i, b := range a.Buttons {
			if b.Type != "reply" || b.Reply == nil {
				return invalidParam("action.buttons[%d] must be of type reply with a reply object", i)
			}
			if b.Reply.ID == "" || runes(b.Reply.ID) > maxButtonID {
				return badValue("action.buttons[%d].reply.id must have 1 to %d characters", i, maxButtonID)
			}
			if b.Reply.Title == "" || runes(b.Reply.Title) > maxButtonTitle {
				return badValue("action.buttons[%d].reply.title must have 1 to %d characters", i, maxButtonTitle)
			}
			if ids[b.Reply.ID] || titles[b.Reply.Title] {
				return badValue("action.buttons[%d] repeats an id or a title", i)
			}
			ids[b.Reply.ID], titles[b.Reply.Title] = true, true
		}
	case "list":
		if runes(in.Body.Text) > maxListBody {
			return badValue("interactive.body.text is longer than %d characters", maxListBody)
		}
		if a.Button == "" || runes(a.Button) > maxListButton {
			return badValue("action.button must have 1 to %d characters", maxListButton)
		}
		if len(a.Sections) == 0 || len(a.Sections) > maxSections {
			return badValue("action.sections must have 1 to %d sections", maxSections)
		}
		rows, ids := 0, map[string]bool{}
		for i, sec := range a.Sections {
			if len(a.Sections) > 1 && sec.Title == "" {
				return missing("action.sections[%d].title is required when there are several sections", i)
			}
			if runes(sec.Title) > maxSectionTitle {
				return badValue("action.sections[%d].title is longer than %d characters", i, maxSectionTitle)
			}
			if len(sec.Rows) == 0 {
				return missing("action.sections[%d].rows is empty", i)
			}
			for j, row := range sec.Rows {
				switch {
				case row.ID == "" || runes(row.ID) > maxRowID:
					return badValue("rows[%d].id must have 1 to %d characters", j, maxRowID)
				case row.Title == "" || runes(row.Title) > maxRowTitle:
					return badValue("rows[%d].title must have 1 to %d characters", j, maxRowTitle)
				case runes(row.Description) > maxRowDesc:
					return badValue("rows[%d].description is longer than %d characters", j, maxRowDesc)
				case ids[row.ID]:
					return badValue("rows[%d].id %q is repeated", j, row.ID)
				}
				ids[row.ID] = true
			}
			rows += len(sec.Rows)
		}
		if rows > maxListRows {
			return badValue("a list has at most %d rows, got %d", maxListRows, rows)
		}
	case "flow":
		if runes(in.Body.Text) > maxButtonBody {
			return badValue("interactive.body.text is longer than %d characters", maxButtonBody)
		}
		if a.Name != "flow" {
			return invalidParam("action.name must be flow")
		}
		p := a.Parameters
		if p == nil {
			return missing("action.parameters is required")
		}
		if p.FlowMessageVersion != "3" {
			return badValue("flow_message_version must be \"3\"")
		}
		if p.FlowCTA == "" {
			return missing("flow_cta is required")
		}
		if (p.FlowID == "") == (p.FlowName == "") {
			return invalidParam("exactly one of flow_id and flow_name is required")
		}
		switch p.FlowAction {
		case "", "navigate":
			if p.FlowActionPayload != nil && p.FlowActionPayload.Screen == "" {
				return missing("flow_action_payload.screen is required with navigate")
			}
		case "data_exchange":
			if p.FlowActionPayload != nil {
				return invalidParam("flow_action_payload is only for navigate")
			}
		default:
			return invalidParam("flow_action must be navigate or data_exchange")
		}
		switch p.Mode {
		case "", "published", "draft":
		default:
			return invalidParam("mode must be published or draft")
		}
	default:
		return invalidParam("interactive.type %q is not supported", in.Type)
	}
	return nil
}

func validateTemplate(t *template, templates map[string]bool) *validationError {
	if t.Name == "" {
		return missing("template.name is required")
	}
	if t.Language == nil || t.Language.Code == "" {
		return missing("template.language.code is required")
	}
	if templates != nil && !templates[t.Name] {
		return &validationError{CodeTemplateMissing, fmt.Sprintf("template name (%s) does not exist in %s", t.Name, t.Language.Code)}
	}
	for i, c := range t.Components {
		switch c.Type {
		case "header", "body":
			for j, p := range c.Parameters {
				if err := validateParameter(p); err != "" {
					return invalidParam("components[%d].parameters[%d]: %s", i, j, err)
				}
			}
		case "button":
			if c.SubType == "" || c.Index == "" {
				return missing("components[%d]: a button needs sub_type and index", i)
			}
			if _, err := c.Index.Int64(); err != nil {
				return invalidParam("components[%d].index %q is not a number", i, c.Index)
			}
			switch c.SubType {
			case "flow":
				for j, p := range c.Parameters {
					if p.Type != "action" || p.Action == nil {
						return invalidParam("components[%d].parameters[%d]: a flow button takes an action parameter", i, j)
					}
					if p.Action.FlowToken != nil && *p.Action.FlowToken == "" {
						return badValue("components[%d].parameters[%d].action.flow_token is empty", i, j)
					}
				}
			case "quick_reply", "url", "copy_code", "catalog":
			default:
				return invalidParam("components[%d].sub_type %q is not supported", i, c.SubType)
			}
		default:
			return invalidParam("components[%d].type %q is not supported", i, c.Type)
		}
	}
	return nil
}

func validateParameter(p parameter) string {
	switch p.Type {
	case "text":
		if p.Text == nil || *p.Text == "" {
			return "a text parameter needs text"
		}
	case "currency", "date_time", "image", "document", "video", "payload":
	default:
		return fmt.Sprintf("parameter type %q is not supported", p.Type)
	}
	return ""
}
