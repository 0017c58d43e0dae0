package whatsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"time"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/media"
	"github.com/flowgate/flowgate/shared/store"
)

// Uploaded files ("media:<id>" in a flow) reach WhatsApp as media ids: the
// first send of a file from a phone number uploads it
// (POST /{phone_number_id}/media), the id Meta returns is stored per
// number, and later sends reuse it until it is RenewAfter old; Meta keeps
// an uploaded file 30 days. Two sends racing on a file's first upload may
// both upload it; the last id stored wins and both ids are valid.

// MediaFiles is the part of the store the sender reads uploaded files from
// and keeps Meta's media ids in.
type MediaFiles interface {
	GetMedia(ctx context.Context, botID, id string) (store.Media, error)
	GetMediaUpload(ctx context.Context, botID, mediaID, channel, account string) (store.MediaUpload, error)
	PutMediaUpload(ctx context.Context, u store.MediaUpload) error
}

// DefaultMediaRenewAfter is when a stored media id is replaced by a new
// upload: a day before Meta's 30 days end, so that a send queued or
// retried meanwhile still names a live id.
const DefaultMediaRenewAfter = 29 * 24 * time.Hour

// CodeMediaNotFound: the flow names an uploaded file that no longer exists
// (deleted) or that the sender cannot use (wrong kind, no media store).
const CodeMediaNotFound = "media_not_found"

// WithMedia lets the sender send uploaded files ("media:<id>"). Without it
// such messages fail permanently.
func WithMedia(files MediaFiles) Option {
	return func(o *options) error {
		if files == nil {
			return errors.New("whatsapp: nil media store")
		}
		o.media = files
		return nil
	}
}

// WithMediaRenewAfter sets how old a stored media id may get before the
// file is uploaded again (default DefaultMediaRenewAfter; at most 30 days).
func WithMediaRenewAfter(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 || d > 30*24*time.Hour {
			return fmt.Errorf("whatsapp: media renew-after %s must be within (0, 30 days]", d)
		}
		o.mediaRenewAfter = d
		return nil
	}
}

// mediaID returns the Meta media id to send for c, uploading the file if
// needed; "" when c names no uploaded file.
func (s *Sender) mediaID(ctx context.Context, bot store.Bot, a *store.WhatsAppAccount, base string, c events.Content) (string, error) {
	if c.Type != events.ContentImage && c.Type != events.ContentDocument && c.Type != events.ContentVideo {
		return "", nil
	}
	id, ok := media.ParseRef(c.MediaURL)
	if !ok {
		return "", nil
	}
	if s.opts.media == nil {
		return "", &channel.PermanentError{Code: CodeMediaNotFound, Reason: "this worker has no media store: cannot send " + c.MediaURL}
	}
	now := s.opts.now()
	up, err := s.opts.media.GetMediaUpload(ctx, bot.ID, id, events.ChannelWhatsApp, a.PhoneNumberID)
	switch {
	case err == nil && now.Sub(up.UploadedAt) < s.opts.mediaRenewAfter && !up.UploadedAt.After(now):
		return up.ProviderID, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return "", fmt.Errorf("whatsapp: media id of %s: %w", c.MediaURL, err) // store trouble: retry
	}
	f, err := s.opts.media.GetMedia(ctx, bot.ID, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return "", &channel.PermanentError{Code: CodeMediaNotFound, Reason: "uploaded file " + c.MediaURL + " does not exist (deleted?)"}
	}
	if err != nil {
		return "", fmt.Errorf("whatsapp: read %s: %w", c.MediaURL, err)
	}
	if k := media.Types[f.ContentType]; string(k) != c.Type {
		return "", &channel.PermanentError{Code: CodeMediaNotFound, Reason: fmt.Sprintf("%s is %s, not a %s", c.MediaURL, f.ContentType, c.Type)}
	}
	pid, err := s.upload(ctx, base+"/"+url.PathEscape(a.PhoneNumberID)+"/media", a.AccessToken, f)
	if err != nil {
		return "", err
	}
	// A failed write only costs a second upload next time.
	_ = s.opts.media.PutMediaUpload(ctx, store.MediaUpload{BotID: bot.ID, MediaID: id, Channel: events.ChannelWhatsApp,
		Account: a.PhoneNumberID, ProviderID: pid, UploadedAt: now})
	return pid, nil
}

// upload posts a file to the Cloud API media endpoint and returns its id.
func (s *Sender) upload(ctx context.Context, endpoint, token string, f store.Media) (string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("messaging_product", "whatsapp")
	_ = mw.WriteField("type", f.ContentType)
	name := f.Filename
	if name == "" {
		name = f.ID
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", multipart.FileContentDisposition("file", name))
	h.Set("Content-Type", f.ContentType)
	pw, err := mw.CreatePart(h)
	if err == nil {
		_, err = pw.Write(f.Data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return "", &channel.PermanentError{Code: CodeInvalidMessage, Reason: "cannot encode the upload", Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, &buf)
	if err != nil {
		return "", &channel.PermanentError{Code: CodeNoAccount, Reason: "cannot build the upload request", Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := s.opts.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("whatsapp: media upload: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return "", fmt.Errorf("whatsapp: read upload answer (http %d): %w", resp.StatusCode, err)
	}
	var r struct {
		ID string `json:"id"`
		wResponse
	}
	jsonErr := json.Unmarshal(raw, &r)
	if jsonErr == nil && r.Error != nil {
		return "", s.classify(&APIError{HTTPStatus: resp.StatusCode, Code: r.Error.Code, Subcode: r.Error.ErrorSubcode,
			Type: r.Error.Type, Message: r.Error.Message, Details: r.Error.ErrorData.Details, FBTraceID: r.Error.FBTraceID})
	}
	if resp.StatusCode/100 == 2 {
		if jsonErr != nil || r.ID == "" {
			// Nothing was sent to the user: uploading again is harmless.
			return "", fmt.Errorf("whatsapp: media upload answered http %d without an id", resp.StatusCode)
		}
		return r.ID, nil
	}
	return "", s.classify(&APIError{HTTPStatus: resp.StatusCode, Message: http.StatusText(resp.StatusCode)})
}
