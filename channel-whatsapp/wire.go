package whatsapp

// The Cloud API's send request, as providers.md documents it. Optional
// fields are omitted when empty so that the body is exactly what Meta expects.

type wRequest struct {
	MessagingProduct string        `json:"messaging_product"`
	RecipientType    string        `json:"recipient_type"`
	To               string        `json:"to"`
	Type             string        `json:"type"`
	Text             *wText        `json:"text,omitempty"`
	Image            *wMedia       `json:"image,omitempty"`
	Document         *wMedia       `json:"document,omitempty"`
	Video            *wMedia       `json:"video,omitempty"`
	Interactive      *wInteractive `json:"interactive,omitempty"`
	Template         *wTemplate    `json:"template,omitempty"`
}

type wText struct {
	Body string `json:"body"`
	// PreviewURL is always sent, false unless a flow asks otherwise.
	PreviewURL bool `json:"preview_url"`
}

type wMedia struct {
	ID       string `json:"id,omitempty"`
	Link     string `json:"link,omitempty"`
	Caption  string `json:"caption,omitempty"`
	Filename string `json:"filename,omitempty"`
}

type wInteractive struct {
	Type   string       `json:"type"`
	Header *wHeader     `json:"header,omitempty"`
	Body   *wTextObject `json:"body,omitempty"`
	Footer *wTextObject `json:"footer,omitempty"`
	Action *wAction     `json:"action"`
}

type wHeader struct {
	Type string `json:"type"`
	Text string `json:"text,omitempty"`
}

type wTextObject struct {
	Text string `json:"text"`
}

type wAction struct {
	// Reply buttons.
	Buttons []wButton `json:"buttons,omitempty"`
	// List.
	Button   string     `json:"button,omitempty"`
	Sections []wSection `json:"sections,omitempty"`
	// Flow.
	Name       string           `json:"name,omitempty"`
	Parameters *wFlowParameters `json:"parameters,omitempty"`
}

type wButton struct {
	Type  string `json:"type"`
	Reply wReply `json:"reply"`
}

type wReply struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

type wSection struct {
	Title string `json:"title,omitempty"`
	Rows  []wRow `json:"rows"`
}

type wRow struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
}

type wFlowParameters struct {
	FlowMessageVersion string              `json:"flow_message_version"`
	FlowCTA            string              `json:"flow_cta"`
	FlowID             string              `json:"flow_id,omitempty"`
	FlowName           string              `json:"flow_name,omitempty"`
	FlowToken          string              `json:"flow_token,omitempty"`
	FlowAction         string              `json:"flow_action"`
	FlowActionPayload  *wFlowActionPayload `json:"flow_action_payload,omitempty"`
	Mode               string              `json:"mode,omitempty"`
}

type wFlowActionPayload struct {
	Screen string         `json:"screen,omitempty"`
	Data   map[string]any `json:"data,omitempty"`
}

type wTemplate struct {
	Name       string    `json:"name"`
	Language   wLanguage `json:"language"`
	Components []any     `json:"components,omitempty"`
}

type wLanguage struct {
	Code string `json:"code"`
}

type wComponent struct {
	Type       string       `json:"type"`
	SubType    string       `json:"sub_type,omitempty"`
	Index      string       `json:"index,omitempty"`
	Parameters []wParameter `json:"parameters,omitempty"`
}

type wParameter struct {
	Type   string            `json:"type"`
	Text   string            `json:"text,omitempty"`
	Action *wParameterAction `json:"action,omitempty"`
}

type wParameterAction struct {
	FlowToken      string         `json:"flow_token,omitempty"`
	FlowActionData map[string]any `json:"flow_action_data,omitempty"`
}

// wResponse is both the success and the error body of a send.
type wResponse struct {
	Contacts []struct {
		Input string `json:"input"`
		WaID  string `json:"wa_id"`
	} `json:"contacts"`
	Messages []struct {
		ID string `json:"id"`
	} `json:"messages"`
	Error *struct {
		Message      string `json:"message"`
		Type         string `json:"type"`
		Code         int    `json:"code"`
		ErrorSubcode int    `json:"error_subcode"`
		ErrorData    struct {
			MessagingProduct string `json:"messaging_product"`
			Details          string `json:"details"`
		} `json:"error_data"`
		FBTraceID string `json:"fbtrace_id"`
	} `json:"error"`
}
