package mongo_test

import (
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store/mongo"
	"github.com/flowgate/flowgate/shared/store/storetest"
)

// TestSubscriptionsFerretDB runs the subscription checks against FerretDB
// embedded in the test process.
func TestSubscriptionsFerretDB(t *testing.T) {
	storetest.RunSubscriptions(t, mongo.OpenTest(t, mongo.SharedFerret(t)), time.Millisecond)
}
