package whatsappdouble_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/flowgate/flowgate/shared/testclock"

	"github.com/stretchr/testify/require"

	whatsappdouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
)

// upload posts a Cloud API media upload; fields maps form fields, file is
// the file part (nil: none).
func upload(t *testing.T, d *whatsappdouble.Server, phone string, fields map[string]string, file []byte) answer {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		require.NoError(t, mw.WriteField(k, v))
	}
	if file != nil {
		fw, err := mw.CreateFormFile("file", "sample.png")
		require.NoError(t, err)
		_, err = fw.Write(file)
		require.NoError(t, err)
	}
	require.NoError(t, mw.Close())
	req, err := http.NewRequest(http.MethodPost, d.URL()+"/v21.0/"+phone+"/media", &buf)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+whatsappdouble.DefaultToken)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := d.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{status: resp.StatusCode, raw: string(raw)}
	require.NoError(t, json.Unmarshal(raw, &a.body), "answer %q", raw)
	return a
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestMediaUploadAndUse(t *testing.T) {
	clk := &clock{t: testclock.Date(2026, 5, 1, 9, 0, 0)}
	d := whatsappdouble.New(whatsappdouble.WithClock(clk.now))
	defer d.Close()
	png := []byte("\x89PNG\r\n\x1a\nfake image")
	imageMsg := func(id string) string {
		return `{"messaging_product":"whatsapp","recipient_type":"individual","to":"31612345678","type":"image","image":{"id":"` + id + `"}}`
	}

	a := upload(t, d, phoneID, map[string]string{"messaging_product": "whatsapp", "type": "image/png"}, png)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	id, _ := a.body["id"].(string)
	require.NotEmpty(t, id)
	ups := d.Uploads()
	require.Len(t, ups, 1)
	require.Equal(t, phoneID, ups[0].PhoneNumberID)
	require.Equal(t, "image/png", ups[0].Type)
	require.Equal(t, len(png), ups[0].Size)

	require.Equal(t, http.StatusOK, send(t, d, imageMsg(id)).status)
	// An id the double never issued, or issued to another number: refused.
	requireError(t, send(t, d, imageMsg("1479537139650973")), 400, 100)
	requireError(t, send(t, d, imageMsg("assets/sample.png")), 400, 100)
	other := upload(t, d, "999999", map[string]string{"messaging_product": "whatsapp", "type": "image/png"}, png)
	require.Equal(t, http.StatusOK, other.status, other.raw)
	requireError(t, send(t, d, imageMsg(other.body["id"].(string))), 400, 100)
	// 30 days later the id is gone.
	clk.add(whatsappdouble.MediaLifetime - time.Second)
	require.Equal(t, http.StatusOK, send(t, d, imageMsg(id)).status)
	clk.add(time.Second)
	requireError(t, send(t, d, imageMsg(id)), 400, 100)
}

func TestMediaUploadRefusals(t *testing.T) {
	d := whatsappdouble.New()
	defer d.Close()
	png := []byte("\x89PNG\r\n\x1a\n")
	for name, c := range map[string]struct {
		fields map[string]string
		file   []byte
		code   int
	}{
		"no product":  {map[string]string{"type": "image/png"}, png, 131008},
		"no type":     {map[string]string{"messaging_product": "whatsapp"}, png, 131008},
		"no file":     {map[string]string{"messaging_product": "whatsapp", "type": "image/png"}, nil, 131008},
		"bad type":    {map[string]string{"messaging_product": "whatsapp", "type": "image/gif"}, png, 131053},
		"empty file":  {map[string]string{"messaging_product": "whatsapp", "type": "image/png"}, []byte{}, 131053},
		"image > 5MB": {map[string]string{"messaging_product": "whatsapp", "type": "image/png"}, make([]byte, 5<<20+1), 131053},
	} {
		t.Run(name, func(t *testing.T) {
			requireError(t, upload(t, d, phoneID, c.fields, c.file), 400, c.code)
		})
	}
	require.Empty(t, d.Uploads())
	// JSON is not an upload.
	requireError(t, post(t, d, "/v21.0/"+phoneID+"/media", whatsappdouble.DefaultToken, `{}`), 400, 100)
}
