package whatsappdouble

import (
	"fmt"
	"net/http"
)

// Codes the double answers on its own besides the table of providers.md.
const (
	// CodeInvalidParameter: malformed JSON, unknown field, bad enumeration.
	CodeInvalidParameter = 100
	// CodeMissingParameter: a required parameter is missing.
	CodeMissingParameter = 131008
	// CodeInvalidValue: a parameter breaks a limit (too many buttons...).
	CodeInvalidValue = 131009
	// CodeTemplateMissing: the template name does not exist (WithTemplates).
	CodeTemplateMissing = 132001
)

type errInfo struct {
	status  int
	message string
	details string
}

// errTable holds the documented codes with the HTTP status and texts Meta
// answers them with. The sender under test must branch on the code, so
// throttling codes deliberately come with 400, as Meta sends them.
var errTable = map[int]errInfo{
	190:    {http.StatusUnauthorized, "Error validating access token: Session has expired.", "Invalid OAuth access token."},
	4:      {http.StatusBadRequest, "(#4) Application request limit reached", "Too many API calls from the app."},
	80007:  {http.StatusBadRequest, "(#80007) Rate limit issues", "The WhatsApp Business Account has reached its rate limit."},
	130429: {http.StatusBadRequest, "(#130429) Rate limit hit", "Cloud API message throughput has been reached."},
	131056: {http.StatusBadRequest, "(#131056) (Business Account, Consumer Account) pair rate limit hit", "Too many messages sent from this phone number to the same phone number in a short period of time."},
	131000: {http.StatusInternalServerError, "Something went wrong", "Message failed to send due to an unknown error."},
	131016: {http.StatusServiceUnavailable, "Service unavailable", "A service is temporarily unavailable."},
	1:      {http.StatusInternalServerError, "An unknown error occurred", "Invalid request or possible server error."},
	2:      {http.StatusServiceUnavailable, "Service temporarily unavailable", "Temporary due to downtime or due to being overloaded."},
	131057: {http.StatusServiceUnavailable, "(#131057) Account in maintenance mode", "Business Account is in maintenance mode."},
	131047: {http.StatusBadRequest, "(#131047) Re-engagement message", "Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
	131026: {http.StatusBadRequest, "(#131026) Message Undeliverable", "Unable to deliver message: the recipient is not a WhatsApp user or has not accepted the terms."},
	131048: {http.StatusBadRequest, "(#131048) Spam rate limit hit", "Message failed to send because there are restrictions on how many messages can be sent from this phone number."},
	131049: {http.StatusBadRequest, "(#131049) This message was not delivered to maintain healthy ecosystem engagement.", "Meta chose not to deliver this message."},
	368:    {http.StatusForbidden, "(#368) Temporarily blocked for policies violations", "The WhatsApp Business Account is restricted for violating a platform policy."},
	100:    {http.StatusBadRequest, "(#100) Invalid parameter", ""},
	131008: {http.StatusBadRequest, "(#131008) Required parameter is missing", ""},
	131009: {http.StatusBadRequest, "(#131009) Parameter value is not valid", ""},
	132001: {http.StatusNotFound, "(#132001) Template name does not exist in the translation", ""},
}

// DocumentedCodes are the error codes providers.md lists, each of which
// FailNext and FailRecipient can inject.
var DocumentedCodes = []int{130429, 131056, 80007, 4, 131000, 131016, 1, 2, 131057, 131047, 131026, 131048, 131049, 368, 190}

// HTTPStatus is the HTTP status the double answers code with.
func HTTPStatus(code int) int { return statusOf(code) }

func statusOf(code int) int {
	if e, ok := errTable[code]; ok {
		return e.status
	}
	return http.StatusBadRequest
}

func messageOf(code int) string {
	if e, ok := errTable[code]; ok {
		return e.message
	}
	return fmt.Sprintf("(#%d) Injected failure", code)
}

func detailsOf(code int) string { return errTable[code].details }
