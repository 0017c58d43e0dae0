package provider

import (
	"fmt"
	"sort"
	"sync"

	"github.com/flowgate/flowgate/shared/store"
)

// The registry: every channel package registers its provider in an init
// function, and the binary's list of channels is the list of packages it
// imports (cmd/flowgate/app/providers.go).
var registry struct {
	sync.RWMutex
	byName map[string]Provider
}

// Register adds p. It fails for an invalid provider or a name taken.
func Register(p Provider) error {
	if err := p.validate(); err != nil {
		return err
	}
	registry.Lock()
	defer registry.Unlock()
	if _, ok := registry.byName[p.Name]; ok {
		return fmt.Errorf("provider %s is registered twice", p.Name)
	}
	if registry.byName == nil {
		registry.byName = map[string]Provider{}
	}
	registry.byName[p.Name] = p
	return nil
}

// MustRegister is Register for a channel package's init function: a
// provider that cannot register is a programming error, as with
// database/sql.Register.
func MustRegister(p Provider) {
	if err := Register(p); err != nil {
		panic(err)
	}
}

// Remove takes a provider out of the registry (tests register their own).
func Remove(name string) {
	registry.Lock()
	delete(registry.byName, name)
	registry.Unlock()
}

// Lookup returns the provider of a channel.
func Lookup(name string) (Provider, bool) {
	registry.RLock()
	defer registry.RUnlock()
	p, ok := registry.byName[name]
	return p, ok
}

// All returns the registered providers, by name.
func All() []Provider {
	registry.RLock()
	out := make([]Provider, 0, len(registry.byName))
	for _, p := range registry.byName {
		out = append(out, p)
	}
	registry.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names returns the registered channel names, sorted.
func Names() []string {
	all := All()
	out := make([]string, len(all))
	for i, p := range all {
		out[i] = p.Name
	}
	return out
}

// Known reports whether a provider serves channel.
func Known(channel string) bool {
	_, ok := Lookup(channel)
	return ok
}

// Configured reports whether bot has an account on channel.
func Configured(bot store.Bot, channel string) bool {
	p, ok := Lookup(channel)
	if !ok {
		return false
	}
	_, ok = p.Account(bot)
	return ok
}

// Rate is the messages per second of bot's account on channel: the bot's
// own rate, else the channel's default; 0 for a channel that is not paced
// (the sandbox) or not registered.
func Rate(bot store.Bot, channel string) float64 {
	p, ok := Lookup(channel)
	if !ok || p.Rate <= 0 {
		return 0
	}
	if a, ok := p.Account(bot); ok && a.Rate > 0 {
		return a.Rate
	}
	return p.Rate
}

// CheckAccounts runs every provider's account checks; the first failure
// is returned (a *FieldError).
func CheckAccounts(ch store.ChannelAccounts) error {
	for _, p := range All() {
		if p.CheckAccounts == nil {
			continue
		}
		if err := p.CheckAccounts(ch); err != nil {
			return err
		}
	}
	return nil
}
