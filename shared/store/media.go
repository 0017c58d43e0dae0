package store

import (
	"fmt"
	"time"
)

// MaxMediaBytes is the largest media file an adapter stores. It stays well
// under MongoDB's 16 MiB document limit; the ingress may refuse smaller
// files (its own, configurable limit).
const MaxMediaBytes = 8 << 20

// Media is a file a bot uploaded (POST /v1/bots/{bot}/media), referenced
// from flows as "media:<id>" and handed to each provider the way it wants
// it (WhatsApp media id, Telegram file_id, a signed URL for RCS).
type Media struct {
	ID          string `json:"id"`
	BotID       string `json:"bot_id"`
	ContentType string `json:"content_type"`
	// Filename is the name the uploader gave, if any (documents show it).
	Filename string `json:"filename,omitempty"`
	Size     int64  `json:"size"`
	// SHA256 is the hex digest of Data.
	SHA256 string `json:"sha256"`
	// Data is the file; ListMedia leaves it empty.
	Data      []byte    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

// MediaUpload records that a provider holds a copy of a media file under
// its own id (a WhatsApp media id for one phone number, a Telegram file_id
// for one bot), so that later sends reuse it.
type MediaUpload struct {
	BotID   string
	MediaID string
	Channel string
	// Account is the sender account the provider id belongs to (WhatsApp
	// phone-number id, Telegram bot id).
	Account    string
	ProviderID string
	UploadedAt time.Time
}

// Media checks a file to be created.
func (c Checker) Media(m Media) error {
	err := FirstErr(CheckID("id", m.ID), CheckBotID("bot_id", m.BotID), CheckID("content_type", m.ContentType),
		c.text("filename", m.Filename), c.text("sha256", m.SHA256), CheckTime("created_at", m.CreatedAt))
	switch {
	case err != nil:
		return err
	case len(m.Filename) > 256:
		return &InvalidError{Field: "filename", Reason: "longer than 256 bytes"}
	case len(m.Data) == 0:
		return &InvalidError{Field: "data", Reason: "required"}
	case len(m.Data) > MaxMediaBytes:
		return &InvalidError{Field: "data", Reason: fmt.Sprintf("larger than %d bytes", MaxMediaBytes)}
	case m.Size != int64(len(m.Data)):
		return &InvalidError{Field: "size", Reason: "does not match the data"}
	}
	return nil
}

// MediaUpload checks a provider copy to be stored.
func (c Checker) MediaUpload(u MediaUpload) error {
	return FirstErr(CheckBotID("bot_id", u.BotID), CheckID("media_id", u.MediaID), CheckID("channel", u.Channel),
		CheckID("account", u.Account), CheckID("provider_id", u.ProviderID), CheckTime("uploaded_at", u.UploadedAt))
}

// CheckMediaUploadKey checks the key of GetMediaUpload.
func CheckMediaUploadKey(botID, mediaID, channel, account string) error {
	return FirstErr(CheckBotID("bot_id", botID), CheckID("media_id", mediaID), CheckID("channel", channel),
		CheckID("account", account))
}
