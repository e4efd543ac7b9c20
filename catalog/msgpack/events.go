package msgpack

// The event decoder: event and event_page documents straight from msgpack bytes into a
// reused catalog.EventPage. A file of a million single-row pages is the case it is built for,
// so the steady state allocates nothing: map keys are looked up without converting them to
// strings, columns and timestamp slices are reused in place (pagemaps.go), and the page's maps
// are written only when their set of keys changes. This general decoder reads any document;
// layouts (layout.go) read runs of same-shaped documents faster and fall back to it.

import (
	"errors"
	"fmt"

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
	checked                     uint8 // body parts that pass checkBody's check: 1 data, 2 timestamps, 4 filled
	partErr                     [3]error
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

	layouts       []*layout // learned, most recent last
	mine          *layout   // the layout whose columns the page holds, if any
	learns, fasts int       // layouts learned, documents read through one
	credit        int       // for learning layouts
	longest       int       // the length of the longest layout
	slows         int       // documents read by the general decoder since the last layout learned
	noLayouts     bool      // tests: the general decoder only

	// complex is set by the decoding of a body part when it read a value in a way that does
	// not imply checkBody's check of it (nested values, numpy arrays, columns passed over):
	// a part decoded without it needs no check (see part).
	complex bool
}

func newPageDecoder(desc string, fields []string) *pageDecoder {
	d := &pageDecoder{desc: desc, fields: fields, credit: maxCredit}
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
			for _, sl := range s.list {
				sl.inMap = false
			}
			s.inMap = 0
		}
		d.mine = nil
	}
	d.gen++
	d.data.active, d.ts.active, d.filled.active = 0, 0, 0
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
	for _, sl := range s.list {
		if sl.inMap && sl.gen != gen {
			del(sl.key)
			sl.inMap = false
			s.inMap--
		}
	}
}

// Document statuses from pageDecoder.next.
const (
	docOther = iota // not an event document of the wanted descriptor
	docBad          // an event document the index skipped (and logged)
	docEvent        // an event document of the descriptor
)

// next reads the document at the start of b: its length and, for an event document of the
// decoder's descriptor, its header (rows, times, seq_nums in d.page) and, when it has more
// than skipRows rows, its body. On errShort the length is a lower bound of the bytes needed.
func (d *pageDecoder) next(b []byte, h *evHeader, skipRows int) (n, status int, err error) {
	count, p, err := arrayLen(b, 0)
	if err != nil || count != 2 {
		n, err = skip(b, 0)
		if err == nil {
			err = corrupt(0, "not a [name, document] pair")
		}
		return n, docOther, err
	}
	name, p, err := keyStr(b, p)
	if err != nil || (string(name) != "event_page" && string(name) != "event") {
		n, serr := skip(b, 0)
		if serr != nil || err == nil {
			return n, docOther, serr
		}
		return n, docOther, corrupt(0, "document name is not a string")
	}
	err = d.scanEvent(b, p, len(name) == len("event"), h, skipRows)
	switch {
	case isInvalid(err):
		n, err = skip(b, 0)
		return n, docBad, err
	case err != nil:
		n, serr := skip(b, 0)
		if serr != nil {
			return n, docOther, serr
		}
		return n, docOther, err
	case h.other:
		return h.end, docOther, nil
	}
	return h.end, docEvent, nil
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
		k, next, ok := fixKey(b, pos)
		if !ok {
			if pos < len(b) && isStr(b[pos]) {
				k, next, err = str(b, pos)
			} else {
				next, err = skip(b, pos) // not a name: pass over it
			}
			if err != nil {
				return err
			}
		}
		pos = next
		// Each case leaves end at the end of the value when it read the value whole.
		end, body := -1, false
		if bad == nil && h.seen(string(k), pos, desc) {
			// Decoded into a map, the last value would win; read in one pass, the first
			// may have been used already. Such a document is broken anyway.
			bad = invalid("key %q given twice", k)
		}
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
			h.data, body = pos, true
		case "timestamps":
			h.ts, body = pos, true
		case "filled":
			h.filled, body = pos, true
		}
		if body && d.wantBody(h, bad, skipRows) {
			end, err = d.part(b, h, pos)
		} else if body && bad == nil && h.rows >= 0 && !h.other && pos < len(b) && isMap(b[pos]) {
			end, err = h.checkAt(b, pos)
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
	case h.ts >= 0 && !isMap(b[h.ts]):
		// As in JSONL: a document this broken is skipped, not read without its timestamps.
		return invalid("key \"timestamps\": want map, have %s", typeName(b, h.ts))
	case h.filled >= 0 && !isMap(b[h.filled]):
		return invalid("key \"filled\": want map, have %s", typeName(b, h.filled))
	}
	if h.desc, _, err = str(b, desc); err != nil {
		return keyError("descriptor", err)
	}
	if !h.other {
		// The index and every read apply the same check, so a document that no reader could
		// decode is skipped by all of them alike and row numbers agree.
		if err := checkBody(b, h); err != nil {
			return err
		}
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

// seen reports whether key is one of the event keys and was met before in this document.
func (h *evHeader) seen(key string, pos, desc int) bool {
	at := -1
	switch key {
	case "descriptor":
		at = desc
	case "time":
		at = h.time
	case "seq_num":
		at = h.seq
	case "data":
		at = h.data
	case "timestamps":
		at = h.ts
	case "filled":
		at = h.filled
	}
	return at >= 0 && at != pos
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
		// Data, timestamps or filled that are not maps fail the header check (after the
		// walk, which may reach this first).
		return skip(b, pos)
	}
	var end int
	var err error
	var bit uint8
	d.complex = false
	switch pos {
	case h.data:
		bit = 1
		end, err = d.decodeData(b, pos, h)
	case h.ts:
		bit = 2
		end, err = d.decodeTimestamps(b, pos, h)
	default:
		bit = 4
		end, err = d.decodeFilled(b, pos, h)
	}
	h.decoded |= bit
	if err == nil && !d.complex {
		// Every value was a scalar (one per row, in a list of the page's rows): the part
		// passes checkBody's check, which need not walk it again.
		h.checked |= bit
	}
	if isDepth(err) {
		return end, invalid("%v", err) // as checkBody finds it: the document is skipped
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
	p.Time = p.Time[:0] // a key given twice counts once, the last time, as in a decoded map
	if v, ok := one(b, h.time); ok && !h.single {
		if t, end, ok := fastFloat(b, v); ok {
			p.Time, h.rows = append(p.Time, t), 1
			return end, nil
		}
	}
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
	p.SeqNum = p.SeqNum[:0]
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
