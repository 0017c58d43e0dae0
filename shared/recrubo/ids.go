package recrubo

import (
	"encoding/hex"
	"strings"
)

// Recrubo's ids are UUIDs. A MessageThread is a Flowgate contact, whose id
// is 12 bytes in hex (the shape of a MongoDB ObjectID); ThreadID writes those
// 12 bytes into a version 8 UUID (RFC 9562: custom layout) and ContactID
// reads them back, so no mapping needs storing:
//
//	bytes 0-5   the contact id's bytes 0-5
//	byte  6     0x80: version 8, low nibble 0
//	byte  7     the contact id's byte 6
//	byte  8     0x80: variant 10, low bits 0
//	byte  9     the contact id's byte 7
//	bytes 10-13 the contact id's bytes 8-11
//	bytes 14-15 "fg", marking the layout
const threadMarker = "fg"

// ThreadID is the Recrubo MessageThread id of a contact: a UUID when the
// contact id is 24 hex characters (every id Flowgate generates), else the
// contact id as it is.
func ThreadID(contactID string) string {
	if len(contactID) != 24 {
		return contactID
	}
	oid, err := hex.DecodeString(contactID)
	if err != nil || strings.ToLower(contactID) != contactID {
		return contactID
	}
	var u [16]byte
	copy(u[0:6], oid[0:6])
	u[6], u[7] = 0x80, oid[6]
	u[8], u[9] = 0x80, oid[7]
	copy(u[10:14], oid[8:12])
	copy(u[14:16], threadMarker)
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ContactID is the contact id a Recrubo MessageThread id names: the inverse
// of ThreadID, and any other id (a contact id given as is) unchanged.
func ContactID(threadID string) string {
	s := strings.ToLower(threadID)
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return threadID
	}
	u, err := hex.DecodeString(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36])
	if err != nil || u[6] != 0x80 || u[8] != 0x80 || string(u[14:16]) != threadMarker {
		return threadID
	}
	var oid [12]byte
	copy(oid[0:6], u[0:6])
	oid[6], oid[7] = u[7], u[9]
	copy(oid[8:12], u[10:14])
	return hex.EncodeToString(oid[:])
}

// Status is a run status in Recrubo's FlowRun vocabulary: created,
// queued, running — a run waiting for the contact's reply or a timer is
// still running on its thread — and the final completed, failed, cancelled
// and expired, which the Recrubo documents do not name.
func Status(runStatus string) string {
	if runStatus == "waiting" { // store.RunWaiting
		return "running"
	}
	return runStatus
}
