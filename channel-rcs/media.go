package rcs

import (
	"errors"

	"github.com/flowgate/flowgate/shared/channel"
	"github.com/flowgate/flowgate/shared/events"
	fgmedia "github.com/flowgate/flowgate/shared/media"
)

// Uploaded files ("media:<id>" in a flow) reach RBM by URL, as every RBM
// file does: a signed link to the ingress's GET /media/{bot}/{id}, which
// Google fetches. The link expires (media.DefaultURLLifetime unless the
// signer says otherwise), so it is made at send time.

// CodeMediaNotFound: the message names an uploaded file but the worker
// cannot link to it (no public URL configured).
const CodeMediaNotFound = "media_not_found"

// WithMediaLinks lets the sender send uploaded files, as links signed by
// signer (which must have a public base URL). Without it such messages
// fail permanently.
func WithMediaLinks(signer *fgmedia.Signer) Option {
	return func(o *options) error {
		if signer == nil {
			return errors.New("rcs: nil media signer")
		}
		o.mediaLinks = signer
		return nil
	}
}

// linkMedia replaces a "media:<id>" reference by its signed public URL.
func (s *Sender) linkMedia(botID string, c events.Content) (events.Content, error) {
	if c.Type != events.ContentImage && c.Type != events.ContentDocument && c.Type != events.ContentVideo {
		return c, nil
	}
	id, ok := fgmedia.ParseRef(c.MediaURL)
	if !ok {
		return c, nil
	}
	if s.opts.mediaLinks == nil {
		return c, &channel.PermanentError{Code: CodeMediaNotFound, Reason: "this worker cannot link uploaded files: set FLOWGATE_PUBLIC_URL to send " + c.MediaURL}
	}
	u, err := s.opts.mediaLinks.URL(botID, id)
	if err != nil {
		return c, &channel.PermanentError{Code: CodeMediaNotFound, Reason: err.Error()}
	}
	c.MediaURL = u
	return c, nil
}
