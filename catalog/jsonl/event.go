package jsonl

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/brokerfs/brokerfs/catalog"
)

// pageRows is how many rows EventPages gathers into one page before calling back: a run written
// one event per line would otherwise cost one callback per event.
const pageRows = 1024

// errReshape means a line's fields differ from the rows already in the page (a field appeared or
// vanished); the page is handed out and the line starts a new one.
var errReshape = errors.New("fields differ from the page's")

// errOtherDescriptor means the line belongs to another descriptor than the decoder's.
var errOtherDescriptor = errors.New("event of another descriptor")

// field is the decoding state of one data key within the current page.
type field struct {
	name   string
	idx    int  // position in eventDecoder.order
	want   bool // data decoded (timestamps and filled always are)
	col    catalog.Column
	ts     []float64
	filled []any
	kept   [3]int // lengths of col, ts and filled after the last line added: what a rollback restores
}

// eventDecoder decodes event and event_page lines straight into columns, with typed appends and
// no intermediate documents, and gathers consecutive lines into one EventPage. Columns, field
// states and the page are reused from one page to the next.
type eventDecoder struct {
	d      decoder
	desc   string   // the descriptor whose events are wanted; "" accepts any
	fields []string // wanted data keys; nil means all
	byName map[string]*field
	order  []*field // in first-seen order, which is the order lines repeat
	time   []float64
	seq    []int64
	rows   int
	page   catalog.EventPage
	counts []int // values in each column of the page being decoded
}

func newEventDecoder(desc string, fields []string) *eventDecoder {
	e := &eventDecoder{desc: desc, fields: fields, byName: make(map[string]*field)}
	e.page.Data = make(map[string]*catalog.Column)
	e.page.Timestamps = make(map[string][]float64)
	e.page.Filled = make(map[string][]any)
	return e
}

// lookup finds the field named key. hint is the position the key had in the last line, which
// is almost always where it is again, so the common case costs one string comparison.
func (e *eventDecoder) lookup(key []byte, hint *int) *field {
	if *hint < len(e.order) {
		if f := e.order[*hint]; f.name == string(key) {
			*hint++
			return f
		}
	}
	f := e.byName[string(key)]
	if f == nil {
		name := string(key)
		f = &field{name: name, idx: len(e.order), want: catalog.Wanted(e.fields, name)}
		e.byName[name] = f
		e.order = append(e.order, f)
	}
	*hint = f.idx + 1
	return f
}

// add decodes the event or event_page document at line[doc:] and appends its rows. On error the
// page is left as it was: errReshape asks the caller to flush and retry, errOtherDescriptor
// to skip the line. Deciding the descriptor while decoding spares a separate pass over lines
// whose descriptor key does not come first.
func (e *eventDecoder) add(line []byte, kind docKind, doc int) (int, error) {
	r0 := e.rows
	e.d.reset(line, doc)
	var err error
	if kind == kindEvent {
		err = e.event()
	} else {
		err = e.eventPage()
	}
	if err == nil {
		err = trailer(line, e.d.i)
	}
	n := len(e.time) - r0
	if err == nil {
		err = e.check(r0, n)
	}
	if err != nil {
		e.rollback(r0)
		return 0, err
	}
	e.rows += n
	for _, f := range e.order {
		f.kept = [3]int{f.col.Len(), len(f.ts), len(f.filled)}
	}
	return n, nil
}

// rollback undoes a line that failed half-way: a field it was the first to carry goes back to
// empty, not to r0 values.
func (e *eventDecoder) rollback(r0 int) {
	e.time, e.seq = cut(e.time, r0), cut(e.seq, r0)
	for _, f := range e.order {
		truncateColumn(&f.col, f.kept[0])
		f.ts = cut(f.ts, f.kept[1])
		clear(f.filled[min(f.kept[2], len(f.filled)):])
		f.filled = cut(f.filled, f.kept[2])
	}
}

// check verifies that every field has a value in each new row, or none in the whole page.
func (e *eventDecoder) check(r0, n int) error {
	if len(e.seq) != r0+n {
		return fmt.Errorf("%d seq_num values for %d times", len(e.seq)-r0, n)
	}
	for _, f := range e.order {
		for _, l := range [3]int{f.col.Len(), len(f.ts), len(f.filled)} {
			if l != 0 && l != r0+n {
				if r0 > 0 {
					return errReshape
				}
				return fmt.Errorf("field %q has %d values in a page of %d rows", f.name, l, n)
			}
		}
	}
	return nil
}

// empty drops every row, keeping capacity.
func (e *eventDecoder) empty() {
	e.time, e.seq, e.rows = e.time[:0], e.seq[:0], 0
	for _, f := range e.order {
		f.col.Reset()
		f.ts = f.ts[:0]
		clear(f.filled)
		f.filled = f.filled[:0]
		f.kept = [3]int{}
	}
}

// cut keeps at most the first n elements of s. A field missing from earlier rows has fewer than
// n; check then sees the difference.
func cut[T any](s []T, n int) []T { return s[:min(n, len(s))] }

// truncateColumn keeps the first n values of c.
func truncateColumn(c *catalog.Column, n int) {
	if n >= c.Len() {
		return
	}
	if n == 0 {
		c.Reset()
		return
	}
	switch c.Kind {
	case catalog.KindInt:
		c.I = c.I[:n]
	case catalog.KindFloat:
		c.F = c.F[:n]
	case catalog.KindBool:
		c.B = c.B[:n]
	case catalog.KindString:
		c.S = c.S[:n]
	case catalog.KindValue:
		clear(c.V[n:])
		c.V = c.V[:n]
	}
}

func (e *eventDecoder) event() error {
	r0 := e.rows
	var t float64
	var seq int64
	var have [4]bool
	err := e.d.members(func(key []byte) error {
		var err error
		switch string(key) {
		case "descriptor":
			err = e.descriptor(have[3])
			have[3] = true
		case "time":
			t, err = e.d.float()
			have[0] = true
		case "seq_num":
			seq, err = e.integer()
			have[1] = true
		case "data":
			have[2] = true
			hint := 0
			return e.d.members(func(key []byte) error {
				f := e.lookup(key, &hint)
				if !f.want {
					return e.d.skip()
				}
				truncateColumn(&f.col, r0) // a repeated key: the last one wins, as in Python
				return e.appendValue(&f.col)
			})
		case "timestamps":
			hint := 0
			return e.d.members(func(key []byte) error {
				f := e.lookup(key, &hint)
				t, err := e.timestamp()
				f.ts = append(cut(f.ts, r0), t)
				return err
			})
		case "filled":
			hint := 0
			return e.d.members(func(key []byte) error {
				f := e.lookup(key, &hint)
				v, err := e.d.value()
				f.filled = append(cut(f.filled, r0), v)
				return err
			})
		default:
			return e.d.skip()
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case !have[0]:
		return errors.New(`missing key "time"`)
	case !have[1]:
		return errors.New(`missing key "seq_num"`)
	case !have[2]:
		return errors.New(`missing key "data"`)
	case !have[3]:
		return errors.New(`missing key "descriptor"`)
	}
	e.time = append(e.time, t)
	e.seq = append(e.seq, seq)
	return nil
}

func (e *eventDecoder) eventPage() error {
	r0 := e.rows
	var have [4]bool
	e.counts = e.counts[:0]
	err := e.d.members(func(key []byte) error {
		switch string(key) {
		case "descriptor":
			err := e.descriptor(have[3])
			have[3] = true
			return err
		case "time":
			have[0] = true
			e.time = cut(e.time, r0)
			return e.d.elements(func() error {
				t, err := e.d.float()
				e.time = append(e.time, t)
				return err
			})
		case "seq_num":
			have[1] = true
			e.seq = cut(e.seq, r0)
			return e.d.elements(func() error {
				s, err := e.integer()
				e.seq = append(e.seq, s)
				return err
			})
		case "data":
			have[2] = true
			hint := 0
			return e.d.members(func(key []byte) error {
				f := e.lookup(key, &hint)
				if !f.want { // counted all the same: classify holds every column to the rows
					n, err := e.skipList()
					e.counts = append(e.counts, n)
					return err
				}
				truncateColumn(&f.col, r0)
				n := f.col.Len()
				err := e.d.elements(func() error { return e.appendValue(&f.col) })
				e.counts = append(e.counts, f.col.Len()-n)
				return err
			})
		case "timestamps":
			hint := 0
			return e.d.members(func(key []byte) error {
				f := e.lookup(key, &hint)
				f.ts = cut(f.ts, r0)
				n := len(f.ts)
				err := e.d.elements(func() error {
					t, err := e.timestamp()
					f.ts = append(f.ts, t)
					return err
				})
				e.counts = append(e.counts, len(f.ts)-n)
				return err
			})
		case "filled":
			hint := 0
			return e.d.members(func(key []byte) error {
				f := e.lookup(key, &hint)
				f.filled = cut(f.filled, r0)
				n := len(f.filled)
				err := e.d.elements(func() error {
					v, err := e.d.value()
					f.filled = append(f.filled, v)
					return err
				})
				e.counts = append(e.counts, len(f.filled)-n)
				return err
			})
		}
		return e.d.skip()
	})
	switch {
	case err != nil:
		return err
	case !have[0]:
		return errors.New(`missing key "time"`)
	case !have[1]:
		return errors.New(`missing key "seq_num"`)
	case !have[2]:
		return errors.New(`missing key "data"`)
	case !have[3]:
		return errors.New(`missing key "descriptor"`)
	}
	rows := len(e.time) - r0
	for _, n := range e.counts {
		if n != rows {
			return fmt.Errorf("column of %d values in a page of %d rows", n, rows)
		}
	}
	return nil
}

// skipList passes over a page column that is not wanted, checking it as classify does (a list,
// its syntax and nesting), and counts its values.
func (e *eventDecoder) skipList() (int, error) {
	d := &e.d
	if d.peek() != '[' {
		return 0, d.errorf("want list")
	}
	end, err := scanValue(d.b, d.i, maxDepth-d.depth)
	if err != nil {
		return 0, err
	}
	n, err := countElements(d.b, d.i)
	d.i = end
	return n, err
}

// descriptor reads the descriptor key, as strictly as classify does (a plain string), and
// checks it unless an earlier one was (the first counts, as in classify).
func (e *eventDecoder) descriptor(seen bool) error {
	d := &e.d
	if d.peek() != '"' {
		return d.errorf(`key "descriptor": want string`)
	}
	end, err := scanString(d.b, d.i)
	if err != nil {
		return err
	}
	uid := d.b[d.i+1 : end-1]
	d.i = end
	switch {
	case bytes.IndexByte(uid, '\\') >= 0:
		return errors.New(`key "descriptor": want plain string`)
	case !seen && e.desc != "" && string(uid) != e.desc:
		return errOtherDescriptor
	}
	return nil
}

func (e *eventDecoder) integer() (int64, error) { return e.d.integer() }

// integer decodes a seq_num: an integer, or a float with an integral value that int64 holds.
func (d *decoder) integer() (int64, error) {
	iv, fv, isInt, err := d.num()
	if err != nil || isInt {
		return iv, err
	}
	if v, ok := catalog.AsInt(fv); ok {
		return v, nil
	}
	return 0, d.errorf("want integer")
}

// timestamp decodes a timestamp; any value but a number (null, mostly) reads as NaN.
func (e *eventDecoder) timestamp() (float64, error) {
	if c := e.d.peek(); isNumStart(c) {
		return e.d.float()
	}
	return math.NaN(), e.d.skip()
}

// appendValue decodes one value into c. Ints and floats stay apart: an int arriving in a float
// column (or the reverse) turns the column into a KindValue column rather than convert, so that
// each row keeps the type it was written with, as one-page-per-document readers give it.
func (e *eventDecoder) appendValue(c *catalog.Column) error {
	d := &e.d
	switch ch := d.peek(); {
	case ch == '"':
		s, err := d.str()
		if err == nil {
			c.AppendString(s)
		}
		return err
	case ch == 't' || ch == 'f':
		word := "false"
		if ch == 't' {
			word = "true"
		}
		err := d.literal(word)
		if err == nil {
			c.AppendBool(ch == 't')
		}
		return err
	case isNumStart(ch):
		iv, fv, isInt, err := d.num()
		switch {
		case err != nil:
		case isInt && c.Kind == catalog.KindFloat:
			c.AppendValue(iv)
		case isInt:
			c.AppendInt(iv)
		case c.Kind == catalog.KindInt:
			c.AppendValue(fv)
		default:
			c.AppendFloat(fv)
		}
		return err
	case ch == '[':
		if a := d.pack(); a != nil {
			c.AppendValue(a)
			return nil
		}
	}
	v, err := d.value()
	if err == nil {
		c.AppendValue(v)
	}
	return err
}

// flush hands the gathered rows to fn as one page whose first row is firstRow, then empties
// the decoder for the next page.
func (e *eventDecoder) flush(desc string, firstRow int, fn func(*catalog.EventPage) error) error {
	if e.rows == 0 {
		return nil
	}
	p := &e.page
	p.Descriptor, p.FirstRow, p.Time, p.SeqNum = desc, firstRow, e.time, e.seq
	clear(p.Data)
	clear(p.Timestamps)
	clear(p.Filled)
	for _, f := range e.order {
		if f.want && f.col.Len() == e.rows {
			p.Data[f.name] = &f.col
		}
		if len(f.ts) == e.rows {
			p.Timestamps[f.name] = f.ts
		}
		if len(f.filled) == e.rows {
			p.Filled[f.name] = f.filled
		}
	}
	err := fn(p)
	e.empty()
	return err
}
