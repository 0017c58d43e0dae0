package rcs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/store"
)

// tokens caches one token source per agent. A source built by
// jwt.Config.TokenSource is an oauth2.ReuseTokenSource: it hands out the
// cached access token until shortly before expiry, then fetches a new one
// (JWT-bearer grant signed with the service-account key), with concurrent
// callers waiting for the single refresh.
type tokens struct {
	client   *http.Client
	tokenURL string

	mu      sync.Mutex
	byAgent map[string]*agentTokens
}

type agentTokens struct {
	keyHash [sha256.Size]byte
	src     oauth2.TokenSource
}

func authError(reason string, err error) error {
	return &channel.PermanentError{Code: "auth", Reason: reason, Err: err}
}

// source returns the agent's cached token source, building it on first use
// or when the key changed (rotation).
func (t *tokens) source(acct store.RCSAccount) (oauth2.TokenSource, error) {
	h := sha256.Sum256([]byte(acct.ServiceAccountJSON))
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byAgent[acct.AgentID]; ok && e.keyHash == h {
		return e.src, nil
	}
	cfg, err := google.JWTConfigFromJSON([]byte(acct.ServiceAccountJSON), Scope)
	if err != nil {
		// Do not wrap: the parser's message could quote the key.
		return nil, authError("agent "+acct.AgentID+": service account key is not a service-account JSON key", nil)
	}
	if err := checkPrivateKey(cfg.PrivateKey); err != nil {
		return nil, authError("agent "+acct.AgentID+": "+err.Error(), nil)
	}
	if t.tokenURL != "" {
		cfg.TokenURL = t.tokenURL
	}
	// The context only carries the HTTP client; the client's timeout bounds
	// each token request, since a refresh outlives any one send.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, t.client)
	src := cfg.TokenSource(ctx)
	t.byAgent[acct.AgentID] = &agentTokens{keyHash: h, src: src}
	return src, nil
}

// forget drops the agent's cached token (after a 401) so that the next call
// fetches a fresh one.
func (t *tokens) forget(acct store.RCSAccount, src oauth2.TokenSource) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byAgent[acct.AgentID]; ok && e.src == src {
		delete(t.byAgent, acct.AgentID)
	}
}

// token returns a valid access token for the agent.
func (t *tokens) token(acct store.RCSAccount) (string, oauth2.TokenSource, error) {
	src, err := t.source(acct)
	if err != nil {
		return "", nil, err
	}
	tok, err := src.Token()
	if err != nil {
		return "", nil, classifyTokenError(acct.AgentID, err)
	}
	return tok.AccessToken, src, nil
}

// classifyTokenError: the token endpoint refusing the grant (bad key,
// disabled account) will not heal by itself; anything else may.
func classifyTokenError(agent string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		switch code := re.Response.StatusCode; {
		case code == http.StatusTooManyRequests || code >= 500:
			return fmt.Errorf("rcs: token for agent %s: HTTP %d", agent, code)
		default:
			reason := fmt.Sprintf("token endpoint refused agent %s: HTTP %d %s", agent, code, re.ErrorCode)
			return authError(reason, nil)
		}
	}
	return fmt.Errorf("rcs: token for agent %s: %w", agent, err)
}

// checkPrivateKey fails early on a key the JWT signer could not use; the
// oauth2 library would only notice at every token fetch, as a plain
// (retryable) error.
func checkPrivateKey(pemKey []byte) error {
	block, _ := pem.Decode(pemKey)
	if block == nil {
		return errors.New("service account private_key is not PEM")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		return nil
	}
	if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return nil
	}
	return errors.New("service account private_key is not an RSA key")
}
