package mongo

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/brokerfs/brokerfs/catalog"
)

// embeddedStore fetches the documents of the embedded layout. mongoEmbedded queries the
// server; tests substitute one over BSON held in memory, because FerretDB refuses nested
// arrays, which the embedded layout stores for every array field (a column of arrays).
type embeddedStore interface {
	// header returns the header document of run uid, or mongo.ErrNoDocuments.
	header(ctx context.Context, uid string) (bson.Raw, error)
	// eventPages returns the event_page documents of descriptor that hold rows of [from, to)
	// (to < 0: to the end), by first row, with the given projection.
	eventPages(ctx context.Context, descriptor string, from, to int, projection bson.D) (cursor, error)
	// datumPages returns the datum_page documents of resource, in order.
	datumPages(ctx context.Context, resource string) (cursor, error)
}

// cursor is the part of *mongo.Cursor that readers use.
type cursor interface {
	Next(ctx context.Context) bool
	Current() bson.Raw
	RemainingBatchLength() int
	Err() error
	Close(ctx context.Context) error
}

// mongoCursor adapts *mongo.Cursor, whose Current is a field, to cursor.
type mongoCursor struct{ *mongo.Cursor }

func (c mongoCursor) Current() bson.Raw { return c.Cursor.Current }

// mongoEmbedded is the embedded layout in a MongoDB database.
type mongoEmbedded struct {
	db       *mongo.Database
	pageSize int
}

func (m *mongoEmbedded) header(ctx context.Context, uid string) (bson.Raw, error) {
	return m.db.Collection("header").FindOne(ctx, bson.D{{Key: "run_id", Value: uid}}, options.FindOne().SetProjection(noID)).Raw()
}

func (m *mongoEmbedded) eventPages(ctx context.Context, descriptor string, from, to int, projection bson.D) (cursor, error) {
	filter := bson.D{{Key: "descriptor", Value: descriptor}, {Key: "last_index", Value: bson.D{{Key: "$gte", Value: from}}}}
	if to >= 0 {
		filter = append(filter, bson.E{Key: "first_index", Value: bson.D{{Key: "$lt", Value: to}}})
	}
	// Pages are up to ~5 MB each: a small batch keeps a round trip's reply bounded.
	cur, err := m.db.Collection("event").Find(ctx, filter, options.Find().
		SetSort(bson.D{{Key: "last_index", Value: 1}}).
		SetProjection(projection).
		SetBatchSize(int32(max(1, m.pageSize/100))))
	if err != nil {
		return nil, err
	}
	return mongoCursor{cur}, nil
}

func (m *mongoEmbedded) datumPages(ctx context.Context, resource string) (cursor, error) {
	cur, err := m.db.Collection("datum").Find(ctx, bson.D{{Key: "resource", Value: resource}}, options.Find().
		SetSort(bson.D{{Key: "last_index", Value: 1}}).
		SetProjection(bson.D{{Key: "datum_id", Value: 1}, {Key: "datum_kwargs", Value: 1}, {Key: "_id", Value: 0}}).
		SetBatchSize(int32(max(1, m.pageSize/100))))
	if err != nil {
		return nil, err
	}
	return mongoCursor{cur}, nil
}

func (c *Catalog) embeddedRun(ctx context.Context, uid string) (catalog.Run, error) {
	raw, err := c.emb.header(ctx, uid)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("run %s in %s: %w", uid, c.name, catalog.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read header of run %s in %s: %w", uid, c.name, err)
	}
	return newEmbRun(c, c.emb, raw)
}

// embRun is a run of the embedded layout: its header, decoded when the run is opened, and
// the store its pages come from.
type embRun struct {
	c       *Catalog
	store   embeddedStore
	start   *catalog.Start
	stop    *catalog.Stop
	stopDoc map[string]any // the stop as a generic document
	descs   []*catalog.Descriptor
	res     []*catalog.Resource
	resDocs map[string]map[string]any // resource uid -> generic document
}

var _ catalog.Run = (*embRun)(nil)

// newEmbRun decodes a header document. A bad start is an error; a bad stop, descriptor or
// resource is left out and logged.
func newEmbRun(c *Catalog, store embeddedStore, header bson.Raw) (*embRun, error) {
	r := &embRun{c: c, store: store}
	d, err := firstOf(header, "start")
	if err == nil {
		r.start, err = parseStart(d)
	}
	if err != nil {
		return nil, &catalog.DocError{Source: "header", Name: "start", Err: err}
	}
	bad := func(name string, err error) {
		c.opts.Logger.Warn("skipping bad "+name, "catalog", c.name, "run", r.start.UID, "err", err)
	}
	if _, ok := lookup(header, "stop"); ok {
		if d, err := firstOf(header, "stop"); err != nil {
			bad("stop", err)
		} else if r.stop, r.stopDoc, err = parseStop(d); err != nil {
			bad("stop", err)
		}
	}
	r.descs = []*catalog.Descriptor{}
	r.res, r.resDocs = []*catalog.Resource{}, map[string]map[string]any{}
	each := func(key string, fn func([]byte)) {
		v, _ := lookup(header, key)
		a, _ := v.ArrayOK()
		for it := newElems(a); it.next(); {
			if d, ok := it.val.DocumentOK(); ok {
				fn(d)
			}
		}
	}
	each("descriptors", func(d []byte) {
		if x, err := parseDescriptor(d); err != nil {
			bad("descriptor", err)
		} else {
			r.descs = append(r.descs, x)
		}
	})
	each("resources", func(d []byte) {
		if x, doc, err := parseResource(d); err != nil {
			bad("resource", err)
		} else {
			r.res = append(r.res, x)
			r.resDocs[x.UID] = doc
		}
	})
	return r, nil
}

// Start implements catalog.Run.
func (r *embRun) Start() *catalog.Start { return r.start }

// Stop implements catalog.Run.
func (r *embRun) Stop(context.Context) (*catalog.Stop, error) {
	if r.stop == nil {
		return nil, fmt.Errorf("stop of run %s: %w", r.start.UID, catalog.ErrNotFound)
	}
	return r.stop, nil
}

// Descriptors implements catalog.Run: the header's, in the order they were written.
func (r *embRun) Descriptors(context.Context) ([]*catalog.Descriptor, error) { return r.descs, nil }

// Resources implements catalog.Run: the header's.
func (r *embRun) Resources(context.Context) ([]*catalog.Resource, error) { return r.res, nil }

// EventPages implements catalog.Run: the event_page documents that overlap [from, to), each
// one page whose FirstRow is the document's first_index.
func (r *embRun) EventPages(ctx context.Context, descriptor string, from, to int, fields []string, fn func(p *catalog.EventPage) error) (err error) {
	defer r.c.scrub(&err)
	from = max(from, 0)
	if to >= 0 && to <= from {
		return nil
	}
	fail := func(err error) error {
		return fmt.Errorf("read events of descriptor %s of run %s in %s: %w", descriptor, r.start.UID, r.c.name, err)
	}
	cur, err := r.store.eventPages(ctx, descriptor, from, to, eventProjection(fields, "first_index"))
	if err != nil {
		return fail(err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	b := newPageBuilder(descriptor, 0, fields)
	for cur.Next(ctx) {
		doc := cur.Current()
		first, ok := lookup(doc, "first_index")
		n, isInt := asInt(first)
		if !ok || !isInt {
			return &catalog.DocError{Source: "event page of descriptor " + descriptor, Name: "event_page", Err: errors.New("missing key \"first_index\"")}
		}
		b.reset(int(n))
		if err := b.appendPage(doc); err != nil {
			return &catalog.DocError{Source: fmt.Sprintf("event page at row %d of descriptor %s", n, descriptor), Name: "event_page", Err: err}
		}
		if err := fn(b.page()); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fail(err)
	}
	return nil
}

// Datums implements catalog.Run: one page per datum_page document.
func (r *embRun) Datums(ctx context.Context, resource string, fn func(p *catalog.DatumPage) error) (err error) {
	defer r.c.scrub(&err)
	fail := func(err error) error {
		return fmt.Errorf("read datums of resource %s in %s: %w", resource, r.c.name, err)
	}
	cur, err := r.store.datumPages(ctx, resource)
	if err != nil {
		return fail(err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var d datumBuilder
	for cur.Next(ctx) {
		d.reset(resource)
		if err := d.appendPage(cur.Current()); err != nil {
			return &catalog.DocError{Source: "datum page of resource " + resource, Name: "datum_page", Err: err}
		}
		if err := fn(d.page()); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fail(err)
	}
	return nil
}
