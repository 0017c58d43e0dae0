package webhooks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/orchestrator/webhooks"
)

// The receiver recipe of docs/webhooks.md, written without this package,
// computes the signature Flowgate sends.
func TestDocumentedRecipeMatchesSign(t *testing.T) {
	body := []byte(`{"specversion":"1.0","id":"run:r1:0:created:wh_1","type":"dev.flowgate.run.created"}`)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	recipe := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	n, _ := strconv.ParseInt(ts, 10, 64)
	require.Equal(t, recipe, webhooks.Sign(secret, n, body))
}

func ExampleSign() {
	body := []byte(`{"specversion":"1.0"}`)
	fmt.Println(webhooks.Sign("whsec-0123456789abcdef", 1767225600, body))
	// Output: sha256=b1b10be6928371b9cf8b9f3d226f966e96649a7d4e4a99b74bddc7b92cb82e97
}
