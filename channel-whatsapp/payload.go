package whatsapp

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/media"
)

// Limits the Cloud API documents (providers.md; the text limit from Meta's
// reference). Messages beyond them are refused before any request.
const (
	MaxButtons          = 3
	MaxButtonTitle      = 20
	MaxInteractiveBody  = 1024
	MaxListRows         = 10
	MaxListButton       = 20
	MaxTextBody         = 4096
	defaultFlowVersion  = "3"
	defaultFlowButtonIx = "0"
)

// BuildPayload translates one channel-neutral message into the JSON body of
// a Cloud API send to recipient to. It fails with a *channel.PermanentError
// (code "invalid_message") when c cannot be sent as is, e.g. too many
// buttons: Meta would refuse such a message on every retry.
func BuildPayload(to string, c events.Content) ([]byte, error) {
	r, err := buildRequest(to, c, "")
	if err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// buildRequest builds the request; mediaID, when set, is the Meta media id
// of the uploaded file c names ("media:<id>").
func buildRequest(to string, c events.Content, mediaID string) (wRequest, error) {
	r := wRequest{
		MessagingProduct: "whatsapp",
		RecipientType:    "individual",
		To:               to,
		Type:             c.Type,
	}
	if to == "" {
		return r, invalid("recipient is empty")
	}
	switch c.Type {
	case events.ContentText:
		if c.Text == "" {
			return r, invalid("text body is empty")
		}
		if n := utf8.RuneCountInString(c.Text); n > MaxTextBody {
			return r, invalid(fmt.Sprintf("text body has %d characters, at most %d", n, MaxTextBody))
		}
		r.Text = &wText{Body: c.Text, PreviewURL: false}
	case events.ContentImage, events.ContentDocument, events.ContentVideo:
		if c.MediaURL == "" {
			return r, invalid(c.Type + " has no media_url")
		}
		m := &wMedia{Caption: c.Caption}
		switch {
		case mediaID != "":
			m.ID = mediaID
		case media.IsURL(c.MediaURL):
			m.Link = c.MediaURL
		default:
			// Never sent as a media id: a local path or a typo would reach
			// Meta as one ("assets/sample.png") and fail there, or worse.
			return r, invalid(fmt.Sprintf("%s %q is neither an http(s) URL nor an uploaded file (media:<id>)", c.Type, c.MediaURL))
		}
		switch c.Type {
		case events.ContentImage:
			r.Image = m
		case events.ContentDocument:
			m.Filename = c.Filename
			r.Document = m
		case events.ContentVideo:
			r.Video = m
		}
	case events.ContentButtons:
		in, err := buttons(c)
		if err != nil {
			return r, err
		}
		r.Type, r.Interactive = "interactive", in
	case events.ContentList:
		in, err := list(c)
		if err != nil {
			return r, err
		}
		r.Type, r.Interactive = "interactive", in
	case events.ContentWhatsAppFlow:
		in, err := flow(c)
		if err != nil {
			return r, err
		}
		r.Type, r.Interactive = "interactive", in
	case events.ContentTemplate:
		t, err := template(c.Template)
		if err != nil {
			return r, err
		}
		r.Template = t
	default:
		return r, invalid(fmt.Sprintf("content type %q is not supported on WhatsApp", c.Type))
	}
	return r, nil
}

func invalid(reason string) *channel.PermanentError {
	return &channel.PermanentError{Code: CodeInvalidMessage, Reason: reason}
}

func interactiveBody(text string) (*wTextObject, error) {
	if text == "" {
		return nil, invalid("interactive body text is empty")
	}
	if n := utf8.RuneCountInString(text); n > MaxInteractiveBody {
		return nil, invalid(fmt.Sprintf("interactive body has %d characters, at most %d", n, MaxInteractiveBody))
	}
	return &wTextObject{Text: text}, nil
}

func buttons(c events.Content) (*wInteractive, error) {
	body, err := interactiveBody(c.Text)
	if err != nil {
		return nil, err
	}
	if len(c.Buttons) == 0 || len(c.Buttons) > MaxButtons {
		return nil, invalid(fmt.Sprintf("%d buttons, WhatsApp allows 1 to %d", len(c.Buttons), MaxButtons))
	}
	in := &wInteractive{Type: "button", Body: body, Action: &wAction{}}
	for i, b := range c.Buttons {
		if b.ID == "" || b.Title == "" {
			return nil, invalid(fmt.Sprintf("button %d needs an id and a title", i))
		}
		if b.URL != "" {
			return nil, invalid(fmt.Sprintf("button %d is a link: WhatsApp reply buttons cannot open URLs", i))
		}
		if n := utf8.RuneCountInString(b.Title); n > MaxButtonTitle {
			return nil, invalid(fmt.Sprintf("button %d title has %d characters, at most %d", i, n, MaxButtonTitle))
		}
		in.Action.Buttons = append(in.Action.Buttons, wButton{
			Type: "reply", Reply: wReply{ID: b.ID, Title: b.Title},
		})
	}
	return in, nil
}

func list(c events.Content) (*wInteractive, error) {
	if c.List == nil {
		return nil, invalid("list message has no list")
	}
	body, err := interactiveBody(c.Text)
	if err != nil {
		return nil, err
	}
	l := c.List
	if l.Button == "" {
		return nil, invalid("list button text is empty")
	}
	if n := utf8.RuneCountInString(l.Button); n > MaxListButton {
		return nil, invalid(fmt.Sprintf("list button has %d characters, at most %d", n, MaxListButton))
	}
	rows := 0
	in := &wInteractive{Type: "list", Body: body, Action: &wAction{Button: l.Button}}
	for si, s := range l.Sections {
		if len(s.Rows) == 0 {
			return nil, invalid(fmt.Sprintf("list section %d has no rows", si))
		}
		ws := wSection{Title: s.Title}
		for ri, row := range s.Rows {
			if row.ID == "" || row.Title == "" {
				return nil, invalid(fmt.Sprintf("list row %d.%d needs an id and a title", si, ri))
			}
			ws.Rows = append(ws.Rows, wRow{ID: row.ID, Title: row.Title, Description: row.Description})
		}
		rows += len(s.Rows)
		in.Action.Sections = append(in.Action.Sections, ws)
	}
	if rows == 0 || rows > MaxListRows {
		return nil, invalid(fmt.Sprintf("list has %d rows, WhatsApp allows 1 to %d", rows, MaxListRows))
	}
	return in, nil
}

func flow(c events.Content) (*wInteractive, error) {
	f := c.Flow
	if f == nil {
		return nil, invalid("whatsapp_flow message has no flow")
	}
	body, err := interactiveBody(c.Text)
	if err != nil {
		return nil, err
	}
	if (f.FlowID == "") == (f.FlowName == "") {
		return nil, invalid("a flow message needs exactly one of flow_id and flow_name")
	}
	if f.CTA == "" {
		return nil, invalid("a flow message needs a cta")
	}
	p := &wFlowParameters{
		FlowMessageVersion: defaultFlowVersion,
		FlowCTA:            f.CTA,
		FlowID:             f.FlowID,
		FlowName:           f.FlowName,
		FlowToken:          f.Token,
		FlowAction:         f.Action,
		Mode:               f.Mode,
	}
	switch p.FlowAction {
	case "":
		p.FlowAction = "navigate"
	case "navigate", "data_exchange":
	default:
		return nil, invalid(fmt.Sprintf("flow action %q is neither navigate nor data_exchange", f.Action))
	}
	switch p.Mode {
	case "", "published", "draft":
	default:
		return nil, invalid(fmt.Sprintf("flow mode %q is neither published nor draft", f.Mode))
	}
	if p.FlowAction == "navigate" && f.Screen == "" && f.Data != nil {
		return nil, invalid("flow data for navigate needs the screen to open")
	}
	if p.FlowAction == "navigate" && f.Screen != "" {
		p.FlowActionPayload = &wFlowActionPayload{Screen: f.Screen, Data: f.Data}
	}
	in := &wInteractive{
		Type:   "flow",
		Body:   body,
		Action: &wAction{Name: "flow", Parameters: p},
	}
	if f.Header != "" {
		in.Header = &wHeader{Type: "text", Text: f.Header}
	}
	if f.FooterText != "" {
		in.Footer = &wTextObject{Text: f.FooterText}
	}
	return in, nil
}

func template(t *events.Template) (*wTemplate, error) {
	if t == nil {
		return nil, invalid("template message has no template")
	}
	if t.Name == "" || t.Language == "" {
		return nil, invalid("a template needs a name and a language")
	}
	wt := &wTemplate{Name: t.Name, Language: wLanguage{Code: t.Language}}
	if len(t.Components) > 0 {
		for _, c := range t.Components {
			wt.Components = append(wt.Components, c)
		}
	} else if len(t.BodyParams) > 0 {
		body := wComponent{Type: "body"}
		for _, p := range t.BodyParams {
			body.Parameters = append(body.Parameters, wParameter{Type: "text", Text: p})
		}
		wt.Components = append(wt.Components, body)
	}
	if fb := t.FlowButton; fb != nil {
		btn := wComponent{Type: "button", SubType: "flow", Index: fb.Index}
		if btn.Index == "" {
			btn.Index = defaultFlowButtonIx
		}
		// flow_token is optional (Meta defaults it to "unused"); the
		// parameter is left out when there is nothing to pass.
		if fb.FlowToken != "" || fb.FlowActionData != nil {
			btn.Parameters = []wParameter{{
				Type:   "action",
				Action: &wParameterAction{FlowToken: fb.FlowToken, FlowActionData: fb.FlowActionData},
			}}
		}
		wt.Components = append(wt.Components, btn)
	}
	return wt, nil
}
