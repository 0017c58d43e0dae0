package ingress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/flowgate/flowgate/shared/events"
	"github.com/flowgate/flowgate/shared/phone"
	"github.com/flowgate/flowgate/shared/provider"
	"github.com/flowgate/flowgate/shared/store"
)

// Contact import limits.
const (
	// ImportBatch is how many contacts one store write upserts.
	ImportBatch = 1000
	// MaxImportLine caps one NDJSON line or CSV record.
	MaxImportLine = 256 << 10
	// MaxImportRejections caps the rejections listed in the summary (all
	// are counted).
	MaxImportRejections = 100
	maxContactName      = 256
	maxAttributeBytes   = 64 << 10
)

// Media types of the contacts import.
const (
	mediaNDJSON = "application/x-ndjson"
	mediaCSV    = "text/csv"
)

// contactRoutes registers the contacts API. The import streams its body:
// it is not bound by MaxBodyBytes, only by MaxImportLine per record.
func (s *server) contactRoutes(bot *gin.RouterGroup) {
	bot.POST("/contacts/import", s.importContacts)
}

// ImportRejection is one input record that was not imported.
type ImportRejection struct {
	// Line is the 1-based line of the record (for CSV, where it starts).
	Line   int    `json:"line"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

// ImportSummary is the answer to an import.
type ImportSummary struct {
	Created int `json:"created"`
	Updated int `json:"updated"`
	// RejectedCount counts every rejected record; Rejected lists the first
	// MaxImportRejections of them, by line.
	RejectedCount int               `json:"rejected_count"`
	Rejected      []ImportRejection `json:"rejected"`
}

func (sum *ImportSummary) reject(r ImportRejection) {
	sum.RejectedCount++
	if len(sum.Rejected) < MaxImportRejections {
		sum.Rejected = append(sum.Rejected, r)
	}
}

// contactRecord is one parsed input record, before validation.
type contactRecord struct {
	line       int
	channel    string
	externalID string
	name       string
	attributes map[string]any
	optedOut   *bool
}

// recordReader yields input records. A record that cannot be parsed comes
// back as a rejection; err is only for a broken stream (or io.EOF).
type recordReader interface {
	next() (contactRecord, *ImportRejection, error)
}

// errBadHeader: a CSV header that lacks the required columns.
type errBadHeader struct{ reason string }

func (e errBadHeader) Error() string { return e.reason }

// importContacts is POST /v1/bots/{bot}/contacts/import: NDJSON or CSV,
// streamed, upserted by channel + external id in batches.
func (s *server) importContacts(c *gin.Context) {
	bot := botOf(c)
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	var rr recordReader
	switch {
	case err != nil:
	case mt == mediaNDJSON || mt == "application/ndjson" || mt == "application/jsonl":
		rr = newNDJSONReader(c.Request.Body)
	case mt == mediaCSV:
		rr, err = newCSVReader(c.Request.Body)
		if err != nil {
			var bh errBadHeader
			if errors.As(err, &bh) {
				abort(c, fieldError(http.StatusUnprocessableEntity, "invalid_header", "header", bh.reason))
				return
			}
			abort(c, newError(http.StatusBadRequest, "bad_request", "could not read the request body"))
			return
		}
	}
	if rr == nil {
		abort(c, newError(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Type must be "+mediaNDJSON+" or "+mediaCSV))
		return
	}
	region := strings.ToUpper(strings.TrimSpace(c.Query("region")))
	if region != "" {
		if _, err := phone.Normalize("+31612345678", region); errors.Is(err, phone.ErrUnknownRegion) {
			abort(c, fieldError(http.StatusUnprocessableEntity, "invalid", "region", "region must be an ISO 3166 country code such as NL"))
			return
		}
	}
	sum, err := importRecords(c.Request.Context(), s.store, bot.ID, rr, region)
	if err != nil {
		var rerr readError
		if errors.As(err, &rerr) {
			e := newError(http.StatusBadRequest, "bad_request", "the request body broke off: "+rerr.Error())
			e.summary = sum
			abort(c, e)
			return
		}
		s.log.WarnContext(c.Request.Context(), "contacts import failed", "bot", bot.ID, "err", err)
		e := *storeError(err, "contact")
		e.summary = sum
		c.Header("Retry-After", "5")
		abort(c, &e)
		return
	}
	c.JSON(http.StatusOK, sum)
}

// readError is a failure of the input stream (not of a record).
type readError struct{ err error }

func (e readError) Error() string { return e.err.Error() }
func (e readError) Unwrap() error { return e.err }

// importBatch is a slice of records on its way through the pipeline.
type importBatch struct {
	records []contactRecord
	ups     []store.ContactUpsert
	rejects []ImportRejection
	done    chan struct{}
}

// contactImporter is the store's bulk upsert.
type contactImporter interface {
	ImportContacts(ctx context.Context, us []store.ContactUpsert) (created, updated int, err error)
}

// importRecords reads every record of rr, validates records in parallel,
// and upserts them in order, ImportBatch at a time. It returns the summary
// of what was done even when it fails half-way.
func importRecords(ctx context.Context, bulk contactImporter, botID string, rr recordReader, region string) (ImportSummary, error) {
	sum := ImportSummary{Rejected: []ImportRejection{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *importBatch)
	ordered := make(chan *importBatch, 8)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				now := time.Now().UTC()
				for _, r := range b.records {
					u, rej := validateRecord(botID, r, region, now)
					if rej != nil {
						b.rejects = append(b.rejects, *rej)
						continue
					}
					b.ups = append(b.ups, u)
				}
				close(b.done)
			}
		}()
	}
	var readErr error
	go func() {
		defer close(ordered)
		defer close(work)
		b := &importBatch{done: make(chan struct{})}
		flush := func() bool {
			select {
			case ordered <- b:
			case <-ctx.Done():
				return false
			}
			select {
			case work <- b:
			case <-ctx.Done():
				return false
			}
			b = &importBatch{done: make(chan struct{})}
			return true
		}
		for {
			rec, rej, err := rr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = readError{err}
				}
				break
			}
			if rej != nil {
				b.rejects = append(b.rejects, *rej)
			} else {
				b.records = append(b.records, rec)
			}
			if len(b.records)+len(b.rejects) >= ImportBatch && !flush() {
				return
			}
		}
		flush()
	}()
	var err error
	for b := range ordered {
		<-b.done
		if err != nil {
			continue
		}
		for _, r := range b.rejects {
			sum.reject(r)
		}
		if len(b.ups) == 0 {
			continue
		}
		created, updated, ierr := bulk.ImportContacts(ctx, b.ups)
		if ierr != nil {
			err = ierr
			cancel()
			continue
		}
		sum.Created += created
		sum.Updated += updated
	}
	wg.Wait()
	if err != nil {
		return sum, err
	}
	return sum, readErr
}

// validateRecord checks and normalises one record into an upsert.
func validateRecord(botID string, r contactRecord, region string, now time.Time) (store.ContactUpsert, *ImportRejection) {
	fail := func(field, reason string) (store.ContactUpsert, *ImportRejection) {
		return store.ContactUpsert{}, &ImportRejection{Line: r.line, Field: field, Reason: reason}
	}
	ch := strings.ToLower(strings.TrimSpace(r.channel))
	switch {
	case ch == "":
		return fail("channel", "required")
	case !provider.Known(ch):
		return fail("channel", fmt.Sprintf("%q is not one of whatsapp, telegram, rcs, sandbox", truncateText(r.channel, 40)))
	}
	id := strings.TrimSpace(r.externalID)
	if id == "" {
		return fail("external_id", "required")
	}
	switch ch {
	case events.ChannelWhatsApp, events.ChannelRCS:
		e164, err := phone.Normalize(id, region)
		if err != nil {
			var pe *phone.Error
			if errors.As(err, &pe) {
				return fail("external_id", fmt.Sprintf("%q is not a phone number: %v", truncateText(id, 40), pe.Reason))
			}
			return fail("external_id", err.Error())
		}
		id = e164
	case events.ChannelTelegram:
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n == 0 {
			return fail("external_id", fmt.Sprintf("%q is not a Telegram chat id (a non-zero 64-bit integer)", truncateText(id, 40)))
		}
		id = strconv.FormatInt(n, 10)
	default:
		if hasControlChar(id) {
			return fail("external_id", "contains a control character")
		}
	}
	if err := store.CheckID("external_id", id); err != nil {
		var inv *store.InvalidError
		if errors.As(err, &inv) {
			return fail("external_id", inv.Reason)
		}
		return fail("external_id", err.Error())
	}
	name := strings.TrimSpace(r.name)
	switch {
	case !utf8.ValidString(name) || hasControlChar(name):
		return fail("name", "contains a control character or invalid UTF-8")
	case utf8.RuneCountInString(name) > maxContactName:
		return fail("name", fmt.Sprintf("longer than %d characters", maxContactName))
	}
	for k := range r.attributes {
		if k == "" || !utf8.ValidString(k) || len(k) > store.MaxIDBytes {
			return fail("attributes", "attribute names must be 1 to 128 bytes of UTF-8")
		}
	}
	if len(r.attributes) > 0 {
		b, err := json.Marshal(r.attributes)
		if err != nil {
			return fail("attributes", "cannot be encoded as JSON")
		}
		if len(b) > maxAttributeBytes {
			return fail("attributes", fmt.Sprintf("larger than %d bytes", maxAttributeBytes))
		}
	}
	return store.ContactUpsert{
		BotID: botID, Channel: ch, ExternalID: id, Name: name, Attributes: r.attributes,
		OptedOut: r.optedOut, NewID: store.NewContactID(), Now: now,
	}, nil
}

func hasControlChar(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return true
		}
	}
	return false
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// ndjsonReader reads one JSON object per line:
// {"channel", "external_id", "name", "attributes": {...}, "opted_out"}; any
// other key is an attribute too.
type ndjsonReader struct {
	r    *bufio.Reader
	line int
}

func newNDJSONReader(r io.Reader) *ndjsonReader {
	return &ndjsonReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// readLine returns the next line without its newline; a line longer than
// MaxImportLine is consumed and reported as too long.
func readLine(r *bufio.Reader) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxImportLine {
			tooLong = true
		} else {
			buf = append(buf, chunk...)
		}
		switch {
		case err == nil:
			return bytes.TrimRight(buf, "\r\n"), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && (len(buf) > 0 || tooLong):
			return bytes.TrimRight(buf, "\r\n"), tooLong, nil
		default:
			return nil, false, err
		}
	}
}

func (n *ndjsonReader) next() (contactRecord, *ImportRejection, error) {
	for {
		line, tooLong, err := readLine(n.r)
		if err != nil {
			return contactRecord{}, nil, err
		}
		n.line++
		if tooLong {
			return contactRecord{}, &ImportRejection{Line: n.line, Reason: fmt.Sprintf("line longer than %d bytes", MaxImportLine)}, nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rec, rej := parseNDJSONLine(line, n.line)
		return rec, rej, nil
	}
}

func parseNDJSONLine(line []byte, lineNo int) (contactRecord, *ImportRejection) {
	rec := contactRecord{line: lineNo}
	fail := func(field, reason string) (contactRecord, *ImportRejection) {
		return rec, &ImportRejection{Line: lineNo, Field: field, Reason: reason}
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return fail("", "not a JSON object")
	}
	if dec.More() {
		return fail("", "more than one JSON value on the line")
	}
	str := func(key string, dst *string) *ImportRejection {
		v, ok := raw[key]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err == nil {
			return nil
		}
		var n json.Number // a number written without quotes (phone numbers, chat ids)
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		if key == "external_id" && d.Decode(&n) == nil {
			if _, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
				*dst = n.String()
				return nil
			}
		}
		return &ImportRejection{Line: lineNo, Field: key, Reason: "must be a string"}
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"channel", &rec.channel}, {"external_id", &rec.externalID}, {"name", &rec.name}} {
		if rej := str(f.key, f.dst); rej != nil {
			return rec, rej
		}
	}
	if v, ok := raw["opted_out"]; ok && string(v) != "null" {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return fail("opted_out", "must be a boolean")
		}
		rec.optedOut = &b
	}
	if v, ok := raw["attributes"]; ok && string(v) != "null" {
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		var attrs map[string]any
		if err := d.Decode(&attrs); err != nil || attrs == nil {
			return fail("attributes", "must be an object")
		}
		rec.attributes = attrs
	}
	for k, v := range raw {
		switch k {
		case "channel", "external_id", "name", "attributes", "opted_out":
			continue
		}
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		var val any
		if err := d.Decode(&val); err != nil {
			return fail(k, "not a JSON value")
		}
		if rec.attributes == nil {
			rec.attributes = map[string]any{}
		}
		rec.attributes[k] = val
	}
	numbersToFloats(rec.attributes)
	return rec, nil
}

// numbersToFloats turns json.Number values into int64 or float64, the types
// filters compare with.
func numbersToFloats(m map[string]any) {
	for k, v := range m {
		m[k] = plainNumbers(v)
	}
}

func plainNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case map[string]any:
		numbersToFloats(x)
	case []any:
		for i := range x {
			x[i] = plainNumbers(x[i])
		}
	}
	return v
}

// csvReader reads CSV with a header row naming the columns: channel,
// external_id, name (optional), opted_out (optional); every other column
// is an attribute.
type csvReader struct {
	r      *csv.Reader
	capped *recordCapReader
	cols   []string
	idx    map[string]int
}

func newCSVReader(r io.Reader) (*csvReader, error) {
	capped := &recordCapReader{r: r}
	cr := csv.NewReader(capped)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errBadHeader{"the CSV is empty: the first row must name the columns (channel, external_id, name, attributes…)"}
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, errBadHeader{"the header row is not valid CSV: " + pe.Err.Error()}
		}
		return nil, err
	}
	c := &csvReader{r: cr, capped: capped, idx: map[string]int{}}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if i == 0 {
			h = strings.TrimSpace(h)
		}
		key := strings.ToLower(h)
		if _, dup := c.idx[key]; dup || h == "" {
			return nil, errBadHeader{fmt.Sprintf("column %d of the header is empty or repeated", i+1)}
		}
		c.idx[key] = i
		c.cols = append(c.cols, h)
	}
	for _, need := range []string{"channel", "external_id"} {
		if _, ok := c.idx[need]; !ok {
			return nil, errBadHeader{"the header row has no " + need + " column (columns: channel, external_id, name, then attributes)"}
		}
	}
	return c, nil
}

func (c *csvReader) next() (contactRecord, *ImportRejection, error) {
	c.capped.run = 0
	row, err := c.r.Read()
	if err != nil {
		var pe *csv.ParseError
		switch {
		case errors.Is(err, errRecordTooLong):
			return contactRecord{}, nil, readError{fmt.Errorf("a record is longer than %d bytes", MaxImportLine)}
		case errors.As(err, &pe):
			return contactRecord{}, &ImportRejection{Line: pe.StartLine, Reason: "not valid CSV: " + pe.Err.Error()}, nil
		default:
			return contactRecord{}, nil, err
		}
	}
	line, _ := c.r.FieldPos(0)
	if len(row) != len(c.cols) {
		return contactRecord{}, &ImportRejection{Line: line,
			Reason: fmt.Sprintf("has %d fields; the header has %d", len(row), len(c.cols))}, nil
	}
	rec := contactRecord{line: line}
	for i, v := range row {
		switch strings.ToLower(c.cols[i]) {
		case "channel":
			rec.channel = v
		case "external_id":
			rec.externalID = v
		case "name":
			rec.name = v
		case "opted_out":
			if v = strings.TrimSpace(v); v != "" {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return rec, &ImportRejection{Line: line, Field: "opted_out", Reason: "must be true or false"}, nil
				}
				rec.optedOut = &b
			}
		default:
			if v == "" {
				continue
			}
			if rec.attributes == nil {
				rec.attributes = make(map[string]any, len(row))
			}
			rec.attributes[c.cols[i]] = csvValue(v)
		}
	}
	return rec, nil, nil
}

// csvValue types a CSV cell: canonical integers and decimals become numbers,
// true/false booleans, anything else stays text (so "007" and "+31…" keep
// their digits).
func csvValue(v string) any {
	switch v {
	case "true":
		return true
	case "false":
		return false
	}
	if i, err := strconv.ParseInt(v, 10, 64); err == nil && strconv.FormatInt(i, 10) == v {
		return i
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && strconv.FormatFloat(f, 'f', -1, 64) == v && strings.Contains(v, ".") {
		return f
	}
	return v
}

var errRecordTooLong = errors.New("record too long")

// recordCapReader refuses records longer than MaxImportLine (plus the CSV
// reader's read-ahead), so a CSV with an unterminated quote cannot make the
// reader buffer the whole stream. next resets the count at each record.
type recordCapReader struct {
	r   io.Reader
	run int
}

func (l *recordCapReader) Read(p []byte) (int, error) {
	if l.run > MaxImportLine+16<<10 {
		return 0, errRecordTooLong
	}
	n, err := l.r.Read(p)
	l.run += n
	return n, err
}
