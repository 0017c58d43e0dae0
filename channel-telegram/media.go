package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/textproto"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/media"
	"github.com/flowgate/flowgate/shared/store"
)

// Uploaded files ("media:<id>" in a flow) reach Telegram as a multipart
// upload the first time a bot sends them (sendPhoto / sendDocument /
// sendVideo with the file as a form part); the file_id of the answer is
// stored per Telegram bot and sent instead of the file from then on.
// Telegram's file_ids do not expire.

// MediaFiles is the part of the store the sender reads uploaded files from
// and keeps Telegram's file_ids in.
type MediaFiles interface {
	GetMedia(ctx context.Context, botID, id string) (store.Media, error)
	GetMediaUpload(ctx context.Context, botID, mediaID, channel, account string) (store.MediaUpload, error)
	PutMediaUpload(ctx context.Context, u store.MediaUpload) error
}

// WithMedia lets the sender send uploaded files ("media:<id>"). Without it
// such messages fail permanently.
func WithMedia(files MediaFiles) Option {
	return func(o *options) error {
		if files == nil {
			return errors.New("telegram: nil media store")
		}
		o.media = files
		return nil
	}
}

// CodeMediaNotFound: the flow names an uploaded file that no longer exists,
// or of another kind than the message.
const CodeMediaNotFound = "media_not_found"

// attachField is the placeholder value of the media field of a request
// whose file goes in a multipart part.
const attachField = "attach://file"

// resolveMedia returns, for a message naming an uploaded file, the stored
// file_id to send (ref) or the file to upload.
func (s *Sender) resolveMedia(ctx context.Context, bot store.Bot, tgBotID string, c events.Content) (ref string, upload *store.Media, err error) {
	if c.Type != events.ContentImage && c.Type != events.ContentDocument && c.Type != events.ContentVideo {
		return "", nil, nil
	}
	id, ok := media.ParseRef(c.MediaURL)
	if !ok {
		return "", nil, nil
	}
	if s.opts.media == nil {
		return "", nil, &channel.PermanentError{Code: CodeMediaNotFound, Reason: "this worker has no media store: cannot send " + c.MediaURL}
	}
	up, err := s.opts.media.GetMediaUpload(ctx, bot.ID, id, events.ChannelTelegram, tgBotID)
	if err == nil {
		return up.ProviderID, nil, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", nil, fmt.Errorf("telegram: file_id of %s: %w", c.MediaURL, err)
	}
	f, err := s.opts.media.GetMedia(ctx, bot.ID, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return "", nil, &channel.PermanentError{Code: CodeMediaNotFound, Reason: "uploaded file " + c.MediaURL + " does not exist (deleted?)"}
	}
	if err != nil {
		return "", nil, fmt.Errorf("telegram: read %s: %w", c.MediaURL, err)
	}
	if k := media.Types[f.ContentType]; string(k) != c.Type {
		return "", nil, &channel.PermanentError{Code: CodeMediaNotFound, Reason: fmt.Sprintf("%s is %s, not a %s", c.MediaURL, f.ContentType, c.Type)}
	}
	return attachField, &f, nil
}

// mediaFieldOf is the Bot API parameter that carries a method's file.
var mediaFieldOf = map[string]string{"sendPhoto": "photo", "sendDocument": "document", "sendVideo": "video"}

// callUpload performs a media method as multipart/form-data: the request's
// fields as form values (objects as JSON) and the file as the part of the
// media parameter.
func (s *Sender) callUpload(ctx context.Context, acct store.TelegramAccount, method string, req any, f *store.Media, out any) error {
	botID, err := BotID(acct.BotToken)
	if err != nil {
		return &channel.PermanentError{Code: "invalid_token", Reason: err.Error()}
	}
	raw, err := json.Marshal(req)
	var fields map[string]json.RawMessage
	if err == nil {
		err = json.Unmarshal(raw, &fields)
	}
	field := mediaFieldOf[method]
	if err != nil || field == "" {
		return &channel.PermanentError{Code: "invalid_message", Reason: "cannot encode the upload of " + method}
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		if k == field {
			continue
		}
		var str string
		if json.Unmarshal(v, &str) != nil {
			str = string(v) // numbers, booleans and objects as JSON text
		}
		if err := mw.WriteField(k, str); err != nil {
			return &channel.PermanentError{Code: "invalid_message", Reason: "cannot encode the upload", Err: err}
		}
	}
	name := f.Filename
	if name == "" {
		name = f.ID
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", multipart.FileContentDisposition(field, name))
	h.Set("Content-Type", f.ContentType)
	pw, err := mw.CreatePart(h)
	if err == nil {
		_, err = pw.Write(f.Data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return &channel.PermanentError{Code: "invalid_message", Reason: "cannot encode the upload", Err: err}
	}
	return s.post(ctx, acct, botID, method, mw.FormDataContentType(), buf.Bytes(), out)
}

// sentFileID is the file_id of the media of a sent message.
func sentFileID(res sentMessage) string {
	switch {
	case len(res.Photo) > 0:
		return res.Photo[len(res.Photo)-1].FileID // the largest size
	case res.Document != nil:
		return res.Document.FileID
	case res.Video != nil:
		return res.Video.FileID
	}
	return ""
}

type fileRef struct {
	FileID string `json:"file_id"`
}

// sentMessage is the part of a sent Message the sender reads.
type sentMessage struct {
	MessageID int64 `json:"message_id"`
	Chat      struct {
		ID int64 `json:"id"`
	} `json:"chat"`
	Photo    []fileRef `json:"photo"`
	Document *fileRef  `json:"document"`
	Video    *fileRef  `json:"video"`
}
