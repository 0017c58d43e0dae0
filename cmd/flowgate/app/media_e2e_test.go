package app_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flowgate/flowgate/cmd/flowgate/app"
	"github.com/flowgate/flowgate/shared/events"
	rcsdouble "github.com/flowgate/flowgate/shared/providerdouble/rcs"
	tgdouble "github.com/flowgate/flowgate/shared/providerdouble/telegram"
	wadouble "github.com/flowgate/flowgate/shared/providerdouble/whatsapp"
	"github.com/flowgate/flowgate/shared/store"
)

// samplePNG stands for the seed's assets/sample.png.
var samplePNG = append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), make([]byte, 300)...)

// uploadSample uploads samplePNG to bot and returns its flow reference.
func uploadSample(t *testing.T, c client, bot, key string) string {
	t.Helper()
	code, b := c.call("POST", "/v1/bots/"+bot+"/media?filename=sample.png", key, string(samplePNG), "Content-Type", "image/png")
	require.Equal(t, http.StatusCreated, code, string(b))
	var resp struct{ Media struct{ Ref string } }
	require.NoError(t, json.Unmarshal(b, &resp))
	require.NotEmpty(t, resp.Media.Ref)
	return resp.Media.Ref
}

// samplesFlow is BuilderBot's SAMPLES flow with image as its local image.
func samplesFlow(image string) string {
	return `{"steps":[
	  {"id":"intro","type":"send","text":"💪 I'll send you a lot of files..."},
	  {"id":"local","type":"send","image":"` + image + `","caption":"Send image from Local"},
	  {"id":"url","type":"send","video":"https://example.com/video.mp4","caption":"Send video from URL"}]}`
}

// TestSeedBuilderBotSamplesWithUploadedImage replays the BuilderBot SAMPLES
// seed over WhatsApp. The seed's local path is refused at flow save; with
// the image uploaded to Flowgate, the worker uploads it to the number's
// Cloud API media endpoint and sends the media id the double issued (the
// double refuses any other id), then reuses it.
func TestSeedBuilderBotSamplesWithUploadedImage(t *testing.T) {
	wa := wadouble.New()
	defer wa.Close()
	d, c := startDev(t, t.TempDir())
	defer func() { require.NoError(t, d.Stop()) }()
	key := waBot(c, wa, "samples")

	// The seed as written: media: join(process.cwd(), 'assets', 'sample.png').
	code, b := c.call("PUT", "/v1/bots/samples/flows/samples", key, samplesFlow("assets/sample.png"))
	require.Equal(t, http.StatusUnprocessableEntity, code, string(b))
	var e struct{ Error struct{ Code, Field string } }
	require.NoError(t, json.Unmarshal(b, &e))
	require.Equal(t, "steps[1].image", e.Error.Field)
	code, _ = c.call("GET", "/v1/bots/samples/flows/samples", key, "")
	require.Equal(t, http.StatusNotFound, code, "nothing stored")

	ref := uploadSample(t, c, "samples", key)
	c.must("PUT", "/v1/bots/samples/flows/samples", key, samplesFlow(ref), 200)
	c.must("PUT", "/v1/bots/samples/events/SAMPLES", key, `{"flow":"samples"}`, 201)

	// The user wrote first: free-form messages may go.
	const number = "+31612345678"
	waWebhook(t, c, "samples", wadouble.NewNotification(waPhoneID).
		AddMessage("Ana", wadouble.TextMessage(number, wadouble.MessageID(), "samples please", time.Now())))
	require.Eventually(t, func() bool {
		_, err := d.Store.GetContactByExternalID(context.Background(), "samples", events.ChannelWhatsApp, number)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)

	// The seed's /v1/samples handler: bot.dispatch('SAMPLES', {from: number, name}).
	c.must("POST", "/v1/bots/samples/dispatch/SAMPLES", key, `{"from":"`+number+`","name":"Ana"}`, 202)
	require.Eventually(t, func() bool { return len(waAccepted(wa, number)) == 3 }, 15*time.Second, 20*time.Millisecond)
	got := waAccepted(wa, number)
	require.Equal(t, []string{"text", "image", "video"}, []string{got[0].Type, got[1].Type, got[2].Type})
	ups := wa.Uploads()
	require.Len(t, ups, 1)
	sum := sha256.Sum256(samplePNG)
	require.Equal(t, hex.EncodeToString(sum[:]), ups[0].SHA256, "the uploaded bytes are the file's")
	require.Equal(t, "image/png", ups[0].Type)
	require.Equal(t, waPhoneID, ups[0].PhoneNumberID)
	img := got[1].Map()["image"].(map[string]any)
	require.Equal(t, ups[0].ID, img["id"], "the image is the media id the double issued")
	require.Nil(t, img["link"])
	require.Equal(t, "Send image from Local", img["caption"])
	require.Equal(t, "https://example.com/video.mp4", got[2].Map()["video"].(map[string]any)["link"])

	// Dispatched again: the stored media id is reused, no second upload.
	c.must("POST", "/v1/bots/samples/dispatch/SAMPLES", key, `{"from":"`+number+`","name":"Ana"}`, 202)
	require.Eventually(t, func() bool { return len(waAccepted(wa, number)) == 6 }, 15*time.Second, 20*time.Millisecond)
	require.Len(t, wa.Uploads(), 1)
	require.Equal(t, ups[0].ID, waAccepted(wa, number)[4].Map()["image"].(map[string]any)["id"])
	runs, _, err := d.Store.ListRuns(context.Background(), store.RunFilter{BotID: "samples"})
	require.NoError(t, err)
	require.Len(t, runs, 2)
	for _, r := range runs {
		require.Eventually(t, func() bool { return runStatus(t, d, "samples", r.ID).Status == store.RunCompleted },
			10*time.Second, 20*time.Millisecond)
	}
}

// The same flow on Telegram (multipart upload, then the file_id) and RCS
// (a signed link that the ingress serves) in one dev process.
func TestUploadedImageOnTelegramAndRCS(t *testing.T) {
	tg := tgdouble.Start(t, tgdouble.WithUnlimited())
	const token = "123456:ABC-DEF"
	tg.AddBot(token)
	rcs := rcsdouble.Start(t)
	saKey, err := rcs.NewServiceAccountKey("flowgate-agent")
	require.NoError(t, err)
	d, c := startDevWith(t, app.Config{DataDir: t.TempDir(), PublicURL: "https://flowgate.example.com"})
	defer func() { require.NoError(t, d.Stop()) }()
	key := createBot(c, "multi", map[string]any{
		"telegram": map[string]any{"bot_token": token, "webhook_secret": "s3cret", "api_base": tg.URL},
		"rcs":      map[string]any{"agent_id": "flowgate-agent", "service_account_json": string(saKey), "client_token": "ct", "api_base": rcs.URL},
	})
	ref := uploadSample(t, c, "multi", key)
	c.must("PUT", "/v1/bots/multi/flows/samples", key, samplesFlow(ref), 200)
	c.must("PUT", "/v1/bots/multi/events/SAMPLES", key, `{"flow":"samples"}`, 201)

	for _, chat := range []string{"4242", "5353"} {
		c.must("POST", "/v1/bots/multi/triggers", key, `{"event":"SAMPLES","channel":"telegram","audience":{"users":["`+chat+`"]}}`, 202)
		require.Eventually(t, func() bool { return len(tg.AcceptedTo(chat)) == 3 }, 15*time.Second, 20*time.Millisecond)
	}
	first, second := tg.AcceptedTo("4242")[1], tg.AcceptedTo("5353")[1]
	require.Equal(t, "sendPhoto", first.Method)
	require.NotNil(t, first.Upload, "uploaded once")
	require.Equal(t, len(samplePNG), first.Upload.Size)
	require.Nil(t, second.Upload, "then sent by file_id")
	require.Equal(t, first.FileID, second.Media)

	c.must("POST", "/v1/bots/multi/triggers", key, `{"event":"SAMPLES","channel":"rcs","audience":{"users":["+14155552671"]}}`, 202)
	require.Eventually(t, func() bool { return len(rcs.Accepted()) == 3 }, 15*time.Second, 20*time.Millisecond)
	link := rcs.Accepted()[1].FileURL
	u, err := url.Parse(link)
	require.NoError(t, err)
	require.Equal(t, "flowgate.example.com", u.Host)
	// Google fetches the link from the ingress: it serves the file, without a key.
	resp, err := http.Get(c.base + u.RequestURI())
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, samplePNG, body)
	resp, err = http.Get(c.base + u.Path) // unsigned
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// The link key: FLOWGATE_MEDIA_URL_KEY when set, else one generated into
// the data directory and reused by every process that shares it.
func TestMediaSignerKey(t *testing.T) {
	dir := t.TempDir()
	a, err := app.MediaSigner(app.Config{DataDir: dir, PublicURL: "https://flowgate.example.com"})
	require.NoError(t, err)
	b, err := app.MediaSigner(app.Config{DataDir: dir})
	require.NoError(t, err)
	link, err := a.URL("acme", "med_1")
	require.NoError(t, err)
	u, err := url.Parse(link)
	require.NoError(t, err)
	require.NoError(t, b.Verify("acme", "med_1", u.Query().Get("exp"), u.Query().Get("sig")), "same data directory, same key")

	other, err := app.MediaSigner(app.Config{DataDir: t.TempDir(), MediaURLKey: "configured-key-0123456789"})
	require.NoError(t, err)
	require.Error(t, other.Verify("acme", "med_1", u.Query().Get("exp"), u.Query().Get("sig")))
	same, err := app.MediaSigner(app.Config{DataDir: t.TempDir(), MediaURLKey: "configured-key-0123456789", PublicURL: "https://x.example"})
	require.NoError(t, err)
	link, err = same.URL("acme", "med_1")
	require.NoError(t, err)
	u, _ = url.Parse(link)
	require.NoError(t, other.Verify("acme", "med_1", u.Query().Get("exp"), u.Query().Get("sig")), "the configured key wins")
}
