package sqlite_test

import (
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store"
	"github.com/flowgate/flowgate/shared/store/storetest"
)

func TestManagementContract(t *testing.T) {
	storetest.RunManagement(t, func(t *testing.T) store.Store { return openTemp(t) },
		storetest.Features{TimePrecision: time.Nanosecond + 1, AtomicBulk: true})
}
