package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync/atomic"
	"time"
)

// NewContactID returns a fresh internal contact id with the shape of a
// MongoDB ObjectID (and of Botmother's bm_id): 4 bytes of Unix seconds, 5
// random bytes fixed per process, a 3-byte counter; 24 hex characters. The
// ids grow with time, so creating many contacts appends to the stores' id
// indexes instead of writing all over them (measured: random ids made the
// B-trees the bottleneck of a 1M-contact import).
func NewContactID() string { return newObjectID(time.Now()) }

var (
	objectIDProcess = func() [5]byte {
		var b [5]byte
		_, _ = rand.Read(b[:])
		return b
	}()
	objectIDCounter = func() *atomic.Uint32 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c := new(atomic.Uint32)
		c.Store(binary.BigEndian.Uint32(b[:]))
		return c
	}()
)

func newObjectID(now time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[0:4], uint32(now.Unix()))
	copy(b[4:9], objectIDProcess[:])
	c := objectIDCounter.Add(1)
	b[9], b[10], b[11] = byte(c>>16), byte(c>>8), byte(c)
	return hex.EncodeToString(b[:])
}
