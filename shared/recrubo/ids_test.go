package recrubo

import (
	"testing"

	"github.com/google/uuid"

	"github.com/flowgate/flowgate/shared/store"
)

func TestThreadIDsAreUUIDsThatNameTheirContact(t *testing.T) {
	for range 1000 {
		cid := store.NewContactID()
		tid := ThreadID(cid)
		u, err := uuid.Parse(tid)
		if err != nil {
			t.Fatalf("thread id %q of contact %q is not a UUID: %v", tid, cid, err)
		}
		if u.Version() != 8 || u.Variant() != uuid.RFC4122 || u.String() != tid {
			t.Fatalf("thread id %q: version %d variant %v", tid, u.Version(), u.Variant())
		}
		if got := ContactID(tid); got != cid {
			t.Fatalf("ContactID(ThreadID(%q)) = %q", cid, got)
		}
	}
	// Ids of another shape pass through both ways; random UUIDs (a
	// caller's own) are not mistaken for thread ids.
	for _, id := range []string{"c1", "5c517b7773515eaha3078e2f", "ABCDEF0123456789ABCDEF01", "", uuid.NewString(), "7125853f-26ac-4a65-9044-cab092806249"} {
		if ThreadID(id) != id && len(id) != 24 {
			t.Errorf("ThreadID(%q) = %q", id, ThreadID(id))
		}
		if ContactID(id) != id {
			t.Errorf("ContactID(%q) = %q", id, ContactID(id))
		}
	}
	if ThreadID("5c517b7773515eaha3078e2f") != "5c517b7773515eaha3078e2f" {
		t.Error("a 24-character id that is not hex is not encoded")
	}
}

func TestStatus(t *testing.T) {
	for in, want := range map[string]string{
		store.RunCreated: "created", store.RunQueued: "queued", store.RunRunning: "running", store.RunWaiting: "running",
		store.RunCompleted: "completed", store.RunFailed: "failed", store.RunCancelled: "cancelled", store.RunExpired: "expired",
	} {
		if got := Status(in); got != want {
			t.Errorf("Status(%q) = %q, want %q", in, got, want)
		}
	}
}
