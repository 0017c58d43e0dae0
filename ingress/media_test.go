package ingress_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/ingress"
	"github.com/flowgate/flowgate/shared/media"
)

// Tiny but real files: each starts with its format's signature.
var (
	pngFile  = append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), bytes.Repeat([]byte{1}, 200)...)
	jpegFile = append([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00"), bytes.Repeat([]byte{2}, 200)...)
	pdfFile  = []byte("%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n")
	mp4File  = append([]byte("\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"), bytes.Repeat([]byte{3}, 100)...)
)

type mediaClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *mediaClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *mediaClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// newMediaEnv is newEnv with a media limit of 4 KiB and a URL signer on
// a test clock.
func newMediaEnv(t *testing.T) (*env, *media.Signer, *mediaClock) {
	t.Helper()
	clk := &mediaClock{t: testclock.Date(2026, 5, 1, 9, 0, 0)}
	signer, err := media.NewSigner("https://flowgate.example.com", []byte("media-url-key-0123456789"), time.Hour, clk.now)
	require.NoError(t, err)
	en := startEnv(t, ingress.Config{MaxMediaBytes: 4 << 10, MediaSigner: signer}, nil)
	en.createBot("acme")
	en.createBot("globex")
	return en, signer, clk
}

// multipartBody builds an upload with one part named field.
func multipartBody(t *testing.T, field, filename, contentType string, data []byte) (string, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="`+field+`"; filename="`+filename+`"`)
	h.Set("Content-Type", contentType)
	pw, err := mw.CreatePart(h)
	require.NoError(t, err)
	_, err = pw.Write(data)
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	return mw.FormDataContentType(), buf.String()
}

type mediaJSON struct {
	ID          string `json:"id"`
	Ref         string `json:"ref"`
	ContentType string `json:"content_type"`
	Filename    string `json:"filename"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
}

func decodeMedia(t *testing.T, b []byte) mediaJSON {
	var v struct{ Media mediaJSON }
	require.NoError(t, json.Unmarshal(b, &v), string(b))
	return v.Media
}

// errorField returns the code and field of an error answer.
func errorField(t *testing.T, b []byte) (string, string) {
	var v struct {
		Error struct{ Code, Field, Message string }
	}
	require.NoError(t, json.Unmarshal(b, &v), string(b))
	require.NotEmpty(t, v.Error.Message)
	return v.Error.Code, v.Error.Field
}

func TestMediaUploadGetListDelete(t *testing.T) {
	e, _, _ := newMediaEnv(t)
	key := e.keys["acme"]
	ct, body := multipartBody(t, "file", "sample.png", "image/png", pngFile)
	m := decodeMedia(t, e.do("POST", "/v1/bots/acme/media", key, ct, body, 201))
	require.True(t, strings.HasPrefix(m.ID, "med_"), m.ID)
	require.Equal(t, "media:"+m.ID, m.Ref)
	require.Equal(t, "image/png", m.ContentType)
	require.Equal(t, "sample.png", m.Filename)
	require.EqualValues(t, len(pngFile), m.Size)
	require.Len(t, m.SHA256, 64)

	// The raw body with its Content-Type is an upload too.
	pdf := decodeMedia(t, e.do("POST", "/v1/bots/acme/media?filename=invoice.pdf", key, "application/pdf", string(pdfFile), 201))
	require.Equal(t, "invoice.pdf", pdf.Filename)
	jpg := decodeMedia(t, e.do("POST", "/v1/bots/acme/media", key, "image/jpeg", string(jpegFile), 201))
	require.Equal(t, "image/jpeg", jpg.ContentType)
	mp4 := decodeMedia(t, e.do("POST", "/v1/bots/acme/media", key, "video/mp4", string(mp4File), 201))
	require.Equal(t, "video/mp4", mp4.ContentType)
	// Without a type (or a generic one) the content decides.
	ct, body = multipartBody(t, "file", "scan.pdf", "application/octet-stream", pdfFile)
	untyped := decodeMedia(t, e.do("POST", "/v1/bots/acme/media", key, ct, body, 201))
	require.Equal(t, "application/pdf", untyped.ContentType)
	e.do("DELETE", "/v1/bots/acme/media/"+untyped.ID, key, "", "", 204)

	require.Equal(t, m, decodeMedia(t, e.do("GET", "/v1/bots/acme/media/"+m.ID, key, "", "", 200)))
	resp := e.request("GET", "/v1/bots/acme/media/"+m.ID+"/content", key, "", "")
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "image/png", resp.Header.Get("Content-Type"))
	require.Equal(t, pngFile, got)

	var list struct{ Media []mediaJSON }
	require.NoError(t, json.Unmarshal(e.do("GET", "/v1/bots/acme/media", key, "", "", 200), &list))
	require.Len(t, list.Media, 4)
	require.Equal(t, m.ID, list.Media[0].ID)

	e.do("DELETE", "/v1/bots/acme/media/"+m.ID, key, "", "", 204)
	e.do("GET", "/v1/bots/acme/media/"+m.ID, key, "", "", 404)
	e.do("DELETE", "/v1/bots/acme/media/"+m.ID, key, "", "", 404)
	require.NoError(t, json.Unmarshal(e.do("GET", "/v1/bots/acme/media", key, "", "", 200), &list))
	require.Len(t, list.Media, 3)
}

func TestMediaUploadIdempotencyKey(t *testing.T) {
	e, _, _ := newMediaEnv(t)
	key := e.keys["acme"]
	first := decodeMedia(t, e.do("POST", "/v1/bots/acme/media", key, "image/png", string(pngFile), 201, "Idempotency-Key", "logo-v1"))
	again := decodeMedia(t, e.do("POST", "/v1/bots/acme/media", key, "image/png", string(pngFile), 200, "Idempotency-Key", "logo-v1"))
	require.Equal(t, first, again, "a retried upload answers the first file")
	b := e.do("POST", "/v1/bots/acme/media", key, "image/jpeg", string(jpegFile), 409, "Idempotency-Key", "logo-v1")
	code, _ := errorField(t, b)
	require.Equal(t, "conflict", code)
	// Keys are per bot.
	decodeMedia(t, e.do("POST", "/v1/bots/globex/media", e.keys["globex"], "image/png", string(pngFile), 201, "Idempotency-Key", "logo-v1"))
	var list struct{ Media []mediaJSON }
	require.NoError(t, json.Unmarshal(e.do("GET", "/v1/bots/acme/media", key, "", "", 200), &list))
	require.Len(t, list.Media, 1)
}

func TestMediaUploadBadInput(t *testing.T) {
	e, _, _ := newMediaEnv(t)
	key := e.keys["acme"]
	big := append(append([]byte(nil), pngFile...), make([]byte, 4<<10)...)
	ctBig, bodyBig := multipartBody(t, "file", "big.png", "image/png", big)
	ctGIF, bodyGIF := multipartBody(t, "file", "a.gif", "image/gif", []byte("GIF89a......"))
	ctNoFile, bodyNoFile := multipartBody(t, "photo", "a.png", "image/png", pngFile)
	cases := []struct {
		name, contentType, body string
		status                  int
		code, field             string
	}{
		{"too large (raw)", "image/png", string(big), 413, "file_too_large", "file"},
		{"too large (multipart)", ctBig, bodyBig, 413, "file_too_large", "file"},
		{"wrong type (raw)", "image/gif", "GIF89a......", 415, "unsupported_media_type", "content_type"},
		{"wrong type (multipart)", ctGIF, bodyGIF, 415, "unsupported_media_type", "content_type"},
		{"declared png, a pdf inside", "image/png", string(pdfFile), 422, "invalid", "content_type"},
		{"html as pdf", "application/pdf", "<html><script>alert(1)</script></html>", 422, "invalid", "content_type"},
		{"html without a type", "application/octet-stream", "<html><script>alert(1)</script></html>", 415, "unsupported_media_type", "content_type"},
		{"empty", "image/png", "", 422, "required", "file"},
		{"no file part", ctNoFile, bodyNoFile, 422, "required", "file"},
		{"no content type", "", string(pngFile), 415, "unsupported_media_type", ""},
		{"json", "application/json", `{"url":"https://e.x/a.png"}`, 415, "unsupported_media_type", "content_type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := e.do("POST", "/v1/bots/acme/media", key, c.contentType, c.body, c.status)
			code, field := errorField(t, b)
			require.Equal(t, c.code, code)
			require.Equal(t, c.field, field)
		})
	}
	var list struct{ Media []mediaJSON }
	require.NoError(t, json.Unmarshal(e.do("GET", "/v1/bots/acme/media", key, "", "", 200), &list))
	require.Empty(t, list.Media, "nothing stored")
}

// Another bot's key can neither read, delete nor reference a file; no key
// is a 401.
func TestMediaAuth(t *testing.T) {
	e, _, _ := newMediaEnv(t)
	m := decodeMedia(t, e.do("POST", "/v1/bots/acme/media", e.keys["acme"], "image/png", string(pngFile), 201))
	other := e.keys["globex"]
	e.do("GET", "/v1/bots/acme/media/"+m.ID, other, "", "", 403)
	e.do("GET", "/v1/bots/acme/media/"+m.ID+"/content", other, "", "", 403)
	e.do("DELETE", "/v1/bots/acme/media/"+m.ID, other, "", "", 403)
	e.do("GET", "/v1/bots/acme/media", other, "", "", 403)
	e.do("POST", "/v1/bots/acme/media", other, "image/png", string(pngFile), 403)
	e.do("GET", "/v1/bots/acme/media/"+m.ID, "", "", "", 401)
	// Through its own bot's routes the file is simply missing.
	e.do("GET", "/v1/bots/globex/media/"+m.ID, other, "", "", 404)
	e.do("DELETE", "/v1/bots/globex/media/"+m.ID, other, "", "", 404)
	b := e.do("PUT", "/v1/bots/globex/flows/steal", other, "application/json",
		`{"steps":[{"id":"s","type":"send","image":"`+m.Ref+`"}]}`, 422)
	code, field := errorField(t, b)
	require.Equal(t, "unknown_media", code)
	require.Equal(t, "steps[0].image", field)
	e.do("GET", "/v1/bots/acme/media/"+m.ID, e.keys["acme"], "", "", 200)
}

// A flow's media is an absolute http(s) URL or a file of the bot, of the
// right kind; anything else is refused at save with the field.
func TestFlowMediaCheckedAtSave(t *testing.T) {
	e, _, _ := newMediaEnv(t)
	key := e.keys["acme"]
	img := decodeMedia(t, e.do("POST", "/v1/bots/acme/media", key, "image/png", string(pngFile), 201))
	pdf := decodeMedia(t, e.do("POST", "/v1/bots/acme/media", key, "application/pdf", string(pdfFile), 201))
	flow := func(step string) string {
		return `{"steps":[{"id":"intro","type":"send","text":"I'll send you a lot of files..."},` + step + `]}`
	}
	bad := []struct{ name, step, code, field string }{
		{"local path (the BuilderBot seed)", `{"id":"local","type":"send","image":"assets/sample.png","caption":"Send image from Local"}`, "invalid_flow", "steps[1].image"},
		{"absolute local path", `{"id":"local","type":"send","image":"/home/bot/assets/sample.png"}`, "invalid_flow", "steps[1].image"},
		{"bare media id", `{"id":"v","type":"send","video":"1479537139650973"}`, "invalid_flow", "steps[1].video"},
		{"unknown upload", `{"id":"local","type":"send","image":"media:med_nope"}`, "unknown_media", "steps[1].image"},
		{"pdf as image", `{"id":"local","type":"send","image":"` + pdf.Ref + `"}`, "invalid", "steps[1].image"},
		{"image as document", `{"id":"d","type":"send","document":"` + img.Ref + `"}`, "invalid", "steps[1].document"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			b := e.do("PUT", "/v1/bots/acme/flows/samples", key, "application/json", flow(c.step), 422)
			code, field := errorField(t, b)
			require.Equal(t, c.code, code)
			require.Equal(t, c.field, field)
		})
	}
	e.do("GET", "/v1/bots/acme/flows/samples", key, "", "", 404) // nothing stored
	e.do("PUT", "/v1/bots/acme/flows/samples", key, "application/json", flow(
		`{"id":"local","type":"send","image":"`+img.Ref+`","caption":"Send image from Local"},`+
			`{"id":"url","type":"send","video":"https://example.com/video.mp4","caption":"Send video from URL"},`+
			`{"id":"doc","type":"send","document":"`+pdf.Ref+`","filename":"invoice.pdf"},`+
			`{"id":"tpl","type":"send","image":"{{ data.picture }}"}`), 200)
}

// GET /media/{bot}/{id} serves a file to a valid, unexpired signed link
// only; every refusal is the same 404.
func TestSignedMediaLinks(t *testing.T) {
	e, signer, clk := newMediaEnv(t)
	m := decodeMedia(t, e.do("POST", "/v1/bots/acme/media", e.keys["acme"], "image/png", string(pngFile), 201))
	link, err := signer.URL("acme", m.ID)
	require.NoError(t, err)
	u, err := url.Parse(link)
	require.NoError(t, err)
	path := u.RequestURI()
	require.True(t, strings.HasPrefix(path, "/media/acme/"+m.ID+"?"), path)

	resp := e.request("GET", path, "", "", "")
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, pngFile, got)
	require.Equal(t, "image/png", resp.Header.Get("Content-Type"))

	q := u.Query()
	tampered := "/media/acme/" + m.ID + "?exp=" + q.Get("exp") + "&sig=" + strings.Repeat("A", len(q.Get("sig")))
	e.do("GET", tampered, "", "", "", 404)
	e.do("GET", "/media/acme/"+m.ID, "", "", "", 404)
	e.do("GET", "/media/globex/"+m.ID+"?"+u.RawQuery, "", "", "", 404)
	other, err := signer.URL("globex", m.ID)
	require.NoError(t, err)
	ou, _ := url.Parse(other)
	e.do("GET", ou.RequestURI(), "", "", "", 404) // signed, but not globex's file
	clk.add(time.Hour)
	e.do("GET", path, "", "", "", 404) // expired
	clk.add(-time.Hour)
	e.do("DELETE", "/v1/bots/acme/media/"+m.ID, e.keys["acme"], "", "", 204)
	e.do("GET", path, "", "", "", 404) // deleted
}
