package ingress

import (
	"errors"
	"net/http"

	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// checkAccounts refuses channel accounts a provider could not work with,
// naming the field: each registered provider checks its own.
func checkAccounts(ch store.ChannelAccounts) *apiError {
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
