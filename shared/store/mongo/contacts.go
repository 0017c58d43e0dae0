package mongo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/flowgate/flowgate/shared/store"
)

// contactDoc is a contact as stored. Attributes hold one JSON text per key
// (keys escaped, see escapeKey) so that merging is a $set per key;
// last_request is JSON text.
type contactDoc struct {
	ID                string     `bson:"_id"`
	BotID             string     `bson:"bot_id"`
	Channel           string     `bson:"channel"`
	ExternalID        string     `bson:"external_id"`
	Name              string     `bson:"name"`
	Attributes        bson.Raw   `bson:"attributes,omitempty"`
	LastRequest       string     `bson:"last_request,omitempty"`
	LastInboundAt     *time.Time `bson:"last_inbound_at,omitempty"`
	OptedOut          bool       `bson:"opted_out"`
	Unreachable       bool       `bson:"unreachable"`
	UnreachableReason string     `bson:"unreachable_reason"`
	CreatedAt         time.Time  `bson:"created_at"`
	UpdatedAt         time.Time  `bson:"updated_at"`
}

func (d *contactDoc) contact() (store.Contact, error) {
	attrs, err1 := decodeAttributes(d.Attributes)
	lastReq, err2 := decodeMap(d.LastRequest)
	return store.Contact{
		ID: d.ID, BotID: d.BotID, Channel: d.Channel, ExternalID: d.ExternalID, Name: d.Name,
		Attributes: attrs, LastRequest: lastReq, LastInboundAt: d.LastInboundAt, OptedOut: d.OptedOut,
		Unreachable: d.Unreachable, UnreachableReason: d.UnreachableReason, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
	}, store.FirstErr(err1, err2)
}

// contactUpsert is a ContactUpsert checked and turned into one upsert.
type contactUpsert struct {
	u      store.ContactUpsert
	at     time.Time
	filter bson.D
	update bson.D
}

func prepareUpsert(u store.ContactUpsert) (contactUpsert, error) {
	if err := check.ContactUpsert(u); err != nil {
		return contactUpsert{}, err
	}
	attrs, err := encodeAttributes("attributes", u.Attributes)
	if err != nil {
		return contactUpsert{}, err
	}
	lastReq, err := encodeMap("last_request", u.LastRequest)
	if err != nil {
		return contactUpsert{}, err
	}
	at := orNow(u.Now)
	set := bson.D{{Key: "updated_at", Value: at}}
	onInsert := bson.D{{Key: "_id", Value: u.NewID}, {Key: "created_at", Value: at},
		{Key: "unreachable", Value: false}, {Key: "unreachable_reason", Value: ""}}
	if u.Name != "" {
		set = append(set, bson.E{Key: "name", Value: u.Name})
	} else {
		onInsert = append(onInsert, bson.E{Key: "name", Value: ""})
	}
	for _, a := range attrs {
		set = append(set, bson.E{Key: "attributes." + a.Key, Value: a.Value})
	}
	if u.LastRequest != nil {
		set = append(set, bson.E{Key: "last_request", Value: lastReq})
	}
	if u.LastInboundAt != nil {
		set = append(set, bson.E{Key: "last_inbound_at", Value: ms(*u.LastInboundAt)})
	}
	if u.OptedOut != nil {
		set = append(set, bson.E{Key: "opted_out", Value: *u.OptedOut})
	} else {
		onInsert = append(onInsert, bson.E{Key: "opted_out", Value: false})
	}
	return contactUpsert{
		u:      u,
		at:     at,
		filter: bson.D{{Key: "bot_id", Value: u.BotID}, {Key: "channel", Value: u.Channel}, {Key: "external_id", Value: u.ExternalID}},
		update: bson.D{{Key: "$set", Value: set}, {Key: "$setOnInsert", Value: onInsert}},
	}, nil
}

// apply returns c after the upsert's changes, as the update writes them.
func (p contactUpsert) apply(c store.Contact) store.Contact {
	u := p.u
	if u.Name != "" {
		c.Name = u.Name
	}
	if len(u.Attributes) > 0 {
		if c.Attributes == nil {
			c.Attributes = make(map[string]any, len(u.Attributes))
		}
		// Stored values are JSON: give the caller what a read returns.
		if enc, err := encodeMap("attributes", u.Attributes); err == nil {
			if m, err := decodeMap(enc); err == nil {
				maps.Copy(c.Attributes, m)
			}
		}
	}
	if u.LastRequest != nil {
		enc, _ := encodeMap("last_request", u.LastRequest)
		c.LastRequest, _ = decodeMap(enc)
	}
	if u.LastInboundAt != nil {
		c.LastInboundAt = msPtr(u.LastInboundAt)
	}
	if u.OptedOut != nil {
		c.OptedOut = *u.OptedOut
	}
	c.UpdatedAt = p.at
	return c
}

// UpsertContact creates or updates a contact with one findAndModify upsert
// keyed by bot + channel + external id. It reads the document as it was
// before the write and returns it with the changes applied.
func (s *Store) UpsertContact(ctx context.Context, u store.ContactUpsert) (store.Contact, bool, error) {
	p, err := prepareUpsert(u)
	if err != nil {
		return store.Contact{}, false, err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	o := options.FindOneAndUpdate().SetReturnDocument(options.Before).SetUpsert(u.NewID != "")
	var before contactDoc
	for attempt := 0; ; attempt++ {
		unlock := s.lockUpdates()
		err = s.contacts.FindOneAndUpdate(ctx, p.filter, p.update, o).Decode(&before)
		unlock()
		// Two first upserts of one contact race on the unique key: the
		// loser's retry finds the winner's document.
		if !isDup(err) || attempt == 1 {
			break
		}
	}
	switch {
	case errors.Is(err, mongo.ErrNoDocuments) && u.NewID == "":
		return store.Contact{}, false, &store.InvalidError{Field: "id", Reason: "required"}
	case errors.Is(err, mongo.ErrNoDocuments):
		c := p.apply(store.Contact{ID: u.NewID, BotID: u.BotID, Channel: u.Channel, ExternalID: u.ExternalID, CreatedAt: p.at})
		return c, true, nil
	case isDup(err):
		return store.Contact{}, false, fmt.Errorf("%w: contact id %s is taken", store.ErrConflict, u.NewID)
	case err != nil:
		return store.Contact{}, false, dbErr("upsert contact", err)
	}
	c, err := before.contact()
	if err != nil {
		return store.Contact{}, false, dbErr("upsert contact", err)
	}
	return p.apply(c), false, nil
}

// ImportContacts upserts many contacts with unordered bulk writes (one per
// round of distinct keys). Invalid input fails the whole call before
// anything is written; without transactions a later failure can leave part
// of the import written, and a retry is harmless.
func (s *Store) ImportContacts(ctx context.Context, us []store.ContactUpsert) (created, updated int, err error) {
	ps := make([]contactUpsert, len(us))
	for i, u := range us {
		if ps[i], err = prepareUpsert(u); err != nil {
			return 0, 0, fmt.Errorf("contact %d: %w", i, err)
		}
	}
	if len(ps) == 0 {
		return 0, 0, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	if err := s.checkImportIDs(ctx, ps); err != nil {
		return 0, 0, err
	}
	items := make([]importItem, len(ps))
	for i, p := range ps {
		items[i] = importItem{i, p}
	}
	key := func(it importItem) string {
		return it.p.u.BotID + "\x00" + it.p.u.Channel + "\x00" + it.p.u.ExternalID
	}
	for _, round := range rounds(items, key) {
		models := make([]mongo.WriteModel, len(round))
		for j, it := range round {
			models[j] = mongo.NewUpdateOneModel().SetFilter(it.p.filter).SetUpdate(it.p.update).SetUpsert(it.p.u.NewID != "")
		}
		res, err := s.bulkUpdate(ctx, s.contacts, models)
		if err != nil {
			var bwe mongo.BulkWriteException
			if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 && isDup(bwe) {
				if named := s.takenID(ctx, round); named != nil {
					return 0, 0, named
				}
				return 0, 0, fmt.Errorf("%w: import contacts: a new contact's id is taken: %v", store.ErrConflict, err)
			}
			return 0, 0, dbErr("import contacts", err)
		}
		created += int(res.UpsertedCount)
		updated += int(res.MatchedCount)
	}
	return created, updated, nil
}

// takenID names the first contact of a failed round whose new id another
// contact has (not its index in the bulk write's error: FerretDB reports
// it wrong), or returns nil when none has (two writers raced on a key).
func (s *Store) takenID(ctx context.Context, round []importItem) error {
	ids := bson.A{}
	for _, it := range round {
		if it.p.u.NewID != "" {
			ids = append(ids, it.p.u.NewID)
		}
	}
	cur, err := s.contacts.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "bot_id", Value: 1}, {Key: "channel", Value: 1}, {Key: "external_id", Value: 1}}))
	if err != nil {
		return nil
	}
	var docs []contactDoc
	if cur.All(ctx, &docs) != nil {
		return nil
	}
	holder := make(map[string][3]string, len(docs))
	for _, d := range docs {
		holder[d.ID] = [3]string{d.BotID, d.Channel, d.ExternalID}
	}
	for _, it := range round {
		u := it.p.u
		if k, ok := holder[u.NewID]; ok && u.NewID != "" && k != [3]string{u.BotID, u.Channel, u.ExternalID} {
			return fmt.Errorf("contact %d: %w: contact id %s is taken", it.i, store.ErrConflict, u.NewID)
		}
	}
	return nil
}

// importItem is the i-th contact of an import.
type importItem struct {
	i int
	p contactUpsert
}

// UpsertContacts is ImportContacts followed by one read of the contacts.
func (s *Store) UpsertContacts(ctx context.Context, us []store.ContactUpsert) ([]store.Contact, error) {
	if _, _, err := s.ImportContacts(ctx, us); err != nil {
		return nil, err
	}
	if len(us) == 0 {
		return nil, nil
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	or := make(bson.A, len(us))
	for i, u := range us {
		or[i] = bson.D{{Key: "bot_id", Value: u.BotID}, {Key: "channel", Value: u.Channel}, {Key: "external_id", Value: u.ExternalID}}
	}
	cur, err := s.contacts.Find(ctx, bson.D{{Key: "$or", Value: or}})
	if err != nil {
		return nil, dbErr("upsert contacts", err)
	}
	var docs []contactDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, dbErr("upsert contacts", err)
	}
	byKey := make(map[[3]string]store.Contact, len(docs))
	for i := range docs {
		c, err := docs[i].contact()
		if err != nil {
			return nil, err
		}
		byKey[[3]string{c.BotID, c.Channel, c.ExternalID}] = c
	}
	out := make([]store.Contact, len(us))
	for i, u := range us {
		c, ok := byKey[[3]string{u.BotID, u.Channel, u.ExternalID}]
		if !ok { // deleted between the upsert and the read
			return nil, fmt.Errorf("%w: upsert contacts: contact %s/%s changed meanwhile", store.ErrUnavailable, u.Channel, u.ExternalID)
		}
		out[i] = c
	}
	return out, nil
}

// checkImportIDs refuses, before anything is written, upserts without a new
// id whose contact does not exist.
func (s *Store) checkImportIDs(ctx context.Context, ps []contactUpsert) error {
	var or bson.A
	for _, p := range ps {
		if p.u.NewID == "" {
			or = append(or, p.filter)
		}
	}
	if len(or) == 0 {
		return nil
	}
	cur, err := s.contacts.Find(ctx, bson.D{{Key: "$or", Value: or}},
		options.Find().SetProjection(bson.D{{Key: "bot_id", Value: 1}, {Key: "channel", Value: 1}, {Key: "external_id", Value: 1}}))
	if err != nil {
		return dbErr("import contacts", err)
	}
	var docs []contactDoc
	if err := cur.All(ctx, &docs); err != nil {
		return dbErr("import contacts", err)
	}
	found := make(map[[3]string]bool, len(docs))
	for _, d := range docs {
		found[[3]string{d.BotID, d.Channel, d.ExternalID}] = true
	}
	for i, p := range ps {
		if p.u.NewID == "" && !found[[3]string{p.u.BotID, p.u.Channel, p.u.ExternalID}] {
			return fmt.Errorf("contact %d: %w", i, &store.InvalidError{Field: "id", Reason: "required"})
		}
	}
	return nil
}

func (s *Store) findContact(ctx context.Context, filter bson.D, key ...string) (store.Contact, error) {
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	var d contactDoc
	err := s.contacts.FindOne(ctx, filter).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return store.Contact{}, notFound("contact", key...)
	}
	if err != nil {
		return store.Contact{}, dbErr("get contact", err)
	}
	c, err := d.contact()
	return c, dbErr("get contact", err)
}

// GetContact returns ErrNotFound for an unknown contact.
func (s *Store) GetContact(ctx context.Context, botID, id string) (store.Contact, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("id", id)); err != nil {
		return store.Contact{}, err
	}
	return s.findContact(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}}, botID, id)
}

// GetContactByExternalID finds a contact by its channel address.
func (s *Store) GetContactByExternalID(ctx context.Context, botID, channel, externalID string) (store.Contact, error) {
	if err := store.FirstErr(store.CheckBotID("bot_id", botID), store.CheckID("channel", channel),
		store.CheckID("external_id", externalID)); err != nil {
		return store.Contact{}, err
	}
	return s.findContact(ctx, bson.D{{Key: "bot_id", Value: botID}, {Key: "channel", Value: channel}, {Key: "external_id", Value: externalID}},
		botID, channel, externalID)
}

// StreamContacts returns the next batch of a bot's contacts in id order.
func (s *Store) StreamContacts(ctx context.Context, botID string, f store.ContactFilter) ([]store.Contact, error) {
	if err := store.CheckBotID("bot_id", botID); err != nil {
		return nil, err
	}
	if len(f.After) > store.MaxIDBytes {
		return nil, &store.InvalidError{Field: "after", Reason: "longer than an id"}
	}
	limit, err := store.CheckLimit(f.Limit, 100, 10000)
	if err != nil {
		return nil, err
	}
	filter := bson.D{{Key: "bot_id", Value: botID}}
	if f.Channel != "" && f.Channel != "any" {
		filter = append(filter, bson.E{Key: "channel", Value: f.Channel})
	}
	filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: f.After}}})
	if f.SkipOptedOut {
		filter = append(filter, bson.E{Key: "opted_out", Value: false})
	}
	if f.SkipUnreachable {
		filter = append(filter, bson.E{Key: "unreachable", Value: false})
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	cur, err := s.contacts.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, dbErr("stream contacts", err)
	}
	defer cur.Close(ctx)
	out := make([]store.Contact, 0, min(limit, 1024))
	for cur.Next(ctx) {
		var d contactDoc
		if err := cur.Decode(&d); err != nil {
			return nil, dbErr("stream contacts", err)
		}
		c, err := d.contact()
		if err != nil {
			return nil, dbErr("stream contacts", err)
		}
		out = append(out, c)
	}
	return out, dbErr("stream contacts", cur.Err())
}

// SetContactReachability records whether a provider can reach the contact.
func (s *Store) SetContactReachability(ctx context.Context, botID, id string, unreachable bool, reason string) error {
	if err := check.ContactReachability(botID, id, reason); err != nil {
		return err
	}
	if !unreachable {
		reason = ""
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	unlock := s.lockUpdates()
	res, err := s.contacts.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "bot_id", Value: botID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "unreachable", Value: unreachable}, {Key: "unreachable_reason", Value: reason},
			{Key: "updated_at", Value: now()}}}})
	unlock()
	if err != nil {
		return dbErr("set contact reachability", err)
	}
	if res.MatchedCount == 0 {
		return notFound("contact", botID, id)
	}
	return nil
}

// SetLastRequest updates the contacts with one UpdateMany.
func (s *Store) SetLastRequest(ctx context.Context, botID string, contactIDs []string, data map[string]any, at time.Time) error {
	if err := store.SetLastRequestArgs(botID, contactIDs, at); err != nil {
		return err
	}
	if data == nil {
		data = map[string]any{}
	}
	lastReq, err := encodeMap("last_request", data)
	if err != nil || len(contactIDs) == 0 {
		return err
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	_, err = s.contacts.UpdateMany(ctx,
		bson.D{{Key: "bot_id", Value: botID}, {Key: "_id", Value: bson.D{{Key: "$in", Value: contactIDs}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "last_request", Value: lastReq}, {Key: "updated_at", Value: orNow(at)}}}})
	return dbErr("set last request", err)
}
