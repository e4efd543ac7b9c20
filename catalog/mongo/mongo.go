// Package mongo reads Bluesky catalogs that databroker keeps in MongoDB, in its two layouts:
//
//   - normalized (databroker's mongo_normalized, written by suitcase-mongo-normalized): one
//     MongoDB document per Bluesky document, in run_start, run_stop, event_descriptor and
//     event of the metadata database and resource and datum of the asset database, which may
//     be the same database. Opening refuses an asset database without databroker's version
//     sentinel (see CheckSentinel).
//   - embedded (mongo_embedded, suitcase-mongo-embedded): one header document per run holding
//     its start, stop, descriptors and resources, and columnar event_page and datum_page
//     documents in event and datum.
//
// You are in a concrete backend: package catalog defines what it returns, cmd/brokerfs wires
// it. Queries go to the server: Find pushes a Mongo query down, Lookup resolves scan ids, uid
// prefixes and "the N-th newest" with one or two queries (indexed in the normalized layout),
// EachStart streams the listing, and EventPages fetches one
// descriptor's events in batches with only the asked-for fields projected. Round trips per
// operation (tests pin them): opening a run takes 3 (start, stop, descriptors) in the
// normalized layout and 1 in the embedded one; EventPages takes one per batch of
// Options.PageSize events; Resources one; Datums one per batch.
//
// Resources of the normalized layout are found by their run_start key. Resource documents
// older than that key (databroker v0) have none: when a run finds no resource that way but
// has external fields, the resources are found through the datum ids its events hold, as
// databroker does when it fills them (a scan of those fields, done only for such runs).
//
// Runs of both layouts replay their documents (catalog.DocumentReader) for brokerfs copy, and
// Writer (InsertRun, InsertRunEmbedded) writes runs as suitcase-mongo does, indexes included.
//
// Faults: every round trip has a deadline (Options.Timeout, unless the context has an earlier
// one), so a server that goes away makes calls fail rather than hang; the driver reconnects by
// itself when it returns. Credentials in URIs never appear in errors or logs (Redact).
package mongo

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/brokerfs/brokerfs/catalog"
)

// Catalog is a databroker catalog in MongoDB. It is safe for concurrent use.
type Catalog struct {
	opts  Options
	conns []*conn  // one per distinct URI, closed by Close
	uris  []string // the URIs as given, whose secrets scrub hides in errors
	name  string   // the URI(s), redacted, for messages

	starts *mongo.Collection // run_start (normalized) or header (embedded)
	prefix string            // where start keys live in starts: "" or "start."

	norm *normalized // the normalized layout's collections; nil for the embedded layout
	emb  embeddedStore
}

var _ catalog.Catalog = (*Catalog)(nil)

// OpenNormalized opens a catalog in the normalized layout. metadataURI names the metadata
// database (mongodb://HOST/mds); assetURI the asset database, or "" when it is the same one.
// It checks the asset database's version sentinel, which also proves the server reachable.
func OpenNormalized(ctx context.Context, metadataURI, assetURI string, opts Options) (_ *Catalog, err error) {
	defer func() { err = scrub(err, metadataURI, assetURI) }()
	opts = opts.withDefaults()
	c := &Catalog{opts: opts, uris: []string{metadataURI, assetURI}}
	mds, err := connect(metadataURI, opts)
	if err != nil {
		return nil, err
	}
	c.conns, c.name = []*conn{mds}, mds.name
	assets := mds
	if assetURI != "" && assetURI != metadataURI {
		if shareable(metadataURI, assetURI) {
			assets, err = mds.sibling(assetURI)
		} else if assets, err = connect(assetURI, opts); err == nil {
			c.conns = append(c.conns, assets)
		}
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		c.name += " (assets " + assets.name + ")"
	}
	if err := checkSentinel(ctx, assets); err != nil {
		_ = c.Close()
		return nil, err
	}
	if assets.client != mds.client {
		if err := mds.client.Ping(ctx, nil); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("reach %s: %w", mds.name, err)
		}
	}
	c.norm = newNormalized(mds.db, assets.db)
	c.starts = c.norm.runStart
	return c, nil
}

// OpenEmbedded opens a catalog in the embedded layout; uri names its database. It pings the
// server so that an unreachable one fails here.
func OpenEmbedded(ctx context.Context, uri string, opts Options) (_ *Catalog, err error) {
	defer func() { err = scrub(err, uri) }()
	opts = opts.withDefaults()
	c := &Catalog{opts: opts, uris: []string{uri}, prefix: "start."}
	cn, err := connect(uri, opts)
	if err != nil {
		return nil, err
	}
	c.conns, c.name = []*conn{cn}, cn.name
	if err := cn.client.Ping(ctx, nil); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("reach %s: %w", cn.name, err)
	}
	c.starts = cn.db.Collection("header")
	c.emb = &mongoEmbedded{db: cn.db, pageSize: opts.PageSize}
	return c, nil
}

// String returns the catalog's URI(s), redacted.
func (c *Catalog) String() string { return c.name }

// Close disconnects from the server(s).
func (c *Catalog) Close() (err error) {
	defer c.scrub(&err)
	var errs []error
	for _, cn := range c.conns {
		errs = append(errs, cn.close(c.opts.Timeout))
	}
	return errors.Join(errs...)
}

// scrub hides the catalog's URI secrets in *err; every exported method defers it.
func (c *Catalog) scrub(err *error) { *err = scrub(*err, c.uris...) }

// Runs implements catalog.Catalog: every run's start document, read through one cursor in
// batches of Options.PageSize.
func (c *Catalog) Runs(ctx context.Context) ([]*catalog.Start, error) {
	return c.Find(ctx, nil)
}

// Find returns the start documents that match a MongoDB query over start document keys
// (brokerfs's --query, as generic values: {"plan_name": "scan", "scan_id": {"$gt": 10}}). The
// server evaluates it. Nil matches every run.
func (c *Catalog) Find(ctx context.Context, query map[string]any) ([]*catalog.Start, error) {
	var out []*catalog.Start
	err := c.EachStart(ctx, query, func(s *catalog.Start) error {
		out = append(out, s)
		return nil
	})
	return out, err
}

// EachStart calls fn with each start document matching query (see Find) as it arrives, so
// that a listing of 360,000 runs need not be held in memory at once. A start document that
// cannot be read is left out and logged. An error from fn stops the listing and is returned.
func (c *Catalog) EachStart(ctx context.Context, query map[string]any, fn func(*catalog.Start) error) (err error) {
	defer c.scrub(&err)
	cur, err := c.findStarts(ctx, query, options.Find())
	if err != nil {
		return fmt.Errorf("list runs of %s: %w", c.name, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		s, err := c.startOf(cur.Current)
		if err != nil {
			c.opts.Logger.Warn("skipping unreadable start document", "catalog", c.name, "err", err)
			continue
		}
		if err := fn(s); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("list runs of %s: %w", c.name, err)
	}
	return nil
}

// findStarts queries the start documents with the query's keys moved under c.prefix.
func (c *Catalog) findStarts(ctx context.Context, query map[string]any, fo *options.FindOptionsBuilder) (*mongo.Cursor, error) {
	filter := any(bson.D{})
	if query != nil {
		filter = prefixQuery(query, c.prefix)
	}
	proj := bson.D{{Key: "_id", Value: 0}}
	if c.prefix != "" {
		proj = bson.D{{Key: "start", Value: 1}, {Key: "_id", Value: 0}}
	}
	return c.starts.Find(ctx, filter, fo.SetProjection(proj).SetBatchSize(int32(c.opts.PageSize)))
}

// startOf decodes the start document in a run_start or header document.
func (c *Catalog) startOf(doc bson.Raw) (*catalog.Start, error) {
	if c.prefix == "" {
		s, err := parseStart(doc)
		if err != nil {
			return nil, &catalog.DocError{Source: "run_start", Name: "start", Err: err}
		}
		return s, nil
	}
	d, err := firstOf(doc, "start")
	if err != nil {
		return nil, &catalog.DocError{Source: "header", Name: "start", Err: err}
	}
	s, err := parseStart(d)
	if err != nil {
		return nil, &catalog.DocError{Source: "header", Name: "start", Err: err}
	}
	return s, nil
}

// firstOf returns the first document of the array doc[key], as a header keeps its start and
// stop documents.
func firstOf(doc []byte, key string) ([]byte, error) {
	v, ok := lookup(doc, key)
	if !ok {
		return nil, fmt.Errorf("missing key %q", key)
	}
	if d, ok := v.DocumentOK(); ok {
		return d, nil
	}
	a, ok := v.ArrayOK()
	if !ok {
		return nil, fmt.Errorf("key %q: want array, have %s", key, v.Type)
	}
	it := newElems(a)
	if !it.next() {
		if it.err != nil {
			return nil, it.err
		}
		return nil, fmt.Errorf("key %q: empty array", key)
	}
	d, ok := it.val.DocumentOK()
	if !ok {
		return nil, fmt.Errorf("key %q: want documents, have %s", key, it.val.Type)
	}
	return d, nil
}

// prefixQuery moves a query over start keys under prefix, as databroker's embedded catalog
// does ("scan_id" -> "start.scan_id"), descending into $and, $or and $nor.
func prefixQuery(q map[string]any, prefix string) map[string]any {
	if prefix == "" {
		return q
	}
	out := make(map[string]any, len(q))
	for k, v := range q {
		switch {
		case k == "$and" || k == "$or" || k == "$nor":
			list, _ := v.([]any)
			sub := make([]any, len(list))
			for i, e := range list {
				if m, ok := e.(map[string]any); ok {
					sub[i] = prefixQuery(m, prefix)
				} else {
					sub[i] = e
				}
			}
			out[k] = sub
		case strings.HasPrefix(k, "$"):
			out[k] = v // $text, $expr, ...: passed as they are
		default:
			out[prefix+k] = v
		}
	}
	return out
}

// Lookup resolves a run name as databroker's catalog[name] does: an integer N >= 0 is the
// most recent run with scan_id N, -N the N-th newest run (-1: the latest); anything else an
// exact uid, then a unique uid prefix. It returns an error wrapping catalog.ErrNotFound when
// nothing matches and catalog.ErrAmbiguous when a prefix matches several runs.
func (c *Catalog) Lookup(ctx context.Context, name string) (s *catalog.Start, err error) {
	defer c.scrub(&err)
	if n, perr := strconv.ParseInt(name, 10, 64); perr == nil {
		newest := options.Find().SetSort(c.newest()).SetLimit(1)
		if c.prefix != "" {
			newest.SetAllowDiskUse(true) // headers are big, and suitcase indexes none of them
		}
		if n < 0 {
			return c.one(ctx, nil, newest.SetSkip(-n-1), name)
		}
		return c.one(ctx, map[string]any{"scan_id": n}, newest, name)
	}
	s, err = c.one(ctx, map[string]any{"uid": name}, options.Find().SetLimit(1), name)
	if !errors.Is(err, catalog.ErrNotFound) {
		return s, err
	}
	q := map[string]any{"uid": map[string]any{"$regex": "^" + regexp.QuoteMeta(name)}}
	var found []*catalog.Start
	err = c.each(ctx, q, options.Find().SetLimit(2), func(s *catalog.Start) { found = append(found, s) })
	switch {
	case err != nil:
		return nil, fmt.Errorf("look up run %q in %s: %w", name, c.name, err)
	case len(found) == 0:
		return nil, fmt.Errorf("run %q in %s: %w", name, c.name, catalog.ErrNotFound)
	case len(found) > 1:
		return nil, fmt.Errorf("run %q in %s: %w (%s, %s, ...)", name, c.name, catalog.ErrAmbiguous, found[0].UID, found[1].UID)
	}
	return found[0], nil
}

// newest is the sort order newest run first. A header keeps its start document as the only
// element of an array: "start.0.time" names its time positionally, which both MongoDB and
// FerretDB sort by (FerretDB ignores a sort on "start.time", a path through an array).
func (c *Catalog) newest() bson.D {
	if c.prefix == "" {
		return bson.D{{Key: "time", Value: -1}}
	}
	return bson.D{{Key: "start.0.time", Value: -1}}
}

func (c *Catalog) one(ctx context.Context, q map[string]any, fo *options.FindOptionsBuilder, name string) (*catalog.Start, error) {
	var found *catalog.Start
	if err := c.each(ctx, q, fo, func(s *catalog.Start) { found = s }); err != nil {
		return nil, fmt.Errorf("look up run %q in %s: %w", name, c.name, err)
	}
	if found == nil {
		return nil, fmt.Errorf("run %q in %s: %w", name, c.name, catalog.ErrNotFound)
	}
	return found, nil
}

func (c *Catalog) each(ctx context.Context, q map[string]any, fo *options.FindOptionsBuilder, fn func(*catalog.Start)) error {
	cur, err := c.findStarts(ctx, q, fo)
	if err != nil {
		return err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		s, err := c.startOf(cur.Current)
		if err != nil {
			return err
		}
		fn(s)
	}
	return cur.Err()
}

// Run implements catalog.Catalog. In the normalized layout it reads the start document (the
// stop document and descriptors follow on demand, one round trip each); in the embedded
// layout the run's header, which holds all of them.
func (c *Catalog) Run(ctx context.Context, uid string) (r catalog.Run, err error) {
	defer c.scrub(&err)
	if c.norm != nil {
		return c.normalizedRun(ctx, uid)
	}
	return c.embeddedRun(ctx, uid)
}
