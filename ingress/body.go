package ingress

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/flowgate/flowgate/ingress/compat"
	"github.com/gin-gonic/gin"
)

// readBody reads the request body under the size limit. wantTypes, when
// given, are the accepted media types (415 otherwise).
func (s *server) readBody(c *gin.Context, wantTypes ...string) ([]byte, *apiError) {
	if len(wantTypes) > 0 {
		mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
		ok := false
		for _, w := range wantTypes {
			if err == nil && mt == w {
				ok = true
			}
		}
		if !ok {
			return nil, newError(http.StatusUnsupportedMediaType, "unsupported_media_type",
				"Content-Type must be "+wantTypes[0])
		}
	}
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		return nil, tooLarge(s.cfg.MaxBodyBytes)
	}
	r := http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	var body []byte
	var err error
	if n := c.Request.ContentLength; n > 0 && n <= 64<<10 {
		// The length is declared (net/http reads no more than that): one
		// allocation of the right size instead of io.ReadAll's growth.
		body = make([]byte, n)
		_, err = io.ReadFull(r, body)
	} else {
		body, err = io.ReadAll(r)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(s.cfg.MaxBodyBytes)
		}
		return nil, newError(http.StatusBadRequest, "bad_request", "could not read the request body")
	}
	return body, nil
}

func tooLarge(limit int64) *apiError {
	return newError(http.StatusRequestEntityTooLarge, "body_too_large",
		"request body exceeds "+humanBytes(limit))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// parseBody reads the request body and parses it with parse, one of the
// ingress/compat parsers; ok false means the request was refused (answered
// with the reader's or the parser's error), the handlers' one rejection
// idiom.
func parseBody[T any](s *server, c *gin.Context, parse func(contentType string, body []byte) (T, *compat.Error)) (v T, ok bool) {
	body, aerr := s.readBody(c)
	if aerr != nil {
		abort(c, aerr)
		return v, false
	}
	v, perr := parse(c.GetHeader("Content-Type"), body)
	if perr != nil {
		abort(c, compatError(perr))
		return v, false
	}
	return v, true
}
