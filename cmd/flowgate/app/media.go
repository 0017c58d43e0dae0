package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/media"
)

// mediaKeyFile holds the generated media URL signing key in the data
// directory when FLOWGATE_MEDIA_URL_KEY is not set.
const mediaKeyFile = "media.key"

// MediaSigner returns the signer of uploaded files' public links: the
// ingress verifies them (GET /media/{bot}/{id}) and the RCS worker makes
// them (RBM fetches files by URL). Both must use one key: set
// FLOWGATE_MEDIA_URL_KEY when they run as separate processes without a
// shared data directory; otherwise a key is generated in the data
// directory. PublicURL (FLOWGATE_PUBLIC_URL) is the ingress's public base
// URL; without it links cannot be made and RCS refuses uploaded files.
func MediaSigner(cfg Config) (*media.Signer, error) {
	cfg.setDefaults()
	key := cfg.MediaURLKey
	if key == "" {
		path := filepath.Join(cfg.DataDir, mediaKeyFile)
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			key = strings.TrimSpace(string(b))
		case errors.Is(err, os.ErrNotExist):
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return nil, fmt.Errorf("media URL key: %w", err)
			}
			key = ingress.NewAPIKey()[3:] // 160 random bits, hex
			// O_EXCL: two processes starting together keep the first key.
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if errors.Is(err, os.ErrExist) {
				return MediaSigner(cfg)
			}
			if err != nil {
				return nil, fmt.Errorf("media URL key: %w", err)
			}
			_, err = f.WriteString(key + "\n")
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("media URL key: %w", err)
			}
		default:
			return nil, fmt.Errorf("media URL key: %w", err)
		}
	}
	return media.NewSigner(cfg.PublicURL, []byte(key), 0, nil)
}
