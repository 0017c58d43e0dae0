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
		var err error
		if key, err = dataDirMediaKey(cfg.DataDir); err != nil {
			// Not fatal: uploads still work on WhatsApp and Telegram; the
			// ingress serves no links and RCS refuses uploaded files.
			cfg.Logger.Warn("no media URL key: set FLOWGATE_MEDIA_URL_KEY for RCS to receive uploaded files", "err", err)
			return nil, nil
		}
	}
	return media.NewSigner(cfg.PublicURL, []byte(key), 0, nil)
}

// dataDirMediaKey reads the key kept in the data directory, creating it
// the first time.
func dataDirMediaKey(dir string) (string, error) {
	path := filepath.Join(dir, mediaKeyFile)
	for range 2 {
		b, err := os.ReadFile(path)
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
		key := ingress.NewAPIKey()[3:] // 160 random bits, hex
		// O_EXCL: of two processes starting together, the second reads the first's key.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = f.WriteString(key + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return key, err
	}
	return "", fmt.Errorf("cannot read %s", path)
}
