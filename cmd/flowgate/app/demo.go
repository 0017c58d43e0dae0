package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/store"
)

// demoFlow is the BuilderBot seed's WELCOME_NEW_USER flow.
const demoFlow = `{
  "steps": [
    {"id": "welcome", "type": "send", "text": "Welcome {{ name }}! 🎉"},
    {"id": "plan", "type": "send", "text": "You've signed up for the {{ plan }} plan."},
    {"id": "referral", "type": "send", "text": "Referral code: {{ referralCode }}", "skip_if_empty": true}
  ]
}`

// ensureDemo creates the "demo" bot on first start, with the welcome flow
// bound to the WELCOME_NEW_USER event, and writes its API key to the data
// directory, so a newcomer can dispatch at once.
func ensureDemo(ctx context.Context, cfg Config, st store.Store) error {
	_, err := st.GetBot(ctx, "demo")
	if err == nil {
		return nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	now := time.Now().UTC()
	if err := st.CreateBot(ctx, store.Bot{ID: "demo", Name: "Demo bot", CreatedAt: now, UpdatedAt: now}); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil
		}
		return err
	}
	def, err := CompileFlow([]byte(demoFlow))
	if err != nil {
		return fmt.Errorf("demo flow: %w", err)
	}
	if _, err := st.PutFlow(ctx, store.Flow{BotID: "demo", ID: "welcome", Definition: def, CreatedAt: now}); err != nil {
		return err
	}
	if err := st.PutEvent(ctx, store.Event{BotID: "demo", Name: "WELCOME_NEW_USER", FlowID: "welcome", CreatedAt: now, UpdatedAt: now}); err != nil {
		return err
	}
	key := ingress.NewAPIKey()
	if err := st.CreateAPIKey(ctx, store.APIKey{ID: uuid.NewString(), BotID: "demo", Hash: ingress.HashKey(key), Prefix: key[:7], CreatedAt: now}); err != nil {
		return err
	}
	path := filepath.Join(cfg.DataDir, "demo-bot.key")
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return err
	}
	cfg.Logger.Info("created the demo bot", "bot", "demo", "event", "WELCOME_NEW_USER", "api_key_file", path)
	return nil
}
