package ingress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/media"
	"github.com/flowgate/flowgate/shared/store"
)

// Media uploads: a bot's files (images, videos, documents) stored in the
// store and referenced from flows as "media:<id>". The channel workers hand
// them to each provider the way it wants (WhatsApp media upload, Telegram
// multipart then file_id, a signed URL for RCS that GET /media/{bot}/{id}
// serves).

// DefaultMaxMediaBytes is the upload limit unless Config.MaxMediaBytes
// says otherwise: WhatsApp's limit for images (5 MB), the narrowest
// provider limit of the accepted types.
const DefaultMaxMediaBytes = 5 << 20

func (s *server) mediaRoutes(r *gin.Engine, bot *gin.RouterGroup) {
	bot.POST("/media", s.uploadMedia)
	bot.GET("/media", s.listMedia)
	bot.GET("/media/:id", s.getMedia)
	bot.GET("/media/:id/content", s.getMediaContent)
	bot.DELETE("/media/:id", s.deleteMedia)
	r.GET("/media/:bot/:id", s.serveSignedMedia)
}

// mediaView is a file as the API shows it.
type mediaView struct {
	ID          string    `json:"id"`
	Ref         string    `json:"ref"`
	ContentType string    `json:"content_type"`
	Filename    string    `json:"filename,omitempty"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	CreatedAt   time.Time `json:"created_at"`
}

func viewMedia(m store.Media) mediaView {
	return mediaView{ID: m.ID, Ref: media.Ref(m.ID), ContentType: m.ContentType, Filename: m.Filename,
		Size: m.Size, SHA256: m.SHA256, CreatedAt: m.CreatedAt}
}

// mediaIDPrefix starts every upload id.
const mediaIDPrefix = "med_"

// uploadMedia stores a file: multipart/form-data with a "file" part (its
// filename and Content-Type are used), or the raw file as the body with its
// Content-Type (and ?filename=). With an Idempotency-Key, a repeated upload
// of the same bytes answers the first file (200); other bytes under the
// same key are a 409.
func (s *server) uploadMedia(c *gin.Context) {
	limit := s.cfg.MaxMediaBytes
	if c.Request.ContentLength > limit+64<<10 {
		abort(c, mediaTooLarge(limit))
		return
	}
	ct, filename, data, aerr := readUpload(c, limit)
	if aerr != nil {
		abort(c, aerr)
		return
	}
	if ct == "" || ct == "application/octet-stream" {
		// curl -F file=@x without a type, or a generic upload: the content says.
		ct = sniff(data)
	}
	if _, ok := media.Types[ct]; !ok {
		abort(c, fieldError(http.StatusUnsupportedMediaType, "unsupported_media_type", "content_type",
			fmt.Sprintf("files of type %q cannot be uploaded; accepted: %s", ct, media.TypeNames)))
		return
	}
	if len(data) == 0 {
		abort(c, fieldError(http.StatusUnprocessableEntity, "required", "file", "the file is empty"))
		return
	}
	if sniffed := sniff(data); sniffed != ct {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "content_type",
			fmt.Sprintf("the file's content is %s, not the declared %s", sniffed, ct)))
		return
	}
	if len(filename) > 256 || strings.ContainsAny(filename, "\x00/\\") {
		abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "filename", "a file name has at most 256 bytes and no path separators"))
		return
	}
	bot := botOf(c)
	sum := sha256.Sum256(data)
	m := store.Media{ID: mediaIDPrefix + randomHex(12), BotID: bot.ID, ContentType: ct, Filename: filename,
		Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:]), Data: data, CreatedAt: time.Now().UTC()}
	key := c.GetHeader("Idempotency-Key")
	if key != "" {
		k := sha256.Sum256([]byte(bot.ID + "\x00" + key))
		m.ID = mediaIDPrefix + hex.EncodeToString(k[:12])
	}
	ctx := c.Request.Context()
	err := s.store.CreateMedia(ctx, m)
	if errors.Is(err, store.ErrConflict) && key != "" {
		old, gerr := s.store.GetMedia(ctx, bot.ID, m.ID)
		if gerr != nil {
			abort(c, storeError(gerr, "media"))
			return
		}
		if old.SHA256 != m.SHA256 {
			abort(c, newError(http.StatusConflict, "conflict", "this Idempotency-Key was used for another file"))
			return
		}
		c.JSON(http.StatusOK, gin.H{"media": viewMedia(old)})
		return
	}
	if err != nil {
		abort(c, storeError(err, "media"))
		return
	}
	c.JSON(http.StatusCreated, gin.H{"media": viewMedia(m)})
}

func mediaTooLarge(limit int64) *apiError {
	return fieldError(http.StatusRequestEntityTooLarge, "file_too_large", "file", "the file exceeds "+humanBytes(limit))
}

// readUpload reads the file of an upload request, at most limit bytes.
func readUpload(c *gin.Context, limit int64) (contentType, filename string, data []byte, _ *apiError) {
	mt, params, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil {
		return "", "", nil, newError(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Type must be multipart/form-data or the file's type ("+media.TypeNames+")")
	}
	body := http.MaxBytesReader(c.Writer, c.Request.Body, limit+64<<10)
	readAll := func(r io.Reader) ([]byte, *apiError) {
		b, err := io.ReadAll(io.LimitReader(r, limit+1))
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe), int64(len(b)) > limit:
			return nil, mediaTooLarge(limit)
		case err != nil:
			return nil, newError(http.StatusBadRequest, "bad_request", "could not read the request body")
		}
		return b, nil
	}
	if mt != "multipart/form-data" {
		data, aerr := readAll(body)
		return mt, c.Query("filename"), data, aerr
	}
	if params["boundary"] == "" {
		return "", "", nil, newError(http.StatusBadRequest, "bad_request", "multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return "", "", nil, fieldError(http.StatusUnprocessableEntity, "required", "file", `the multipart body has no "file" part`)
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return "", "", nil, mediaTooLarge(limit)
		}
		if err != nil {
			return "", "", nil, newError(http.StatusBadRequest, "bad_request", "malformed multipart body: "+err.Error())
		}
		if p.FormName() != "file" {
			continue
		}
		ct, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			ct = ""
		}
		data, aerr := readAll(p)
		// FileName keeps only the last element of the name the client sent.
		return ct, p.FileName(), data, aerr
	}
}

// sniff names a file's type from its first bytes (the types Flowgate
// accepts; anything else by net/http's sniffer).
func sniff(b []byte) string {
	if len(b) >= 12 && string(b[4:8]) == "ftyp" {
		return "video/mp4" // ISO base media: MP4 and its brands
	}
	t, _, _ := strings.Cut(http.DetectContentType(b), ";")
	return t
}

func (s *server) listMedia(c *gin.Context) {
	list, err := s.store.ListMedia(c.Request.Context(), botOf(c).ID)
	if err != nil {
		abort(c, storeError(err, "media"))
		return
	}
	out := make([]mediaView, 0, len(list))
	for _, m := range list {
		out = append(out, viewMedia(m))
	}
	c.JSON(http.StatusOK, gin.H{"media": out})
}

func (s *server) loadMedia(c *gin.Context) (store.Media, bool) {
	m, err := s.store.GetMedia(c.Request.Context(), botOf(c).ID, c.Param("id"))
	if errors.Is(err, store.ErrInvalid) {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "media"))
		return m, false
	}
	return m, true
}

func (s *server) getMedia(c *gin.Context) {
	if m, ok := s.loadMedia(c); ok {
		c.JSON(http.StatusOK, gin.H{"media": viewMedia(m)})
	}
}

func (s *server) getMediaContent(c *gin.Context) {
	if m, ok := s.loadMedia(c); ok {
		writeMedia(c, m)
	}
}

func writeMedia(c *gin.Context, m store.Media) {
	c.Header("Content-Length", strconv.Itoa(len(m.Data)))
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("ETag", `"`+m.SHA256+`"`)
	if m.Filename != "" {
		c.Header("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": m.Filename}))
	}
	c.Data(http.StatusOK, m.ContentType, m.Data)
}

func (s *server) deleteMedia(c *gin.Context) {
	err := s.store.DeleteMedia(c.Request.Context(), botOf(c).ID, c.Param("id"))
	if errors.Is(err, store.ErrInvalid) {
		err = store.ErrNotFound
	}
	if err != nil {
		abort(c, storeError(err, "media"))
		return
	}
	c.Status(http.StatusNoContent)
}

// serveSignedMedia serves a file to whoever holds a valid signed link
// (RCS fetches media by URL and cannot send an API key). Every refusal is
// the same 404, so a link reveals nothing about other files.
func (s *server) serveSignedMedia(c *gin.Context) {
	notFound := newError(http.StatusNotFound, "not_found", "no such file, or the link is invalid or expired")
	if s.cfg.MediaSigner == nil {
		abort(c, notFound)
		return
	}
	bot, id := c.Param("bot"), c.Param("id")
	if err := s.cfg.MediaSigner.Verify(bot, id, c.Query("exp"), c.Query("sig")); err != nil {
		abort(c, notFound)
		return
	}
	m, err := s.store.GetMedia(c.Request.Context(), bot, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		abort(c, notFound)
		return
	}
	if err != nil {
		abort(c, storeError(err, "media"))
		return
	}
	c.Header("Cache-Control", "private, max-age=3600")
	writeMedia(c, m)
}

// checkFlowMedia refuses a flow whose messages name an uploaded file the
// bot does not have, or a file of another kind (a PDF as an image). The
// flow's own validation already refused values that are neither URLs nor
// references.
func (s *server) checkFlowMedia(ctx context.Context, botID string, canonical []byte) *apiError {
	var def struct {
		Steps []struct {
			Image    string `json:"image"`
			Video    string `json:"video"`
			Document string `json:"document"`
		} `json:"steps"`
	}
	if err := json.NewDecoder(bytes.NewReader(canonical)).Decode(&def); err != nil {
		return newError(http.StatusInternalServerError, "internal", "cannot read the compiled flow")
	}
	for i, st := range def.Steps {
		for _, f := range []struct {
			kind  media.Kind
			value string
		}{{media.KindImage, st.Image}, {media.KindVideo, st.Video}, {media.KindDocument, st.Document}} {
			id, ok := media.ParseRef(f.value)
			if !ok || strings.Contains(f.value, "{{") {
				continue
			}
			field := fmt.Sprintf("steps[%d].%s", i, f.kind)
			m, err := s.store.GetMedia(ctx, botID, id)
			if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
				return fieldError(http.StatusUnprocessableEntity, "unknown_media", field,
					fmt.Sprintf("%s is not a file of this bot; upload it with POST /v1/bots/%s/media", f.value, botID))
			}
			if err != nil {
				return storeError(err, "media")
			}
			if k := media.Types[m.ContentType]; k != f.kind {
				return fieldError(http.StatusUnprocessableEntity, "invalid", field,
					fmt.Sprintf("%s is %s, not a %s", f.value, m.ContentType, f.kind))
			}
		}
	}
	return nil
}
