package msgpack

// The page's maps (data columns, timestamps, filled) as the event decoder keeps them: a slot
// per key, looked up without turning the key into a string, and reused from page to page so
// that the maps are written only when their set of keys changes.

import (
	"fmt"

	"github.com/brokerfs/brokerfs/catalog"
)

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
	list   []*slot // pointers, which layouts keep
	byKey  map[string]int
	inMap  int // slots present in the page map
	active int // slots written by the current page
}

func (s *slots) find(k []byte, hint int) (*slot, bool) {
	if hint < len(s.list) && s.list[hint].key == string(k) {
		return s.list[hint], true
	}
	if i, ok := s.byKey[string(k)]; ok {
		return s.list[i], true
	}
	return nil, false
}

func (s *slots) add(k []byte) *slot {
	if s.byKey == nil {
		s.byKey = make(map[string]int)
	}
	sl := &slot{key: string(k)}
	s.byKey[sl.key] = len(s.list)
	s.list = append(s.list, sl)
	return sl
}

// touch marks a slot as written by page gen (a key given twice counts once).
func (s *slots) touch(sl *slot, gen uint32) {
	if sl.gen != gen {
		sl.gen = gen
		s.active++
	}
}

// decodeData decodes the data map at pos into the page's columns.
func (d *pageDecoder) decodeData(b []byte, pos int, h *evHeader) (int, error) {
	n, pos, err := mapLen(b, pos)
	if err != nil {
		return pos, err
	}
	for i := range n {
		k, next, ok := fixKey(b, pos)
		if !ok {
			if k, next, err = str(b, pos); err != nil {
				// A key that is not a string cannot name a data key: pass over it.
				if pos, err = skipPair(b, pos, err); err != nil {
					return pos, err
				}
				continue
			}
		}
		pos = next
		s, ok := d.data.find(k, i)
		if !ok {
			s = d.data.add(k)
			s.wanted = catalog.Wanted(d.fields, s.key)
			if s.wanted {
				s.col = &catalog.Column{}
			}
		}
		if !s.wanted {
			if v, ok := one(b, pos); ok && h.rows == 1 && v < len(b) && b[v] == 0xcb {
				pos = v + 9 // a one-row column of a float: skip is a long way round
				continue
			}
			d.complex = true
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
		if v, ok := one(b, pos); ok && h.rows == 1 && !h.single {
			pos, err = d.cell(s, b, v)
		} else if h.single {
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

// decodeTimestamps decodes the timestamps map at pos into the page.
func (d *pageDecoder) decodeTimestamps(b []byte, pos int, h *evHeader) (int, error) {
	n, pos, err := mapLen(b, pos)
	if err != nil {
		return pos, err
	}
	for i := range n {
		k, next, ok := fixKey(b, pos)
		if !ok {
			if k, next, err = str(b, pos); err != nil {
				if pos, err = skipPair(b, pos, err); err != nil {
					return pos, err
				}
				continue
			}
		}
		pos = next
		s, ok := d.ts.find(k, i)
		if !ok {
			s = d.ts.add(k)
		}
		d.ts.touch(s, d.gen)
		vals := s.ts[:0]
		v, isOne := one(b, pos)
		f, next, isFloat := fastFloat(b, v)
		if isOne && isFloat && h.rows == 1 && !h.single {
			vals, pos = append(vals, f), next
		} else if h.single {
			var f float64
			if f, pos, err = tsValue(b, pos); err != nil {
				return pos, err
			}
			vals = append(vals, f)
		} else {
			if pos < len(b) && isMap(b[pos]) {
				d.complex = true // a numpy column
			}
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

// decodeFilled decodes the filled map at pos into the page.
func (d *pageDecoder) decodeFilled(b []byte, pos int, h *evHeader) (int, error) {
	n, pos, err := mapLen(b, pos)
	if err != nil {
		return pos, err
	}
	d.complex = d.complex || n > 0
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
