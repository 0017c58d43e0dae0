package mongo_test

import (
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/store/mongo"
	"github.com/flowgate/flowgate/shared/store/storetest"
)

// TestMediaFerretDB runs the media checks against FerretDB embedded in the
// test process.
func TestMediaFerretDB(t *testing.T) {
	storetest.RunMedia(t, mongo.OpenTest(t, mongo.SharedFerret(t)), time.Millisecond)
}

func TestEventInputFerretDB(t *testing.T) {
	storetest.RunEventInput(t, mongo.OpenTest(t, mongo.SharedFerret(t)))
}
