package msgpack

// The event decoder: event and event_page documents straight from msgpack bytes into a
// reused catalog.EventPage. A file of a million single-row pages is the case it is built for,
// so the steady state allocates nothing: map keys are looked up without converting them to
// strings, columns and timestamp slices are reused in place, and the page's maps are written
// only when their set of keys changes.

import (
	"errors"
	"fmt"
	"math"

	"github.com/brokerfs/brokerfs/catalog"
)

// invalidError is a document that is valid msgpack but not a valid event-model document:
// missing keys or keys of the wrong type. It is skipped (and logged once, by the index).
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// keyError turns a wire error about the value of key into a document error; short and
// corrupt data pass through.
func keyError(key string, err error) error {
	if isTypeError(err) {
		return invalid("key %q: %v", key, err)
	}
	return err
}

// columnError is a page column whose length is not the page's: the whole EventPages call fails.
type columnError struct{ msg string }

func (e *columnError) Error() string { return e.msg }

// evHeader is where an event or event_page document keeps its parts: positions of the values
// in the document's bytes, -1 when absent.
type evHeader struct {
	single                      bool // an event, not an event_page
	desc                        []byte
	time, seq, data, ts, filled int
	rows, end                   int
	other                       bool  // the document belongs to another descriptor
	decoded                     uint8 // body parts decoded: 1 data, 2 timestamps, 4 filled
	body                        bool  // data, timestamps and filled are in the page
	bodyErr                     error // why they could not be: the read fails
}

// scanEvent walks the event document map at pos and checks what every reader needs: a
// descriptor uid, times and seq_nums (decoded into d.page), and a data map. The index and
// EventPages both call it, so they agree on which documents count and how many rows each has.
//
// With d.desc set, a document of another descriptor is only walked over, and the data,
// timestamps and filled values of one with more than skipRows rows are decoded into the page
// as the walk reaches them, so that each byte is read once. A document whose header is bad
// returns an *invalidError, whatever its body.
func (d *pageDecoder) scanEvent(b []byte, pos int, single bool, h *evHeader, skipRows int) error {
	*h = evHeader{single: single, time: -1, seq: -1, data: -1, ts: -1, filled: -1, rows: -1}
	p := &d.page
	p.Time, p.SeqNum = p.Time[:0], p.SeqNum[:0]
	n, pos, err := mapLen(b, pos)
	if err != nil {
		return keyError("document", err)
	}
	if d.desc != "" {
		d.begin()
	}
	var bad error // the first header problem; the walk goes on to find the document's end
	desc := -1
	for range n {
		var k []byte
		if pos < len(b) && isStr(b[pos]) {
			if k, pos, err = keyStr(b, pos); err != nil {
				return err
			}
		} else if pos, err = skip(b, pos); err != nil {
			return err
		}
		// Each case leaves end at the end of the value when it read the value whole.
		end := -1
		switch string(k) {
		case "descriptor":
			desc = pos
			if pos < len(b) && isStr(b[pos]) {
				var v []byte
				if v, end, err = str(b, pos); err != nil {
					return err
				}
				h.other = d.desc != "" && string(v) != d.desc
			}
		case "time":
			h.time = pos
			if bad == nil {
				if end, bad = d.times(b, h); bad == nil && h.seq >= 0 {
					_, bad = d.seqNums(b, h)
				}
			}
		case "seq_num":
			h.seq = pos
			if bad == nil && h.rows >= 0 {
				end, bad = d.seqNums(b, h)
			}
		case "data":
			h.data = pos
		case "timestamps":
			h.ts = pos
		case "filled":
			h.filled = pos
		}
		if (pos == h.data || pos == h.ts || pos == h.filled) && d.wantBody(h, bad, skipRows) {
			end, err = d.part(b, h, pos)
		}
		if end < 0 || bad != nil {
			end, err = skip(b, pos)
		}
		if err != nil {
			return err
		}
		pos = end
	}
	h.end = pos
	switch {
	case bad != nil:
		return bad
	case desc < 0:
		return invalid("missing key %q", "descriptor")
	case h.time < 0:
		return invalid("missing key %q", "time")
	case h.seq < 0:
		return invalid("missing key %q", "seq_num")
	case h.data < 0:
		return invalid("missing key %q", "data")
	case !isMap(b[h.data]):
		return invalid("key \"data\": want map, have %s", typeName(b, h.data))
	}
	if h.desc, _, err = str(b, desc); err != nil {
		return keyError("descriptor", err)
	}
	if d.desc == "" || h.other || h.rows <= skipRows {
		return nil
	}
	// Parts that came before the descriptor or the times: decode them now.
	for i, at := range [...]int{h.data, h.ts, h.filled} {
		if at >= 0 && h.decoded&(1<<i) == 0 && h.bodyErr == nil {
			if _, err := d.part(b, h, at); err != nil {
				return err
			}
		}
	}
	h.body = h.bodyErr == nil
	if h.body {
		d.finish()
	}
	return nil
}

// wantBody reports whether a body part the walk has reached is to be decoded now: the
// document is of the wanted descriptor, its header is good so far and its rows are known
// and wanted.
func (d *pageDecoder) wantBody(h *evHeader, bad error, skipRows int) bool {
	return d.desc != "" && bad == nil && h.rows > skipRows && h.bodyErr == nil && !h.other
}

// part decodes the data, timestamps or filled value at pos into the page and returns the
// position after it. A column that does not fit the page is kept in h.bodyErr and walked over.
func (d *pageDecoder) part(b []byte, h *evHeader, pos int) (int, error) {
	if pos >= len(b) {
		return pos, errShort
	}
	if !isMap(b[pos]) {
		// Data that is not a map fails the header check; timestamps or filled that are not
		// maps are ignored, as catalog.AppendEvent ignores them.
		return skip(b, pos)
	}
	var end int
	var err error
	switch pos {
	case h.data:
		h.decoded |= 1
		end, err = d.decodeData(b, pos, h)
	case h.ts:
		h.decoded |= 2
		end, err = d.decodeTimestamps(b, pos, h)
	default:
		h.decoded |= 4
		end, err = d.decodeFilled(b, pos, h)
	}
	if err == nil || errors.Is(err, errShort) || isCorrupt(err) {
		return end, err
	}
	h.bodyErr = err
	return skip(b, pos)
}

// times decodes the time value at h.time into the page, sets h.rows and returns the
// position after the value.
func (d *pageDecoder) times(b []byte, h *evHeader) (end int, err error) {
	p := &d.page
	if h.single {
		var t float64
		if t, end, err = float(b, h.time); err == nil {
			p.Time, h.rows = append(p.Time, t), 1
		}
	} else if p.Time, end, err = floatColumn(b, h.time, -1, p.Time, true); err == nil {
		h.rows = len(p.Time)
	}
	return end, keyError("time", err)
}

// seqNums decodes the seq_num value at h.seq into the page, once h.rows is known, and
// returns the position after the value.
func (d *pageDecoder) seqNums(b []byte, h *evHeader) (end int, err error) {
	p := &d.page
	if h.single {
		var s int64
		if s, end, err = integer(b, h.seq); err == nil {
			p.SeqNum = append(p.SeqNum, s)
		}
	} else {
		p.SeqNum, end, err = intColumn(b, h.seq, h.rows, p.SeqNum)
	}
	return end, keyError("seq_num", err)
}

// floatColumn appends a page column of numbers (a list or a numpy array) to dst and returns
// the position after it. rows < 0 accepts any length. strict rejects non-numbers (times);
// otherwise they read as catalog.AsFloat does: nil as NaN, anything else as 0 (timestamps).
func floatColumn(b []byte, pos, rows int, dst []float64, strict bool) ([]float64, int, error) {
	if pos < len(b) && isMap(b[pos]) {
		return ndColumn(b, pos, rows, dst, func(dst []float64, v any) ([]float64, bool) {
			f, ok := catalog.AsFloat(v)
			return append(dst, f), ok || !strict
		})
	}
	n, pos, err := arrayLen(b, pos)
	if err != nil {
		return dst, pos, err
	}
	if rows >= 0 && n != rows {
		return dst, pos, &columnError{fmt.Sprintf("column of %d values in a page of %d rows", n, rows)}
	}
	if n > len(b)-pos {
		return dst, pos, errShort
	}
	for range n {
		var f float64
		if strict {
			f, pos, err = float(b, pos)
		} else {
			f, pos, err = tsValue(b, pos)
		}
		if err != nil {
			return dst, pos, err
		}
		dst = append(dst, f)
	}
	return dst, pos, nil
}

// intColumn appends a column of rows integers (seq_num) to dst and returns the position
// after it.
func intColumn(b []byte, pos, rows int, dst []int64) ([]int64, int, error) {
	if pos < len(b) && isMap(b[pos]) {
		var out []float64
		out, end, err := ndColumn(b, pos, rows, out, func(dst []float64, v any) ([]float64, bool) {
			i, ok := catalog.AsInt(v)
			return append(dst, float64(i)), ok
		})
		for _, f := range out {
			dst = append(dst, int64(f))
		}
		return dst, end, err
	}
	n, pos, err := arrayLen(b, pos)
	if err != nil {
		return dst, pos, err
	}
	if n != rows {
		return dst, pos, &typeError{what: fmt.Sprintf("list of %d", rows), have: fmt.Sprintf("list of %d", n)}
	}
	for range n {
		i, next, err := integer(b, pos)
		if err != nil {
			return dst, pos, err
		}
		dst, pos = append(dst, i), next
	}
	return dst, pos, nil
}

// ndColumn appends the elements of a one-dimensional numpy array column through add. Pages
// written from numpy keep whole columns as one array; they are rare, so this is not fast.
func ndColumn(b []byte, pos, rows int, dst []float64, add func([]float64, any) ([]float64, bool)) ([]float64, int, error) {
	var h ndHeader
	ok, err := parseNumpy(b, pos, &h)
	if err != nil {
		return dst, pos, err
	}
	if !ok {
		return dst, pos, &typeError{what: "list", have: "map"}
	}
	v, isArr := ndValue(&h, true)
	a, _ := v.(*catalog.NDArray)
	if !isArr || a == nil || len(a.Shape) != 1 {
		return dst, pos, &typeError{what: "list", have: "array"}
	}
	if rows >= 0 && a.Shape[0] != rows {
		return dst, pos, &columnError{fmt.Sprintf("array column of shape %v in a page of %d rows", a.Shape, rows)}
	}
	for _, e := range a.List().([]any) {
		if dst, ok = add(dst, e); !ok {
			return dst, pos, &typeError{what: "number", have: fmt.Sprintf("%T", e)}
		}
	}
	return dst, h.end, nil
}

// slot is one key of a page map as the decoder tracks it.
type slot struct {
	key    string
	gen    uint32 // the page that last wrote it
	inMap  bool   // present in the page's map
	wanted bool   // data: among the fields asked for
	col    *catalog.Column
	last   string // data: the last string value, shared when it repeats
	ts     []float64
	filled []any
}

// slots is the set of keys of one page map (data, timestamps or filled). Documents nearly
// always list keys in the same order, so the i-th key is looked for at position i first.
type slots struct {
	list   []slot
	byKey  map[string]int
	inMap  int // slots present in the page map
	active int // slots written by the current page
}

func (s *slots) find(k []byte, hint int) (*slot, bool) {
	if hint < len(s.list) && s.list[hint].key == string(k) {
		return &s.list[hint], true
	}
	if i, ok := s.byKey[string(k)]; ok {
		return &s.list[i], true
	}
	return nil, false
}

func (s *slots) add(k []byte) *slot {
	if s.byKey == nil {
		s.byKey = make(map[string]int)
	}
	key := string(k)
	s.byKey[key] = len(s.list)
	s.list = append(s.list, slot{key: key})
	return &s.list[len(s.list)-1]
}

// touch marks a slot as written by page gen, reporting whether it was already.
func (s *slots) touch(sl *slot, gen uint32) bool {
	if sl.gen == gen {
		return true
	}
	sl.gen = gen
	s.active++
	return false
}

// pageDecoder decodes the event documents of one descriptor into a reused page. With no
// descriptor (the index's), it checks headers only.
type pageDecoder struct {
	desc   string
	fields []string
	page   catalog.EventPage
	gen    uint32
	data   slots
	ts     slots
	filled slots
}

func newPageDecoder(desc string, fields []string) *pageDecoder {
	d := &pageDecoder{desc: desc, fields: fields}
	d.page.Reset(desc, 0)
	return d
}

// begin starts a page: slots written from now on belong to it.
func (d *pageDecoder) begin() {
	p := &d.page
	if len(p.Data) != d.data.inMap || len(p.Timestamps) != d.ts.inMap || len(p.Filled) != d.filled.inMap {
		// The callback changed the page's maps behind our back: start them afresh.
		p.Data = make(map[string]*catalog.Column)
		p.Timestamps = make(map[string][]float64)
		p.Filled = make(map[string][]any)
		for _, s := range []*slots{&d.data, &d.ts, &d.filled} {
			for i := range s.list {
				s.list[i].inMap = false
			}
			s.inMap = 0
		}
	}
	d.gen++
	d.data.active, d.ts.active, d.filled.active = 0, 0, 0
}

// decodeData decodes the data map at pos into the page's columns.
func (d *pageDecoder) decodeData(b []byte, pos int, h *evHeader) (int, error) {
	n, pos, err := mapLen(b, pos)
	if err != nil {
		return pos, err
	}
	for i := range n {
		var k []byte
		if k, pos, err = keyStr(b, pos); err != nil {
			if !isTypeError(err) {
				return pos, err
			}
			// A key that is not a string cannot name a data key: pass over it.
			if pos, err = skip(b, pos); err == nil {
				pos, err = skip(b, pos)
			}
			if err != nil {
				return pos, err
			}
			continue
		}
		s, ok := d.data.find(k, i)
		if !ok {
			s = d.data.add(k)
			s.wanted = catalog.Wanted(d.fields, s.key)
			if s.wanted {
				s.col = &catalog.Column{}
			}
		}
		if !s.wanted {
			if !h.single {
				if err = checkColumn(b, pos, h.rows); err != nil {
					return pos, fmt.Errorf("data %q: %w", s.key, err)
				}
			}
			if pos, err = skip(b, pos); err != nil {
				return pos, err
			}
			continue
		}
		d.data.touch(s, d.gen)
		s.col.Reset()
		if !s.inMap {
			d.page.Data[s.key] = s.col
			s.inMap = true
			d.data.inMap++
		}
		if h.single {
			pos, err = d.cell(s, b, pos)
		} else {
			pos, err = d.column(s, b, pos, h.rows)
		}
		if err != nil {
			return pos, fmt.Errorf("data %q: %w", s.key, err)
		}
	}
	return pos, nil
}

// checkColumn checks the length of a page column that is not decoded.
func checkColumn(b []byte, pos, rows int) error {
	if pos < len(b) && isMap(b[pos]) {
		var h ndHeader
		ok, err := parseNumpy(b, pos, &h)
		if err != nil {
			return err
		}
		if !ok || !h.nd || h.ndim == 0 || h.shape[0] != rows {
			return &columnError{fmt.Sprintf("array column in a page of %d rows", rows)}
		}
		return nil
	}
	n, _, err := arrayLen(b, pos)
	if err != nil {
		return &columnError{fmt.Sprintf("want list, have %s", typeName(b, pos))}
	}
	if n != rows {
		return &columnError{fmt.Sprintf("column of %d values in a page of %d rows", n, rows)}
	}
	return nil
}

// decodeTimestamps decodes the timestamps map at pos into the page.
func (d *pageDecoder) decodeTimestamps(b []byte, pos int, h *evHeader) (int, error) {
	n, pos, err := mapLen(b, pos)
	if err != nil {
		return pos, err
	}
	for i := range n {
		var k []byte
		if k, pos, err = keyStr(b, pos); err != nil {
			if pos, err = skipPair(b, pos, err); err != nil {
				return pos, err
			}
			continue
		}
		s, ok := d.ts.find(k, i)
		if !ok {
			s = d.ts.add(k)
		}
		d.ts.touch(s, d.gen)
		vals := s.ts[:0]
		if h.single {
			var f float64
			if f, pos, err = tsValue(b, pos); err != nil {
				return pos, err
			}
			vals = append(vals, f)
		} else {
			if vals, pos, err = floatColumn(b, pos, h.rows, vals, false); err != nil {
				return pos, fmt.Errorf("timestamps %q: %w", s.key, asColumnError(err))
			}
		}
		// The map holds s.ts; when vals still has its array and length, the map already
		// sees the new values and needs no write.
		if !s.inMap || len(vals) != len(s.ts) || (len(vals) > 0 && &vals[0] != &s.ts[0]) {
			d.page.Timestamps[s.key] = vals
			if !s.inMap {
				s.inMap = true
				d.ts.inMap++
			}
		}
		s.ts = vals
	}
	return pos, nil
}

// tsValue reads one timestamp as catalog.AsFloat would: nil is NaN, other non-numbers 0.
func tsValue(b []byte, pos int) (float64, int, error) {
	f, next, err := float(b, pos)
	if err == nil || !isTypeError(err) {
		return f, next, err
	}
	if next, err = skip(b, pos); err != nil {
		return 0, pos, err
	}
	if b[pos] == 0xc0 {
		return math.NaN(), next, nil
	}
	return 0, next, nil
}

// decodeFilled decodes the filled map at pos into the page.
func (d *pageDecoder) decodeFilled(b []byte, pos int, h *evHeader) (int, error) {
	n, pos, err := mapLen(b, pos)
	if err != nil {
		return pos, err
	}
	for i := range n {
		var k []byte
		if k, pos, err = keyStr(b, pos); err != nil {
			if pos, err = skipPair(b, pos, err); err != nil {
				return pos, err
			}
			continue
		}
		s, ok := d.filled.find(k, i)
		if !ok {
			s = d.filled.add(k)
		}
		d.filled.touch(s, d.gen)
		vals := s.filled[:0]
		if vals, pos, err = filledColumn(b, pos, h, vals); err != nil {
			return pos, fmt.Errorf("filled %q: %w", s.key, err)
		}
		if !s.inMap || len(vals) != len(s.filled) || (len(vals) > 0 && &vals[0] != &s.filled[0]) {
			d.page.Filled[s.key] = vals
			if !s.inMap {
				s.inMap = true
				d.filled.inMap++
			}
		}
		s.filled = vals
	}
	return pos, nil
}

// filledColumn appends a document's filled values for one key to dst: one value for an
// event, a column (a list or a numpy array) for a page. false, the usual value, costs no
// allocation.
func filledColumn(b []byte, pos int, h *evHeader, dst []any) ([]any, int, error) {
	if h.single {
		v, next, err := value(b, pos, false, 0)
		return append(dst, v), next, err
	}
	if err := checkColumn(b, pos, h.rows); err != nil {
		return dst, pos, err
	}
	if isMap(b[pos]) {
		v, next, err := value(b, pos, false, 0)
		if a, ok := v.(*catalog.NDArray); ok && err == nil {
			return append(dst, a.Rows()...), next, nil
		}
		return dst, pos, &columnError{"want list"}
	}
	n, pos, err := arrayLen(b, pos)
	for i := 0; i < n && err == nil; i++ {
		var v any
		v, pos, err = value(b, pos, false, 0)
		dst = append(dst, v)
	}
	return dst, pos, err
}

// skipPair passes over a map entry whose key is not a string.
func skipPair(b []byte, pos int, err error) (int, error) {
	if !isTypeError(err) {
		return pos, err
	}
	if pos, err = skip(b, pos); err != nil {
		return pos, err
	}
	return skip(b, pos)
}

// asColumnError reports a mistyped page column as a column error (the call fails).
func asColumnError(err error) error {
	if isTypeError(err) {
		return &columnError{err.Error()}
	}
	return err
}

// finish drops from the page maps the keys this page did not write, so that consumers see
// only complete columns (what catalog.EventPage.Trim does, without walking the maps).
func (d *pageDecoder) finish() {
	if d.data.active != d.data.inMap {
		sweep(&d.data, d.gen, func(k string) { delete(d.page.Data, k) })
	}
	if d.ts.active != d.ts.inMap {
		sweep(&d.ts, d.gen, func(k string) { delete(d.page.Timestamps, k) })
	}
	if d.filled.active != d.filled.inMap {
		sweep(&d.filled, d.gen, func(k string) { delete(d.page.Filled, k) })
	}
}

func sweep(s *slots, gen uint32, del func(string)) {
	for i := range s.list {
		if sl := &s.list[i]; sl.inMap && sl.gen != gen {
			del(sl.key)
			sl.inMap = false
			s.inMap--
		}
	}
}
