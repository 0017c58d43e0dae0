package ingress

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/flowgate/flowgate/shared/store"
)

// telegramSecretPattern is what Telegram's setWebhook accepts as
// secret_token: 1 to 256 of A-Z a-z 0-9 _ -. Telegram refuses anything else,
// so a bot holding such a secret could never receive an update.
var telegramSecretPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

// telegramTokenPattern is a bot token from @BotFather: "<bot id>:<secret>".
var telegramTokenPattern = regexp.MustCompile(`^[0-9]{1,20}:[A-Za-z0-9_-]{1,200}$`)

// checkAccounts refuses channel accounts a provider could not work with,
// naming the field: a WhatsApp number without its access token (nothing can
// be sent) or app secret (no webhook can be verified), a Telegram bot token
// of the wrong shape, or a webhook secret Telegram refuses.
func checkAccounts(ch store.ChannelAccounts) *apiError {
	missing := func(field string) *apiError {
		return fieldError(http.StatusUnprocessableEntity, "missing_field", field, field+" is required")
	}
	invalid := func(field, msg string) *apiError {
		return fieldError(http.StatusUnprocessableEntity, "invalid", field, msg)
	}
	if a := ch.WhatsApp; a != nil {
		const p = "channels.whatsapp."
		switch {
		case strings.TrimSpace(a.PhoneNumberID) == "":
			return missing(p + "phone_number_id")
		case !digitsOnly(a.PhoneNumberID):
			return invalid(p+"phone_number_id", p+"phone_number_id is the number's id in the Cloud API (digits), not the phone number")
		case strings.TrimSpace(a.AccessToken) == "":
			return missing(p + "access_token")
		case strings.TrimSpace(a.AppSecret) == "":
			return missing(p + "app_secret")
		}
		if aerr := checkAPIBase(a.APIBase, p+"api_base"); aerr != nil {
			return aerr
		}
	}
	if a := ch.Telegram; a != nil {
		const p = "channels.telegram."
		switch {
		case strings.TrimSpace(a.BotToken) == "":
			return missing(p + "bot_token")
		case !telegramTokenPattern.MatchString(a.BotToken):
			return invalid(p+"bot_token", p+"bot_token must be a token from @BotFather (<bot id>:<secret>)")
		case a.WebhookSecret != "" && !telegramSecretPattern.MatchString(a.WebhookSecret):
			return invalid(p+"webhook_secret", p+"webhook_secret must be 1 to 256 characters of A-Z, a-z, 0-9, _ and - (what Telegram accepts)")
		}
		if aerr := checkAPIBase(a.APIBase, p+"api_base"); aerr != nil {
			return aerr
		}
	}
	if a := ch.RCS; a != nil {
		if aerr := checkAPIBase(a.APIBase, "channels.rcs.api_base"); aerr != nil {
			return aerr
		}
	}
	return nil
}

func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// checkAPIBase accepts an empty base (the provider's) or an http(s) URL.
func checkAPIBase(base, field string) *apiError {
	if base == "" {
		return nil
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fieldError(http.StatusUnprocessableEntity, "invalid", field, field+" must be an http or https URL")
	}
	return nil
}
