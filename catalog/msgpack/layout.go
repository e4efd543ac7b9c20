package msgpack

// Layouts: the fast path for runs of single-row event pages.
//
// Fed one event at a time, suitcase writes a million documents that differ only in their
// scalar values: same keys in the same order, same type bytes, same descriptor, same string
// lengths. A layout is learned from one document that the general decoder has read (learn.go);
// the next documents are compared with it (every byte but the values' must be equal, so the
// structure, and with it the length, is the same) and their values are read from known
// offsets. A document that does not match goes through the general decoder, which stays the
// reference: a layout only ever reproduces what it would have decoded, and a test and the fuzz
// target hold it to that.

import (
	"encoding/binary"
	"math"
	"slices"

	"github.com/brokerfs/brokerfs/catalog"
)

// What a layout value is (its encoding) and where it goes.
const (
	encFloat64   = iota // 0xcb + 8 bytes
	encFloat32          // 0xca + 4 bytes
	encUint             // 0xcc..0xce + 1..4 bytes (a uint64 may not fit an int64)
	encInt              // 0xd0..0xd3 + 1..8 bytes
	encFixint           // one byte 0x00..0x7f
	encNegFixint        // one byte 0xe0..0xff
	encBool             // one byte 0xc2 or 0xc3
	encStr              // a str of fixed length: the layout holds its header, the value its bytes
)

const (
	toSkip   = iota // checked, not read (uid, fields not asked for, other streams)
	toTime          // the page's time
	toSeq           // the page's seq_num
	toData          // a data column
	toTS            // a timestamps slice
	toFilled        // a filled slice
)

// lvalue is one value of a layout: at off (its type byte; for encStr its first byte).
type lvalue struct {
	off  int32
	size int32 // payload bytes
	enc  uint8
	to   uint8
	slot *slot
}

// layout is the learned byte layout of one document.
type layout struct {
	n       int         // document length
	doc     []byte      // the document it was learned from
	fixed   []span      // the runs of bytes that must equal doc's: all but the values
	classes []valueByte // values whose type byte is the value: checked one by one
	vals    []lvalue
	slots   []*slot // the page map keys it writes, in order
	rows    int     // rows of the document (1)
	events  bool    // the document is of the decoder's descriptor (else it is skipped)
	desc    []byte
}

// span is the bytes [off, end) of a document.
type span struct{ off, end int32 }

// valueByte is a one-byte value whose class (fixint, negative fixint, bool) must not change.
type valueByte struct {
	off int32
	enc uint8
}

// match reports whether the document at the start of b has the layout.
func (l *layout) match(b []byte) bool {
	if len(b) < l.n {
		return false
	}
	doc, want := b[:l.n], l.doc[:l.n]
	for _, s := range l.fixed {
		if string(doc[s.off:s.end]) != string(want[s.off:s.end]) {
			return false
		}
	}
	return l.classesMatch(doc)
}

func (l *layout) classesMatch(b []byte) bool {
	for _, c := range l.classes {
		v := b[c.off]
		switch c.enc {
		case encFixint:
			if v > 0x7f {
				return false
			}
		case encNegFixint:
			if v < 0xe0 {
				return false
			}
		default:
			if v&0xfe != 0xc2 {
				return false
			}
		}
	}
	return true
}

// apply reads the values of a matching document into the page, which holds the columns and
// slices of the document the layout was learned from (so no map needs writing).
func (l *layout) apply(b []byte, p *catalog.EventPage) {
	p.Time, p.SeqNum = p.Time[:0], p.SeqNum[:0]
	for i := range l.vals {
		v := &l.vals[i]
		var f float64 // the value when a float64, which nearly all are
		if v.enc == encFloat64 {
			f = math.Float64frombits(binary.BigEndian.Uint64(b[v.off+1:]))
		} else if v.to != toSeq && v.enc != encBool && v.enc != encStr {
			f = v.float(b)
		}
		switch v.to {
		case toTime:
			p.Time = append(p.Time, f)
		case toSeq:
			p.SeqNum = append(p.SeqNum, v.int(b))
		case toTS:
			v.slot.ts[0] = f
		case toData:
			c := v.slot.col
			c.Reset()
			switch v.enc {
			case encFloat64, encFloat32:
				c.AppendFloat(f)
			case encBool:
				c.AppendBool(b[v.off] == 0xc3)
			case encStr:
				s := b[v.off : v.off+v.size]
				if string(s) != v.slot.last {
					v.slot.last = string(s)
				}
				c.AppendString(v.slot.last)
			default:
				if i, ok := v.intOK(b); ok {
					c.AppendInt(i)
				} else {
					c.AppendFloat(v.float(b))
				}
			}
		case toFilled:
			switch v.enc {
			case encBool:
				v.slot.filled[0] = b[v.off] == 0xc3
			case encStr:
				v.slot.filled[0] = string(b[v.off : v.off+v.size])
			}
		}
	}
}

func (v *lvalue) float(b []byte) float64 {
	p := b[v.off+1:]
	switch v.enc {
	case encFloat64:
		return math.Float64frombits(binary.BigEndian.Uint64(p))
	case encFloat32:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(p)))
	}
	if i, ok := v.intOK(b); ok {
		return float64(i)
	}
	return float64(binary.BigEndian.Uint64(p)) // a uint64 beyond int64
}

func (v *lvalue) int(b []byte) int64 {
	i, _ := v.intOK(b)
	return i
}

// intOK decodes an integer value; ok is false for a uint64 beyond int64 (a float, then).
func (v *lvalue) intOK(b []byte) (int64, bool) {
	p := b[v.off:]
	switch {
	case v.enc == encFixint:
		return int64(p[0]), true
	case v.enc == encNegFixint:
		return int64(int8(p[0])), true
	case v.enc == encUint && v.size == 1:
		return int64(p[1]), true
	case v.enc == encUint && v.size == 2:
		return int64(binary.BigEndian.Uint16(p[1:])), true
	case v.enc == encUint && v.size == 4:
		return int64(binary.BigEndian.Uint32(p[1:])), true
	}
	i, _, kind, _, _ := number(b, int(v.off))
	return i, kind == numInt
}

// maxLayouts bounds the layouts a decoder keeps: about one per stream interleaved in a file.
// Learning is rationed in credits (see learnFrom).
const (
	maxLayouts = 8
	learnCost  = 4
	maxCredit  = 16 * learnCost
)

// fast returns a learned layout that the document at the start of b has and that can be used
// now: a layout of the decoder's descriptor only while the page holds its columns (and the
// callback left the page's maps alone).
func (d *pageDecoder) fast(b []byte) *layout {
	if d.noLayouts {
		return nil
	}
	for i := len(d.layouts) - 1; i >= 0; i-- {
		l := d.layouts[i]
		if !l.match(b) {
			continue
		}
		p := &d.page
		if l.events && d.desc != "" {
			// The page must hold the layout's columns: those of mine, when both layouts have
			// the same keys (they differ only in how their values are encoded).
			if d.mine == nil || (l != d.mine && !slices.Equal(l.slots, d.mine.slots)) ||
				len(p.Data) != d.data.inMap || len(p.Timestamps) != d.ts.inMap || len(p.Filled) != d.filled.inMap {
				return nil
			}
			d.mine = l
		}
		d.fasts++
		d.credit = min(d.credit+1, maxCredit)
		return l
	}
	return nil
}

// learnFrom updates the layouts after the general decoder read the document b[:n] with
// header h and status: the page now holds that document's columns.
func (d *pageDecoder) learnFrom(b []byte, n int, h *evHeader, status int) {
	if d.noLayouts {
		return
	}
	if h.decoded != 0 {
		// The page's maps changed (also when the document then proved bad): no layout's
		// columns are there any more, unless this document has one.
		d.mine = nil
	}
	events := status == docEvent
	if status == docBad || (status == docOther && h.rows < 0) || (events && d.desc != "" && !h.body) {
		return // a bad document, or one not decoded (before the rows asked for)
	}
	for _, l := range d.layouts {
		if l.match(b) {
			if events {
				d.mine = l
			}
			return
		}
	}
	// Learning a layout costs about two general decodes: it pays when layouts serve a few
	// documents each. A token bucket keeps it so: a layout costs learnCost credits, each
	// document read through one earns one back. Out of credit, learn again only after a run
	// of documents without a layout, in case the file settles into a new one.
	if d.slows++; d.credit < learnCost && d.slows < 64 {
		return
	}
	// Trying costs the same whether or not the document has a layout the fast path handles.
	d.slows, d.credit = 0, max(d.credit-learnCost, 0)
	l := d.learn(b, n, h, events)
	if l == nil {
		return
	}
	d.learns++
	if len(d.layouts) == maxLayouts {
		d.layouts = append(d.layouts[:0], d.layouts[1:]...)
	}
	d.layouts = append(d.layouts, l)
	d.longest = 0
	for _, l := range d.layouts {
		d.longest = max(d.longest, l.n)
	}
	if events {
		d.mine = l
	}
}
