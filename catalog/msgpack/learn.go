package msgpack

// Learning a layout: a walk over a document the general decoder has just read, marking which
// bytes are values (free to differ in the next documents) and where each value goes.

import "slices"

// layoutLearner walks a document the general decoder accepted, marking the bytes of its
// values as free and noting where each value goes.
type layoutLearner struct {
	d    *pageDecoder
	b    []byte
	free []bool
	l    *layout
}

// learn returns the layout of the document b[:n] (whose header is h), or nil when it has one
// the fast path does not handle (more than one row, nested values, keys that are not fixstr).
func (d *pageDecoder) learn(b []byte, n int, h *evHeader, events bool) *layout {
	if h.rows != 1 || n > 1<<16 {
		return nil
	}
	b = b[:n]
	x := &layoutLearner{d: d, b: b, free: make([]bool, n), l: &layout{n: n, rows: 1, events: events}}
	x.l.desc = append([]byte(nil), h.desc...)
	// [name, {key: value, ...}]: the learner starts at the map's first key.
	_, p, _ := arrayLen(b, 0)
	_, p, _ = str(b, p)
	count, p, err := mapLen(b, p)
	if err != nil {
		return nil
	}
	for range count {
		k, next, ok := fixKey(b, p)
		if !ok {
			return nil
		}
		if p, ok = x.top(string(k), next, h); !ok {
			return nil
		}
	}
	if p != n {
		return nil
	}
	x.l.doc = append([]byte(nil), b...)
	for i := 0; i < n; {
		if x.free[i] {
			i++
			continue
		}
		j := i
		for j < n && !x.free[j] {
			j++
		}
		x.l.fixed = append(x.l.fixed, span{off: int32(i), end: int32(j)})
		i = j
	}
	for _, v := range x.l.vals {
		if v.enc == encFixint || v.enc == encNegFixint || v.enc == encBool {
			x.l.classes = append(x.l.classes, valueByte{off: v.off, enc: v.enc})
		}
	}
	// Values walked over were only kept for their class.
	x.l.vals = slices.DeleteFunc(x.l.vals, func(v lvalue) bool { return v.to == toSkip })
	for _, v := range x.l.vals {
		if v.slot != nil {
			x.l.slots = append(x.l.slots, v.slot)
		}
	}
	return x.l
}

// top learns the value of a top-level key at p.
func (x *layoutLearner) top(key string, p int, h *evHeader) (int, bool) {
	switch key {
	case "descriptor":
		end, err := skip(x.b, p) // fixed: a match is a document of the same descriptor
		return end, err == nil
	case "time", "seq_num":
		to := uint8(toTime)
		if key == "seq_num" {
			to = toSeq
		}
		if !x.l.events {
			to = toSkip
		}
		return x.cell(x.column(p, h), to, nil)
	case "data", "timestamps", "filled":
		if !x.l.events || x.d.desc == "" { // another stream's, or the index's: walked over
			return x.skip(p)
		}
		return x.fields(key, p, h)
	}
	return x.skip(p)
}

// column returns where the value of a one-row column at p is.
func (x *layoutLearner) column(p int, h *evHeader) int {
	if h.single {
		return p
	}
	if v, ok := one(x.b, p); ok {
		return v
	}
	return -1
}

// fields learns a data, timestamps or filled map at p, whose slots the general decoder made.
func (x *layoutLearner) fields(key string, p int, h *evHeader) (int, bool) {
	n, p, err := mapLen(x.b, p)
	if err != nil {
		return p, false
	}
	for i := range n {
		k, next, ok := fixKey(x.b, p)
		if !ok {
			return p, false
		}
		var s *slot
		to := uint8(toSkip)
		switch key {
		case "data":
			if s, ok = x.d.data.find(k, i); ok && s.wanted && s.inMap {
				to = toData
			}
		case "timestamps":
			s, ok = x.d.ts.find(k, i)
			to = toTS
		default:
			s, ok = x.d.filled.find(k, i)
			to = toFilled
		}
		if to != toSkip && (!ok || !s.inMap) {
			return p, false
		}
		if to == toSkip {
			p, ok = x.skip(next)
		} else {
			p, ok = x.cell(x.column(next, h), to, s)
		}
		if !ok {
			return p, false
		}
	}
	return p, true
}

// cell learns a scalar value at p going to `to`. Values the fast path does not read (nil,
// nested values, extensions, types the destination would convert) make the layout fail.
func (x *layoutLearner) cell(p int, to uint8, s *slot) (int, bool) {
	if p < 0 || p >= len(x.b) {
		return p, false
	}
	v := lvalue{off: int32(p), to: to, slot: s}
	c := x.b[p]
	switch {
	case c == 0xcb:
		v.enc, v.size = encFloat64, 8
	case c == 0xca:
		v.enc, v.size = encFloat32, 4
	case c >= 0xcc && c <= 0xce: // not 0xcf: a uint64 may not fit an int64
		v.enc, v.size = encUint, 1<<(c-0xcc)
	case c >= 0xd0 && c <= 0xd3:
		v.enc, v.size = encInt, 1<<(c-0xd0)
	case c <= 0x7f:
		v.enc = encFixint
	case c >= 0xe0:
		v.enc = encNegFixint
	case c == 0xc2 || c == 0xc3:
		v.enc = encBool
	case isStr(c):
		val, end, err := str(x.b, p)
		if err != nil {
			return p, false
		}
		v.off, v.enc, v.size = int32(end-len(val)), encStr, int32(len(val))
	default:
		return p, false
	}
	numeric := v.enc != encBool && v.enc != encStr
	integral := numeric && v.enc != encFloat64 && v.enc != encFloat32
	switch to {
	case toTime, toTS:
		if !numeric {
			return p, false
		}
	case toSeq:
		if !integral {
			return p, false
		}
	case toFilled:
		if v.enc != encBool && v.enc != encStr {
			return p, false
		}
	}
	end := int(v.off + v.size)
	switch v.enc {
	case encStr:
		x.setFree(int(v.off), end)
	case encFixint, encNegFixint, encBool:
		end++
		x.setFree(p, end) // the type byte is the value: match checks its class
	default:
		end++
		x.setFree(p+1, end)
	}
	// A value walked over needs no entry unless its class must be checked.
	if to != toSkip || v.enc == encFixint || v.enc == encNegFixint || v.enc == encBool {
		x.l.vals = append(x.l.vals, v)
	}
	return end, true
}

// skip learns a value that is only walked over: scalar payloads are free, the rest fixed.
func (x *layoutLearner) skip(p int) (int, bool) {
	end, err := skip(x.b, p)
	if err != nil {
		return p, false
	}
	for p < end {
		var err error
		switch c := x.b[p]; {
		case isArray(c):
			_, p, err = arrayLen(x.b, p)
		case isMap(c):
			_, p, err = mapLen(x.b, p)
		case c == 0xc0:
			p++
		default:
			var ok bool
			if p, ok = x.cell(p, toSkip, nil); !ok {
				return p, false
			}
		}
		if err != nil {
			return p, false
		}
	}
	return end, true
}

func (x *layoutLearner) setFree(from, to int) {
	for i := from; i < to; i++ {
		x.free[i] = true
	}
}
