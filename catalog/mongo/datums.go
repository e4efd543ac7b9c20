package mongo

import (
	"fmt"

	"github.com/brokerfs/brokerfs/catalog"
)

// datumBuilder decodes stored datums (one per document, or columnar datum_page documents)
// into a reused catalog.DatumPage.
type datumBuilder struct {
	p    catalog.DatumPage
	keys map[string]string // interned kwarg names
}

func (d *datumBuilder) reset(resource string) {
	d.p.Resource = resource
	d.p.DatumID = d.p.DatumID[:0]
	if d.p.DatumKwargs == nil {
		d.p.DatumKwargs = map[string][]any{}
		d.keys = map[string]string{}
	}
	for k, col := range d.p.DatumKwargs {
		clear(col) // drop references to the previous page's values
		d.p.DatumKwargs[k] = col[:0]
	}
}

func (d *datumBuilder) key(k []byte) string {
	if s, ok := d.keys[string(k)]; ok {
		return s
	}
	s := string(k)
	d.keys[s] = s
	return s
}

// column returns the kwarg column k padded with nil to row n.
func (d *datumBuilder) column(k []byte, n int) (string, []any) {
	s := d.key(k)
	col := d.p.DatumKwargs[s]
	for len(col) < n {
		col = append(col, nil)
	}
	return s, col
}

// appendDatum appends a datum document ({datum_id, datum_kwargs}).
func (d *datumBuilder) appendDatum(doc []byte) error {
	id, ok := lookup(doc, "datum_id")
	s, isStr := id.StringValueOK()
	if !ok || !isStr {
		return fmt.Errorf("key \"datum_id\": want string")
	}
	n := len(d.p.DatumID)
	d.p.DatumID = append(d.p.DatumID, s)
	kw, _ := lookup(doc, "datum_kwargs")
	kwd, _ := kw.DocumentOK()
	it := newElems(kwd)
	for it.next() {
		v, err := decodeValue(it.val, 0)
		if err != nil {
			return fmt.Errorf("datum_kwargs %q: %w", it.key, err)
		}
		k, col := d.column(it.key, n)
		d.p.DatumKwargs[k] = append(col, v)
	}
	return it.err
}

// appendPage appends a datum_page document ({datum_id: [..], datum_kwargs: {k: [..]}}).
func (d *datumBuilder) appendPage(doc []byte) error {
	ids, ok := lookup(doc, "datum_id")
	arr, isArr := ids.ArrayOK()
	if !ok || !isArr {
		return fmt.Errorf("key \"datum_id\": want array")
	}
	n0 := len(d.p.DatumID)
	for it := newElems(arr); it.next(); {
		s, ok := it.val.StringValueOK()
		if !ok {
			return fmt.Errorf("datum_id: want string, have %s", it.val.Type)
		}
		d.p.DatumID = append(d.p.DatumID, s)
	}
	kw, _ := lookup(doc, "datum_kwargs")
	kwd, _ := kw.DocumentOK()
	it := newElems(kwd)
	for it.next() {
		a, ok := it.val.ArrayOK()
		if !ok {
			return fmt.Errorf("datum_kwargs %q: want array, have %s", it.key, it.val.Type)
		}
		k, col := d.column(it.key, n0)
		for e := newElems(a); e.next(); {
			v, err := decodeValue(e.val, 0)
			if err != nil {
				return fmt.Errorf("datum_kwargs %q: %w", it.key, err)
			}
			col = append(col, v)
		}
		if len(col) != len(d.p.DatumID) {
			return fmt.Errorf("datum_kwargs %q: %d values for %d datums", it.key, len(col)-n0, len(d.p.DatumID)-n0)
		}
		d.p.DatumKwargs[k] = col
	}
	return it.err
}

// page returns the built page: kwarg columns are padded with nil to the page's length, and
// columns this page did not use are dropped.
func (d *datumBuilder) page() *catalog.DatumPage {
	n := len(d.p.DatumID)
	for k, col := range d.p.DatumKwargs {
		if len(col) == 0 {
			delete(d.p.DatumKwargs, k)
			continue
		}
		for len(col) < n {
			col = append(col, nil)
		}
		d.p.DatumKwargs[k] = col
	}
	return &d.p
}
