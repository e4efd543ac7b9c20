package mongo

import (
	"context"
	"slices"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/mongo/mongotest"
)

// FerretDB refuses nested arrays, and the embedded layout stores every array field as a
// column of arrays: such runs cannot be written to it. The embedded contract test therefore
// serves those runs from memStore, which holds the very BSON documents InsertRunEmbedded would
// write and answers the layout's three queries in Go, through the same embRun code. Every
// other run goes through the server.
const ferretNestedArrays = "nested arrays are not supported"

// memStore is the embedded layout held as BSON in memory.
type memStore struct {
	headers map[string]bson.Raw
	events  []bson.Raw
	datums  []bson.Raw
}

func newMemStore() *memStore { return &memStore{headers: map[string]bson.Raw{}} }

// add lays a run out as InsertRunEmbedded does and keeps its documents.
func (m *memStore) add(t testing.TB, docs []catalog.Document) {
	t.Helper()
	header, events, datums, err := embeddedDocs(docs)
	if err != nil {
		t.Fatal(err)
	}
	raw := func(d bson.D) bson.Raw {
		b, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	m.headers[docs[0].Doc["uid"].(string)] = raw(header)
	for _, d := range events {
		m.events = append(m.events, raw(d))
	}
	for _, d := range datums {
		m.datums = append(m.datums, raw(d))
	}
}

func (m *memStore) header(_ context.Context, uid string) (bson.Raw, error) {
	if h, ok := m.headers[uid]; ok {
		return h, nil
	}
	return nil, mongo.ErrNoDocuments
}

// pages returns the documents whose key equals value and whose rows overlap [from, to), by
// last_index.
func pages(docs []bson.Raw, key, value string, from, to int) cursor {
	var out []bson.Raw
	for _, d := range docs {
		first, _ := asInt(field(d, "first_index"))
		last, _ := asInt(field(d, "last_index"))
		if d.Lookup(key).StringValue() == value && int(last) >= from && (to < 0 || int(first) < to) {
			out = append(out, d)
		}
	}
	slices.SortStableFunc(out, func(a, b bson.Raw) int {
		x, _ := asInt(field(a, "last_index"))
		y, _ := asInt(field(b, "last_index"))
		return int(x - y)
	})
	return &sliceCursor{docs: out, i: -1}
}

func field(doc bson.Raw, key string) bsoncore.Value {
	v, _ := lookup(doc, key)
	return v
}

func (m *memStore) eventPages(_ context.Context, descriptor string, from, to int, _ bson.D) (cursor, error) {
	return pages(m.events, "descriptor", descriptor, from, to), nil
}

func (m *memStore) datumPages(_ context.Context, resource string) (cursor, error) {
	return pages(m.datums, "resource", resource, 0, -1), nil
}

// sliceCursor is a cursor over documents in memory, all in one batch.
type sliceCursor struct {
	docs []bson.Raw
	i    int
}

func (c *sliceCursor) Next(context.Context) bool   { c.i++; return c.i < len(c.docs) }
func (c *sliceCursor) Current() bson.Raw           { return c.docs[c.i] }
func (c *sliceCursor) RemainingBatchLength() int   { return len(c.docs) - c.i - 1 }
func (c *sliceCursor) Err() error                  { return nil }
func (c *sliceCursor) Close(context.Context) error { return nil }

// unionCatalog is the server's embedded catalog plus runs held in a memStore.
type unionCatalog struct {
	*Catalog
	mem *memStore
}

func (u *unionCatalog) Runs(ctx context.Context) ([]*catalog.Start, error) {
	starts, err := u.Catalog.Runs(ctx)
	if err != nil {
		return nil, err
	}
	for _, h := range u.mem.headers {
		s, err := u.startOf(h)
		if err != nil {
			return nil, err
		}
		starts = append(starts, s)
	}
	return starts, nil
}

func (u *unionCatalog) Run(ctx context.Context, uid string) (catalog.Run, error) {
	if h, ok := u.mem.headers[uid]; ok {
		return newEmbRun(u.Catalog, u.mem, h)
	}
	return u.Catalog.Run(ctx, uid)
}

func TestEmbeddedContract(t *testing.T) {
	srv := mongotest.Start(t)
	catalogtest.Suite(t, func(t *testing.T, runs [][]catalog.Document) catalog.Catalog {
		ctx := context.Background()
		uri := srv.URI("embedded")
		mem := newMemStore()
		for _, r := range runs {
			err := InsertRunEmbedded(ctx, uri, r)
			if err != nil && strings.Contains(err.Error(), ferretNestedArrays) {
				t.Logf("FerretDB refuses run %s (%v): serving it from memory", r[0].Doc["uid"], err)
				mem.add(t, r)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(mem.headers) > 1 {
			t.Errorf("FerretDB refused %d runs, want only the one with array fields", len(mem.headers))
		}
		c, err := OpenEmbedded(ctx, uri, Options{PageSize: 200})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return &unionCatalog{Catalog: c, mem: mem}
	})
}

// TestEmbeddedMemoryContract runs the contract over the BSON documents of the embedded layout
// alone, every fixture included.
func TestEmbeddedMemoryContract(t *testing.T) {
	catalogtest.Suite(t, func(t *testing.T, runs [][]catalog.Document) catalog.Catalog {
		mem := newMemStore()
		for _, r := range runs {
			mem.add(t, r)
		}
		c := &Catalog{opts: Options{}.withDefaults(), prefix: "start.", name: "memory"}
		return &memCatalog{unionCatalog{Catalog: c, mem: mem}}
	})
}

// memCatalog is a unionCatalog without a server.
type memCatalog struct{ unionCatalog }

func (m *memCatalog) Runs(context.Context) ([]*catalog.Start, error) {
	var out []*catalog.Start
	for _, h := range m.mem.headers {
		s, err := m.startOf(h)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (m *memCatalog) Run(ctx context.Context, uid string) (catalog.Run, error) {
	if h, ok := m.mem.headers[uid]; ok {
		return newEmbRun(m.Catalog, m.mem, h)
	}
	return nil, catalog.ErrNotFound
}

func (m *memCatalog) Close() error { return nil }
