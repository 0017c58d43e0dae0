package ingress

import (
	"errors"
	"math"
	"net/http"

	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// checkAccounts refuses channel accounts a provider could not work with,
// naming the field: a rate out of range, or what the channel's provider
// refuses (its required credentials, their shapes). Bots are checked so
// when they are created and when they are changed.
func checkAccounts(ch store.ChannelAccounts) *apiError {
	bot := store.Bot{Channels: ch}
	for _, p := range provider.All() {
		if a, ok := p.Account(bot); ok && (a.Rate < 0 || a.Rate > maxRatePerSecond || math.IsNaN(a.Rate)) {
			return fieldError(http.StatusUnprocessableEntity, "invalid", "channels."+p.Name+".rate_per_second",
				"rate_per_second must be 0 (the default) to 10000")
		}
	}
	err := provider.CheckAccounts(ch)
	if err == nil {
		return nil
	}
	var fe *provider.FieldError
	if errors.As(err, &fe) {
		return fieldError(http.StatusUnprocessableEntity, fe.Code, fe.Field, fe.Message)
	}
	return newError(http.StatusUnprocessableEntity, "invalid", err.Error())
}
