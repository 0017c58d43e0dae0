package rcsdouble

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Scope is the OAuth2 scope RBM requires.
const Scope = "https://www.googleapis.com/auth/rcsbusinessmessaging"

// NewServiceAccountKey generates an RSA key and returns a Google
// service-account JSON key file for it whose token_uri is this double's
// token endpoint. The key may act for the given agents.
func (s *Server) NewServiceAccountKey(agentIDs ...string) ([]byte, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	var kidRaw [20]byte
	if _, err := rand.Read(kidRaw[:]); err != nil {
		return nil, err
	}
	kid := hex.EncodeToString(kidRaw[:])
	email := fmt.Sprintf("rbm-%s@rbm-double.iam.gserviceaccount.com", kid[:8])
	s.mu.Lock()
	agents := map[string]bool{}
	for _, a := range agentIDs {
		agents[a] = true
	}
	s.keys[kid] = &serviceAccount{email: email, pub: &key.PublicKey, agents: agents}
	s.mu.Unlock()
	return json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  "rbm-double",
		"private_key_id":              kid,
		"private_key":                 string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":                email,
		"client_id":                   "1" + kid[:12],
		"auth_uri":                    "https://accounts.google.com/o/oauth2/auth",
		"token_uri":                   s.TokenURL,
		"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
	}, "", "  ")
}

type jwtClaims struct {
	Iss   string `json:"iss"`
	Scope string `json:"scope"`
	Aud   string `json:"aud"`
	Exp   int64  `json:"exp"`
	Iat   int64  `json:"iat"`
}

// verifyAssertion checks a JWT-bearer assertion (RS256, signed by a
// registered key, audience = token URL, RBM scope, not expired) and returns
// the service account it identifies.
func (s *Server) verifyAssertion(assertion string) (*serviceAccount, error) {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return nil, errors.New("Invalid JWT")
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return nil, errors.New("Invalid JWT header")
	}
	var claims jwtClaims
	if err := decodeSegment(parts[1], &claims); err != nil {
		return nil, errors.New("Invalid JWT payload")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, errors.New("Invalid JWT Signature.")
	}
	if header.Alg != "RS256" {
		return nil, errors.New("Invalid JWT: alg must be RS256")
	}
	s.mu.Lock()
	sa := s.keys[header.Kid]
	s.mu.Unlock()
	if sa == nil {
		return nil, errors.New("Invalid JWT Signature.")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(sa.pub, crypto.SHA256, sum[:], sig); err != nil {
		return nil, errors.New("Invalid JWT Signature.")
	}
	now := time.Now().Unix()
	switch {
	case claims.Iss != sa.email:
		return nil, errors.New("Invalid JWT: iss does not match the key")
	case claims.Aud != s.TokenURL:
		return nil, errors.New("Invalid JWT: Failed audience check.")
	case claims.Exp < now || claims.Iat > now+300:
		return nil, errors.New("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.")
	}
	scopeOK := false
	for _, sc := range strings.Fields(claims.Scope) {
		scopeOK = scopeOK || sc == Scope
	}
	if !scopeOK {
		return nil, errors.New("invalid_scope")
	}
	return sa, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
