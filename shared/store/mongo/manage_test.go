package mongo_test

import (
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/mongo"
	"github.com/flowgate/flowgate/shared/store/storetest"
)

func TestManagementContract(t *testing.T) {
	uri := mongo.SharedFerret(t)
	storetest.RunManagement(t, func(t *testing.T) store.Store { return mongo.OpenTest(t, uri) },
		storetest.Features{TimePrecision: time.Millisecond})
}
