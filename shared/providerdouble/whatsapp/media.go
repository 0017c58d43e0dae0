package whatsappdouble

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"
)

// The Cloud API media upload: POST /{version}/{phone_number_id}/media,
// multipart/form-data with messaging_product=whatsapp, type=<MIME type> and
// the file part; the answer is {"id":"<media id>"}. A media id is usable
// by the phone number that uploaded it, for 30 days (Meta); after that a
// send naming it is refused. The double keeps every upload and refuses
// sends naming an id it did not issue to that number.

// MediaLifetime is how long an uploaded media id stays usable (Meta: 30 days).
const MediaLifetime = 30 * 24 * time.Hour

// CodeMediaUpload is Meta's "media upload error" (unsupported type, too large).
const CodeMediaUpload = 131053

// mediaLimits are the types the Cloud API accepts and their size limits
// (Meta's supported media table, the types Flowgate uploads).
var mediaLimits = map[string]int64{
	"image/jpeg":      5 << 20,
	"image/png":       5 << 20,
	"video/mp4":       16 << 20,
	"video/3gpp":      16 << 20,
	"application/pdf": 100 << 20,
}

// Upload is one media file the double accepted.
type Upload struct {
	PhoneNumberID string
	ID            string
	Type          string
	Filename      string
	Size          int
	SHA256        string
	At            time.Time
}

func init() {
	errTable[CodeMediaUpload] = errInfo{http.StatusBadRequest, "(#131053) Media upload error", ""}
}

func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request, phone string) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		s.fail(w, http.StatusBadRequest, CodeInvalidParameter, messageOf(CodeInvalidParameter), "the upload must be multipart/form-data")
		return
	}
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		s.fail(w, http.StatusBadRequest, CodeInvalidParameter, messageOf(CodeInvalidParameter), "malformed multipart body: "+err.Error())
		return
	}
	if r.FormValue("messaging_product") != "whatsapp" {
		s.fail(w, http.StatusBadRequest, CodeMissingParameter, messageOf(CodeMissingParameter), "messaging_product must be whatsapp")
		return
	}
	typ := r.FormValue("type")
	f, hdr, err := r.FormFile("file")
	if err != nil {
		s.fail(w, http.StatusBadRequest, CodeMissingParameter, messageOf(CodeMissingParameter), "the file part is required")
		return
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		s.fail(w, http.StatusBadRequest, CodeInvalidParameter, messageOf(CodeInvalidParameter), "cannot read the file part")
		return
	}
	limit, ok := mediaLimits[typ]
	switch {
	case typ == "":
		s.fail(w, http.StatusBadRequest, CodeMissingParameter, messageOf(CodeMissingParameter), "type is required")
		return
	case !ok:
		s.failCode(w, CodeMediaUpload, fmt.Sprintf("type %q is not supported", typ))
		return
	case len(data) == 0:
		s.failCode(w, CodeMediaUpload, "the file is empty")
		return
	case int64(len(data)) > limit:
		s.failCode(w, CodeMediaUpload, fmt.Sprintf("%s files are limited to %d bytes", typ, limit))
		return
	}
	sum := sha256.Sum256(data)
	id := strconv.FormatUint(1_000_000_000_000_000+s.seq.Add(1), 10)
	up := Upload{PhoneNumberID: phone, ID: id, Type: typ, Filename: hdr.Filename, Size: len(data),
		SHA256: hex.EncodeToString(sum[:]), At: s.now()}
	s.mu.Lock()
	s.uploads[id] = up
	s.uploadLog = append(s.uploadLog, up)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"id":%q}`, id)
}

// Uploads returns every upload the double accepted, in order.
func (s *Server) Uploads() []Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Upload(nil), s.uploadLog...)
}

// checkMediaIDs refuses a message naming a media id that phone did not
// upload, or whose 30 days are over.
func (s *Server) checkMediaIDs(phone string, req *sendRequest, now time.Time) *validationError {
	for kind, m := range map[string]*media{"image": req.Image, "document": req.Document, "video": req.Video, "audio": req.Audio, "sticker": req.Sticker} {
		if m == nil || m.ID == "" {
			continue
		}
		s.mu.Lock()
		up, ok := s.uploads[m.ID]
		s.mu.Unlock()
		switch {
		case !ok || up.PhoneNumberID != phone:
			return invalidParam("%s.id %q is not a media id uploaded by this phone number", kind, m.ID)
		case now.Sub(up.At) >= MediaLifetime:
			return invalidParam("%s.id %q expired (uploaded %s, media ids live 30 days)", kind, m.ID, up.At.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
