package mongo

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/brokerfs/brokerfs/catalog"
)

// embeddedPageBytes is about where suitcase-mongo-embedded closes an event or datum page.
const embeddedPageBytes = 5_000_000

// InsertRunEmbedded writes one run's documents (start first) in the embedded layout to the
// database uri names: a header holding the start, stop, descriptors and resources, and
// columnar pages in event and datum. Each event_page or datum_page document becomes one page;
// runs of single events (or datums) are gathered into pages of up to about 5 MB, as
// suitcase-mongo-embedded does. To write many runs, use a Writer.
func InsertRunEmbedded(ctx context.Context, uri string, docs []catalog.Document) error {
	w, err := NewEmbeddedWriter(ctx, uri)
	if err != nil {
		return err
	}
	defer w.Close()
	return w.Insert(ctx, docs)
}

func (w *Writer) insertEmbedded(ctx context.Context, docs []catalog.Document) error {
	header, events, datums, err := embeddedDocs(docs)
	if err != nil {
		return fmt.Errorf("insert run: %w", err)
	}
	// The header goes last, so that readers never see a run whose pages are missing.
	for _, step := range []struct {
		coll string
		docs []any
	}{{"datum", anys(datums)}, {"event", anys(events)}, {"header", []any{header}}} {
		if err := insertMany(ctx, w.mds.db.Collection(step.coll), step.docs); err != nil {
			return fmt.Errorf("insert run into %s: %w", w.mds.name, err)
		}
	}
	return nil
}

func anys(docs []bson.D) []any {
	out := make([]any, len(docs))
	for i, d := range docs {
		out[i] = d
	}
	return out
}

// embPage is a columnar page being gathered: an event_page (stream = descriptor, ids =
// event uids) or a datum_page (stream = resource, ids = datum ids).
type embPage struct {
	stream string
	ids    []any
	time   []any
	seq    []any
	cols   map[string]map[string][]any // data/timestamps/filled or datum_kwargs -> field -> values
	first  int
	rows   int
	bytes  int
	single bool // gathered from single documents, so later ones may join
}

// embeddedDocs lays a run out in the embedded layout.
func embeddedDocs(docs []catalog.Document) (header bson.D, events, datums []bson.D, err error) {
	if len(docs) == 0 || docs[0].Name != "start" {
		return nil, nil, nil, errors.New("the documents do not begin with a start document")
	}
	uid, _ := docs[0].Doc["uid"].(string)
	var stop any
	var descs, res bson.A
	var evPages, dPages []*embPage
	open := map[string]*embPage{} // "event "+descriptor or "datum "+resource -> page open to single docs
	rows := map[string]int{}      // same keys -> rows written
	var order []string            // descriptor uids in order of appearance
	add := func(kind, stream string, p *embPage) {
		key := kind + " " + stream
		if prev := open[key]; prev != nil && p.single && prev.bytes+p.bytes < embeddedPageBytes && sameKeys(prev, p) {
			prev.merge(p)
			rows[key] += p.rows
			return
		}
		if _, seen := rows[key]; !seen && kind == "event" {
			order = append(order, stream)
		}
		p.first = rows[key]
		rows[key] += p.rows
		if kind == "event" {
			evPages = append(evPages, p)
		} else {
			dPages = append(dPages, p)
		}
		open[key] = nil
		if p.single {
			open[key] = p
		}
	}
	for i, d := range docs {
		switch d.Name {
		case "start":
			if i > 0 {
				err = errors.New("a second start document")
			}
		case "stop":
			stop = toBSON(d.Doc)
		case "descriptor":
			descs = append(descs, toBSON(d.Doc))
		case "resource":
			res = append(res, toBSON(d.Doc))
		case "event", "event_page":
			var p *embPage
			if p, err = eventPage(d); err == nil {
				add("event", p.stream, p)
			}
		case "datum", "datum_page":
			var p *embPage
			if p, err = datumPage(d); err == nil {
				add("datum", p.stream, p)
			}
		default:
			err = fmt.Errorf("unknown document name %q", d.Name)
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("document %d (%s): %w", i, d.Name, err)
		}
	}
	header = bson.D{{Key: "run_id", Value: uid}, {Key: "start", Value: bson.A{toBSON(docs[0].Doc)}}}
	if descs != nil {
		header = append(header, bson.E{Key: "descriptors", Value: descs})
	}
	if res != nil {
		header = append(header, bson.E{Key: "resources", Value: res})
	}
	total, dtotal := 0, 0
	for _, desc := range order {
		n := rows["event "+desc]
		total += n
		header = append(header, bson.E{Key: "count_" + desc, Value: int64(n)})
	}
	for _, p := range dPages {
		dtotal += p.rows
	}
	header = append(header, bson.E{Key: "event_count", Value: int64(total)}, bson.E{Key: "datum_count", Value: int64(dtotal)})
	if stop != nil {
		header = append(header, bson.E{Key: "stop", Value: bson.A{stop}})
	}
	for _, p := range evPages {
		events = append(events, p.eventDoc())
	}
	for _, p := range dPages {
		datums = append(datums, p.datumDoc())
	}
	return header, events, datums, nil
}

// eventPage reads an event or event_page document as a page.
func eventPage(d catalog.Document) (*embPage, error) {
	desc, ok := d.Doc["descriptor"].(string)
	if !ok {
		return nil, errors.New("key \"descriptor\": want string")
	}
	p := &embPage{stream: desc, cols: map[string]map[string][]any{}, single: d.Name == "event"}
	if p.single {
		p.ids, p.time, p.seq, p.rows = []any{d.Doc["uid"]}, []any{d.Doc["time"]}, []any{d.Doc["seq_num"]}, 1
		for _, key := range []string{"data", "timestamps", "filled"} {
			m, _ := d.Doc[key].(map[string]any)
			p.cols[key] = map[string][]any{}
			for k, v := range m {
				p.cols[key][k] = []any{v}
			}
		}
	} else {
		times, ok := d.Doc["time"].([]any)
		if !ok {
			return nil, errors.New("key \"time\": want list")
		}
		p.rows, p.time = len(times), times
		var err error
		if p.seq, err = column(d.Doc["seq_num"], p.rows); err != nil {
			return nil, fmt.Errorf("seq_num: %w", err)
		}
		p.ids, _ = d.Doc["uid"].([]any)
		for _, key := range []string{"data", "timestamps", "filled"} {
			if p.cols[key], err = columns(d.Doc, key, p.rows); err != nil {
				return nil, err
			}
		}
	}
	p.bytes = sizeOf(d.Doc)
	return p, nil
}

// datumPage reads a datum or datum_page document as a page.
func datumPage(d catalog.Document) (*embPage, error) {
	res, ok := d.Doc["resource"].(string)
	if !ok {
		return nil, errors.New("key \"resource\": want string")
	}
	p := &embPage{stream: res, cols: map[string]map[string][]any{"datum_kwargs": {}}, single: d.Name == "datum"}
	if p.single {
		p.ids, p.rows = []any{d.Doc["datum_id"]}, 1
		m, _ := d.Doc["datum_kwargs"].(map[string]any)
		for k, v := range m {
			p.cols["datum_kwargs"][k] = []any{v}
		}
	} else {
		ids, ok := d.Doc["datum_id"].([]any)
		if !ok {
			return nil, errors.New("key \"datum_id\": want list")
		}
		p.ids, p.rows = ids, len(ids)
		var err error
		if p.cols["datum_kwargs"], err = columns(d.Doc, "datum_kwargs", p.rows); err != nil {
			return nil, err
		}
	}
	p.bytes = sizeOf(d.Doc)
	return p, nil
}

// sameKeys reports whether two pages have the same columns, so that merging keeps every
// column as long as the page.
func sameKeys(a, b *embPage) bool {
	if len(a.cols) != len(b.cols) {
		return false
	}
	for key, m := range a.cols {
		n := b.cols[key]
		if len(m) != len(n) {
			return false
		}
		for k := range m {
			if _, ok := n[k]; !ok {
				return false
			}
		}
	}
	return true
}

func (p *embPage) merge(q *embPage) {
	p.ids, p.time, p.seq = append(p.ids, q.ids...), append(p.time, q.time...), append(p.seq, q.seq...)
	for key, m := range q.cols {
		for k, v := range m {
			p.cols[key][k] = append(p.cols[key][k], v...)
		}
	}
	p.rows += q.rows
	p.bytes += q.bytes
}

func (p *embPage) colsDoc(key string) bson.D {
	m := p.cols[key]
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	d := bson.D{}
	for _, k := range ks {
		d = append(d, bson.E{Key: k, Value: toBSON(m[k])})
	}
	return d
}

func (p *embPage) indexes() bson.D {
	return bson.D{{Key: "size", Value: int64(p.bytes)}, {Key: "first_index", Value: int64(p.first)}, {Key: "last_index", Value: int64(p.first + p.rows - 1)}}
}

func (p *embPage) eventDoc() bson.D {
	// The uids as given, even when a page has none: suitcase does the same.
	d := bson.D{{Key: "descriptor", Value: p.stream}, {Key: "uid", Value: toBSON(p.ids)},
		{Key: "time", Value: toBSON(p.time)}, {Key: "seq_num", Value: toBSON(p.seq)},
		{Key: "data", Value: p.colsDoc("data")}, {Key: "timestamps", Value: p.colsDoc("timestamps")},
		{Key: "filled", Value: p.colsDoc("filled")}}
	return append(d, p.indexes()...)
}

func (p *embPage) datumDoc() bson.D {
	d := bson.D{{Key: "resource", Value: p.stream}, {Key: "datum_id", Value: toBSON(p.ids)},
		{Key: "datum_kwargs", Value: p.colsDoc("datum_kwargs")}}
	return append(d, p.indexes()...)
}

// sizeOf estimates the BSON size of a generic value.
func sizeOf(v any) int {
	switch x := v.(type) {
	case string:
		return len(x) + 8
	case map[string]any:
		n := 5
		for k, e := range x {
			n += len(k) + 2 + sizeOf(e)
		}
		return n
	case []any:
		n := 5
		for _, e := range x {
			n += 4 + sizeOf(e)
		}
		return n
	case *catalog.NDArray:
		return 5 + x.Len()*12
	}
	return 9
}
