package orchestrator

// The channels the tests use register their providers (as the flowgate
// binary's cmd/flowgate/app/providers.go does).
import (
	_ "github.com/flowgate/flowgate/channel-rcs"
	_ "github.com/flowgate/flowgate/channel-telegram"
	_ "github.com/flowgate/flowgate/channel-whatsapp"
	_ "github.com/flowgate/flowgate/shared/channel/sandbox"
)
