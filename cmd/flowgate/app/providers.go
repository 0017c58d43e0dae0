package app

// The channels this binary serves: each package registers its provider
// (shared/provider) when imported. Adding a channel to Flowgate is adding
// its package here.
import (
	_ "github.com/flowgate/flowgate/channel-rcs"
	_ "github.com/flowgate/flowgate/channel-telegram"
	_ "github.com/flowgate/flowgate/channel-whatsapp"
	_ "github.com/flowgate/flowgate/shared/channel/sandbox"
)
