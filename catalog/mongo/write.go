package mongo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/brokerfs/brokerfs/catalog"
)

// Writers of both layouts, for tests, demos and brokerfs copy. They write what suitcase-mongo
// writes, and create the indexes it creates. They do not install the version sentinel: that
// stays a deliberate act (InstallSentinel).

// insertBatch is the number of documents per insertMany.
const insertBatch = 1000

// Writer writes runs into a catalog in one layout. It keeps its connections and creates the
// layout's indexes once, so that copying many runs costs no more than their inserts.
type Writer struct {
	mds, assets *conn    // the same conn when one database holds both
	conns       []*conn  // distinct, closed by Close
	uris        []string // for scrubbing errors
	embedded    bool
}

// NewWriter returns a Writer for the normalized layout: metadata to the database mdsURI
// names, resources and datums to assetURI's ("" = the same database).
func NewWriter(ctx context.Context, mdsURI, assetURI string) (_ *Writer, err error) {
	defer func() { err = scrub(err, mdsURI, assetURI) }()
	w := &Writer{uris: []string{mdsURI, assetURI}}
	if w.mds, err = connect(mdsURI, oneShot); err != nil {
		return nil, err
	}
	w.conns, w.assets = []*conn{w.mds}, w.mds
	if assetURI != "" && assetURI != mdsURI {
		if w.assets, err = connect(assetURI, oneShot); err != nil {
			_ = w.Close()
			return nil, err
		}
		w.conns = append(w.conns, w.assets)
	}
	if err = createIndexes(ctx, w.mds, normalizedMetadataIndexes); err == nil {
		err = createIndexes(ctx, w.assets, normalizedAssetIndexes)
	}
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	return w, nil
}

// NewEmbeddedWriter returns a Writer for the embedded layout in the database uri names.
func NewEmbeddedWriter(ctx context.Context, uri string) (_ *Writer, err error) {
	defer func() { err = scrub(err, uri) }()
	w := &Writer{uris: []string{uri}, embedded: true}
	if w.mds, err = connect(uri, oneShot); err != nil {
		return nil, err
	}
	w.conns, w.assets = []*conn{w.mds}, w.mds
	if err := createIndexes(ctx, w.mds, embeddedIndexes); err != nil {
		_ = w.Close()
		return nil, err
	}
	return w, nil
}

// Close disconnects the Writer.
func (w *Writer) Close() (err error) {
	defer func() { err = scrub(err, w.uris...) }()
	var errs []error
	for _, cn := range w.conns {
		errs = append(errs, cn.close(DefaultTimeout))
	}
	return errors.Join(errs...)
}

// Insert writes one run's documents, start first.
func (w *Writer) Insert(ctx context.Context, docs []catalog.Document) (err error) {
	defer func() { err = scrub(err, w.uris...) }()
	if len(docs) == 0 || docs[0].Name != "start" {
		return errors.New("insert run: the documents do not begin with a start document")
	}
	if w.embedded {
		return w.insertEmbedded(ctx, docs)
	}
	return w.insertNormalized(ctx, docs)
}

// InsertRun writes one run's documents (start first) in the normalized layout: metadata to
// the database mdsURI names, resources and datums to assetURI's ("" = the same). Event pages
// are unpacked into events and datum pages into datums, as suitcase-mongo-normalized does;
// the events of an event page without uids get made-up ones (the unique index on event uids
// needs them) that Documents leaves out again. To write many runs, use a Writer.
func InsertRun(ctx context.Context, mdsURI, assetURI string, docs []catalog.Document) error {
	w, err := NewWriter(ctx, mdsURI, assetURI)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Insert(ctx, docs)
}

// normalizedOrder is the order in which buffered documents are flushed: a reader never sees
// events before their descriptor, nor a stop before the events.
var normalizedOrder = []string{"run_start", "event_descriptor", "resource", "datum", "event", "run_stop"}

func (w *Writer) insertNormalized(ctx context.Context, docs []catalog.Document) error {
	buf := map[string][]any{}
	flush := func() error {
		for _, coll := range normalizedOrder {
			cn := w.mds
			if coll == "resource" || coll == "datum" {
				cn = w.assets
			}
			if err := insertMany(ctx, cn.db.Collection(coll), buf[coll]); err != nil {
				return fmt.Errorf("insert run into %s: %w", cn.name, err)
			}
			buf[coll] = buf[coll][:0]
		}
		return nil
	}
	for i, d := range docs {
		var add []bson.D
		var err error
		coll := ""
		switch d.Name {
		case "start", "stop", "descriptor", "event", "resource", "datum":
			coll, add = normalizedCollection[d.Name], []bson.D{toBSON(d.Doc).(bson.D)}
		case "event_page":
			coll = "event"
			add, err = unpackEventPage(d.Doc)
		case "datum_page":
			coll = "datum"
			add, err = unpackDatumPage(d.Doc)
		default:
			err = fmt.Errorf("unknown document name %q", d.Name)
		}
		if err != nil {
			return fmt.Errorf("insert run: document %d (%s): %w", i, d.Name, err)
		}
		for _, x := range add {
			buf[coll] = append(buf[coll], x)
		}
		if len(buf[coll]) >= insertBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// normalizedCollection maps document names to collections of the normalized layout.
var normalizedCollection = map[string]string{
	"start": "run_start", "stop": "run_stop", "descriptor": "event_descriptor", "event": "event",
	"resource": "resource", "datum": "datum",
}

// index is one index: the collection, its keys in order, and uniqueness.
type index struct {
	coll   string
	keys   bson.D
	unique bool
}

func keys(kv ...any) bson.D {
	var d bson.D
	for i := 0; i < len(kv); i += 2 {
		d = append(d, bson.E{Key: kv[i].(string), Value: kv[i+1]})
	}
	return d
}

// The indexes suitcase-mongo-normalized creates (the text indexes left out).
var (
	normalizedMetadataIndexes = []index{
		{"run_start", keys("uid", 1), true},
		{"run_start", keys("scan_id", 1), false},
		{"run_start", keys("time", -1, "scan_id", -1), false},
		{"run_stop", keys("run_start", 1), true},
		{"run_stop", keys("uid", 1), true},
		{"event_descriptor", keys("uid", 1), true},
		{"event_descriptor", keys("run_start", -1, "time", -1), false},
		{"event", keys("uid", 1), true},
		{"event", keys("descriptor", -1, "time", 1), false},
	}
	normalizedAssetIndexes = []index{
		{"resource", keys("uid", 1), false},
		{"datum", keys("datum_id", 1), true},
		{"datum", keys("resource", 1), false},
	}
	// embeddedIndexes serve the embedded layout's reads (suitcase-mongo-embedded creates none).
	embeddedIndexes = []index{
		{"header", keys("run_id", 1), true},
		{"header", keys("start.uid", 1), false},
		{"header", keys("start.scan_id", 1), false},
		{"event", keys("descriptor", 1, "last_index", 1), false},
		{"datum", keys("resource", 1, "last_index", 1), false},
	}
)

// createIndexes creates the indexes in list; existing ones are left as they are. It sends
// one createIndexes per index: FerretDB v1.24 drops the connection when one command names
// several indexes that already exist.
func createIndexes(ctx context.Context, cn *conn, list []index) error {
	for _, ix := range list {
		m := mongo.IndexModel{Keys: ix.keys, Options: options.Index().SetUnique(ix.unique)}
		if _, err := cn.db.Collection(ix.coll).Indexes().CreateOne(ctx, m); err != nil {
			return fmt.Errorf("index %s.%s: %w", cn.name, ix.coll, err)
		}
	}
	return nil
}

func insertMany(ctx context.Context, coll *mongo.Collection, docs []any) error {
	for len(docs) > 0 {
		n := min(len(docs), insertBatch)
		if _, err := coll.InsertMany(ctx, docs[:n]); err != nil {
			return fmt.Errorf("insert into %s: %w", coll.Name(), err)
		}
		docs = docs[n:]
	}
	return nil
}

// toBSON converts a generic value for writing: maps become documents with sorted keys,
// *NDArray nested lists, and integers int32 where they fit, as pymongo writes Python ints.
func toBSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		ks := make([]string, 0, len(x))
		for k := range x {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		d := make(bson.D, 0, len(ks))
		for _, k := range ks {
			d = append(d, bson.E{Key: k, Value: toBSON(x[k])})
		}
		return d
	case []any:
		a := make(bson.A, len(x))
		for i, e := range x {
			a[i] = toBSON(e)
		}
		return a
	case *catalog.NDArray:
		return toBSON(x.List())
	case int64:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return int32(x)
		}
		return x
	case int:
		return toBSON(int64(x))
	}
	return v
}

// column returns the n values of a page column: a list, or an array whose first dimension is n.
func column(v any, n int) ([]any, error) {
	switch x := v.(type) {
	case []any:
		if len(x) == n {
			return x, nil
		}
		return nil, fmt.Errorf("column of %d values in a page of %d rows", len(x), n)
	case *catalog.NDArray:
		if len(x.Shape) > 0 && x.Shape[0] == n {
			return x.Rows(), nil
		}
		return nil, fmt.Errorf("array column of shape %v in a page of %d rows", x.Shape, n)
	}
	return nil, fmt.Errorf("want list, have %T", v)
}

// columns returns each column of the map doc[key] (data, timestamps, ...).
func columns(doc map[string]any, key string, n int) (map[string][]any, error) {
	m, _ := doc[key].(map[string]any)
	out := make(map[string][]any, len(m))
	for k, v := range m {
		c, err := column(v, n)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", key, k, err)
		}
		out[k] = c
	}
	return out, nil
}

// row returns the i-th values of columns as a document.
func row(cols map[string][]any, i int) bson.D {
	m := make(map[string]any, len(cols))
	for k, c := range cols {
		m[k] = c[i]
	}
	return toBSON(m).(bson.D)
}

// unpackEventPage splits an event_page into event documents.
func unpackEventPage(doc map[string]any) ([]bson.D, error) {
	desc, _ := doc["descriptor"].(string)
	times, ok := doc["time"].([]any)
	if !ok {
		return nil, errors.New("key \"time\": want list")
	}
	n := len(times)
	seqs, err := column(doc["seq_num"], n)
	if err != nil {
		return nil, fmt.Errorf("seq_num: %w", err)
	}
	uids, _ := doc["uid"].([]any)
	cols := [3]map[string][]any{}
	for i, key := range []string{"data", "timestamps", "filled"} {
		if cols[i], err = columns(doc, key, n); err != nil {
			return nil, err
		}
	}
	out := make([]bson.D, n)
	for i := range out {
		uid := any(noUIDPrefix + newUID())
		if i < len(uids) {
			uid = uids[i]
		}
		out[i] = bson.D{{Key: "uid", Value: uid}, {Key: "descriptor", Value: desc},
			{Key: "time", Value: toBSON(times[i])}, {Key: "seq_num", Value: toBSON(seqs[i])},
			{Key: "data", Value: row(cols[0], i)}, {Key: "timestamps", Value: row(cols[1], i)},
			{Key: "filled", Value: row(cols[2], i)}}
	}
	return out, nil
}

// unpackDatumPage splits a datum_page into datum documents.
func unpackDatumPage(doc map[string]any) ([]bson.D, error) {
	res, _ := doc["resource"].(string)
	ids, ok := doc["datum_id"].([]any)
	if !ok {
		return nil, errors.New("key \"datum_id\": want list")
	}
	kw, err := columns(doc, "datum_kwargs", len(ids))
	if err != nil {
		return nil, err
	}
	out := make([]bson.D, len(ids))
	for i, id := range ids {
		out[i] = bson.D{{Key: "resource", Value: res}, {Key: "datum_id", Value: id}, {Key: "datum_kwargs", Value: row(kw, i)}}
	}
	return out, nil
}

// newUID returns a random (version 4) UUID.
func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
