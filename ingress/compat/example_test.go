package compat_test

import (
	"fmt"

	"github.com/flowgate/flowgate/ingress/compat"
)

// The ingress hands a parser the request's Content-Type and body and
// answers with the error's status, or publishes the request as a trigger.
func ExampleParseBotmother() {
	req, err := compat.ParseBotmother("application/json", []byte(`{"platform": "wa", "users": ["31612345678"], "data": {"plan": "Premium"}}`))
	if err != nil {
		fmt.Println(err.Status, string(compat.RenderError(err)))
		return
	}
	fmt.Println(req.Channel, req.Audience.Users, req.Data["plan"])

	_, err = compat.ParseBotmother("application/json", []byte(`{"platform": "fb", "users": "everyone"}`))
	fmt.Println(err.Status, err.Code, err.Field)
	// Output:
	// whatsapp [+31612345678] Premium
	// 422 unknown_platform platform
}

// BuilderBot and CloudEvents requests name no channel: the route or the
// bot's default decides, and ResolveChannel normalises the user for it.
func ExampleRequest_ResolveChannel() {
	req, _ := compat.ParseDispatch("application/json", []byte(`{"from": "5491122334455", "name": "Ana"}`))
	if err := req.ResolveChannel("whatsapp"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(req.Audience.Users, req.Name)
	// Output: [+5491122334455] Ana
}
