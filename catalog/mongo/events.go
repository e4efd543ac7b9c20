package mongo

import (
	"encoding/binary"
	"fmt"
	"math"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/brokerfs/brokerfs/catalog"
)

// pageBuilder decodes stored events straight from BSON into a reused catalog.EventPage:
// doubles go to AppendFloat, int32 and int64 to AppendInt and so on, with no intermediate
// map per event. It reads both layouts: one event per document (normalized) and columnar
// event_page documents (embedded).
type pageBuilder struct {
	p      catalog.EventPage
	fields []string
	keys   map[string]string // interned field names, so map assignments do not allocate
	pack   packer
}

func newPageBuilder(descriptor string, firstRow int, fields []string) *pageBuilder {
	b := &pageBuilder{fields: fields, keys: map[string]string{}}
	b.p.Reset(descriptor, firstRow)
	return b
}

func (b *pageBuilder) key(k []byte) string {
	if s, ok := b.keys[string(k)]; ok {
		return s
	}
	s := string(k)
	b.keys[s] = s
	return s
}

// wantData reports whether the data of field k is asked for.
func (b *pageBuilder) wantData(k []byte) bool {
	if b.fields == nil {
		return true
	}
	for _, f := range b.fields {
		if f == string(k) {
			return true
		}
	}
	return false
}

// wantAux reports whether the timestamps and filled flags of field k are kept: those of the
// fields asked for, or of every field when no data (or all data) is asked for.
func (b *pageBuilder) wantAux(k []byte) bool {
	return len(b.fields) == 0 || b.wantData(k)
}

// column returns the page's column for k.
func (b *pageBuilder) column(k []byte) *catalog.Column {
	if c, ok := b.p.Data[string(k)]; ok {
		return c
	}
	c := &catalog.Column{}
	b.p.Data[b.key(k)] = c
	return c
}

// appendEvent appends one event document ({time, seq_num, data, timestamps, filled}) as a row.
func (b *pageBuilder) appendEvent(doc []byte) error {
	var haveTime, haveSeq bool
	p := &b.p
	it := newElems(doc)
	for it.next() {
		switch string(it.key) {
		case "time":
			t, ok := it.val.AsFloat64OK()
			if !ok {
				return fmt.Errorf("key \"time\": want number, have %s", it.val.Type)
			}
			p.Time, haveTime = append(p.Time, t), true
		case "seq_num":
			s, ok := asInt(it.val)
			if !ok {
				return fmt.Errorf("key \"seq_num\": want integer, have %s", it.val.Type)
			}
			p.SeqNum, haveSeq = append(p.SeqNum, s), true
		case "data":
			d, ok := it.val.DocumentOK()
			if !ok {
				return fmt.Errorf("key \"data\": want document, have %s", it.val.Type)
			}
			for f := newElems(d); f.next(); {
				if b.wantData(f.key) {
					b.appendValue(b.column(f.key), f.val)
				}
			}
		case "timestamps":
			d, _ := it.val.DocumentOK()
			for f := newElems(d); f.next(); {
				if b.wantAux(f.key) {
					k := b.key(f.key)
					p.Timestamps[k] = append(p.Timestamps[k], timestamp(f.val))
				}
			}
		case "filled":
			d, _ := it.val.DocumentOK()
			for f := newElems(d); f.next(); {
				if b.wantAux(f.key) {
					k := b.key(f.key)
					v, _ := decodeValue(f.val, 0)
					p.Filled[k] = append(p.Filled[k], v)
				}
			}
		}
	}
	if it.err != nil {
		return it.err
	}
	if !haveTime || !haveSeq {
		return fmt.Errorf("missing key \"time\" or \"seq_num\"")
	}
	return nil
}

// appendPage appends the rows of a columnar event_page document
// ({time: [..], seq_num: [..], data: {k: [..]}, timestamps: {k: [..]}, filled: {k: [..]}}).
func (b *pageBuilder) appendPage(doc []byte) error {
	p := &b.p
	n0 := p.Len()
	var seqs []byte
	it := newElems(doc)
	for it.next() {
		switch string(it.key) {
		case "time":
			a, ok := it.val.ArrayOK()
			if !ok {
				return fmt.Errorf("key \"time\": want array, have %s", it.val.Type)
			}
			for e := newElems(a); e.next(); {
				t, ok := e.val.AsFloat64OK()
				if !ok {
					return fmt.Errorf("time: want number, have %s", e.val.Type)
				}
				p.Time = append(p.Time, t)
			}
		case "seq_num":
			a, ok := it.val.ArrayOK()
			if !ok {
				return fmt.Errorf("key \"seq_num\": want array, have %s", it.val.Type)
			}
			seqs = a
		case "data", "timestamps", "filled":
			if err := b.appendColumns(string(it.key), it.val); err != nil {
				return err
			}
		}
	}
	if it.err != nil {
		return it.err
	}
	for e := newElems(seqs); e.next(); {
		s, ok := asInt(e.val)
		if !ok {
			return fmt.Errorf("seq_num: want integer, have %s", e.val.Type)
		}
		p.SeqNum = append(p.SeqNum, s)
	}
	if len(p.SeqNum) != len(p.Time) {
		return fmt.Errorf("page of %d times and %d seq_nums", len(p.Time)-n0, len(p.SeqNum)-n0)
	}
	return nil
}

func (b *pageBuilder) appendColumns(which string, v bsoncore.Value) error {
	d, ok := v.DocumentOK()
	if !ok {
		return fmt.Errorf("key %q: want document, have %s", which, v.Type)
	}
	p := &b.p
	for f := newElems(d); f.next(); {
		a, ok := f.val.ArrayOK()
		if !ok {
			return fmt.Errorf("%s %q: want array, have %s", which, f.key, f.val.Type)
		}
		switch {
		case which == "data" && b.wantData(f.key):
			c := b.column(f.key)
			for e := newElems(a); e.next(); {
				b.appendValue(c, e.val)
			}
		case which == "timestamps" && b.wantAux(f.key):
			k := b.key(f.key)
			for e := newElems(a); e.next(); {
				p.Timestamps[k] = append(p.Timestamps[k], timestamp(e.val))
			}
		case which == "filled" && b.wantAux(f.key):
			k := b.key(f.key)
			for e := newElems(a); e.next(); {
				x, _ := decodeValue(e.val, 0)
				p.Filled[k] = append(p.Filled[k], x)
			}
		}
	}
	return nil
}

// appendValue appends one event value to a column through its typed appenders.
func (b *pageBuilder) appendValue(c *catalog.Column, v bsoncore.Value) {
	switch v.Type {
	case bsoncore.TypeDouble:
		c.AppendFloat(v.Double())
	case bsoncore.TypeInt32:
		c.AppendInt(int64(v.Int32()))
	case bsoncore.TypeInt64:
		c.AppendInt(v.Int64())
	case bsoncore.TypeBoolean:
		c.AppendBool(v.Boolean())
	case bsoncore.TypeString:
		if s, ok := v.StringValueOK(); ok {
			c.AppendString(s)
		} else {
			c.AppendValue(nil) // malformed
		}
	case bsoncore.TypeArray:
		c.AppendValue(b.pack.array(v.Data))
	default:
		x, err := decodeValue(v, 0)
		if err != nil {
			x = nil
		}
		c.AppendValue(x)
	}
}

// timestamp converts a stored timestamp to float64; a missing one (null) is NaN.
func timestamp(v bsoncore.Value) float64 {
	if t, ok := v.AsFloat64OK(); ok {
		return t
	}
	return math.NaN()
}

// asInt converts an integral BSON number to int64.
func asInt(v bsoncore.Value) (int64, bool) {
	switch v.Type {
	case bsoncore.TypeInt32:
		return int64(v.Int32()), true
	case bsoncore.TypeInt64:
		return v.Int64(), true
	case bsoncore.TypeDouble:
		f := v.Double()
		if f == math.Trunc(f) && !math.IsInf(f, 0) {
			return int64(f), true
		}
	}
	return 0, false
}

// page returns the built page, trimmed of incomplete columns.
func (b *pageBuilder) page() *catalog.EventPage {
	b.p.Trim()
	return &b.p
}

// reset empties the page for the rows from firstRow on.
func (b *pageBuilder) reset(firstRow int) { b.p.Reset(b.p.Descriptor, firstRow) }

// Leaf kinds of a packed array, in the order they may merge (int and float make float).
const (
	leafNone = iota
	leafInt
	leafFloat
	leafBool
	leafString
)

// packer turns a BSON array holding an event value into an *catalog.NDArray when it is
// rectangular and of one kind (numbers: "<f8" if any is a double, else "<i8"; bools "|b1";
// strings "<U0"), as the file backends do: a spectrum of 1,000 doubles then costs one
// allocation, not 1,000 boxed values. Anything else (ragged, empty, mixed, null, documents)
// decodes to []any. Its buffers are reused between values.
type packer struct {
	shape  []int
	rank   int
	kind   int
	ints   []int64
	floats []float64
	bools  []bool
	strs   []string
}

func (k *packer) array(arr []byte) any {
	k.shape, k.rank, k.kind = k.shape[:0], 0, leafNone
	k.ints, k.floats, k.bools, k.strs = k.ints[:0], k.floats[:0], k.bools[:0], k.strs[:0]
	if !k.scan(arr, 0) {
		v, err := decodeList(arr, 1)
		if err != nil {
			return nil
		}
		return v
	}
	a := &catalog.NDArray{Shape: append([]int(nil), k.shape...)}
	switch k.kind {
	case leafInt:
		a.Dtype, a.Data = "<i8", make([]byte, 8*len(k.ints))
		for i, v := range k.ints {
			binary.LittleEndian.PutUint64(a.Data[8*i:], uint64(v))
		}
	case leafFloat:
		a.Dtype, a.Data = "<f8", make([]byte, 8*len(k.floats))
		for i, v := range k.floats {
			binary.LittleEndian.PutUint64(a.Data[8*i:], math.Float64bits(v))
		}
	case leafBool:
		a.Dtype, a.Data = "|b1", make([]byte, len(k.bools))
		for i, v := range k.bools {
			if v {
				a.Data[i] = 1
			}
		}
	case leafString:
		a.Dtype, a.Strings = "<U0", append([]string(nil), k.strs...)
	}
	return a
}

// scan walks the array at level, checking that it is rectangular and of one leaf kind.
func (k *packer) scan(arr []byte, level int) bool {
	if level >= 32 {
		return false
	}
	n := 0
	it := newElems(arr)
	for it.next() {
		n++
		if it.val.Type == bsoncore.TypeArray {
			if !k.scan(it.val.Data, level+1) {
				return false
			}
			continue
		}
		if k.rank == 0 {
			k.rank = level + 1
		}
		if k.rank != level+1 || !k.leaf(it.val) {
			return false
		}
	}
	if it.err != nil || n == 0 { // an empty dimension tells no dtype
		return false
	}
	for len(k.shape) <= level {
		k.shape = append(k.shape, -1)
	}
	if k.shape[level] == -1 {
		k.shape[level] = n
	}
	return k.shape[level] == n
}

func (k *packer) leaf(v bsoncore.Value) bool {
	switch v.Type {
	case bsoncore.TypeBoolean:
		if k.kind != leafNone && k.kind != leafBool {
			return false
		}
		k.kind = leafBool
		k.bools = append(k.bools, v.Boolean())
	case bsoncore.TypeString:
		if k.kind != leafNone && k.kind != leafString {
			return false
		}
		s, ok := v.StringValueOK()
		if !ok {
			return false
		}
		k.kind = leafString
		k.strs = append(k.strs, s)
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		i, _ := asInt(v)
		switch k.kind {
		case leafNone, leafInt:
			k.kind = leafInt
			k.ints = append(k.ints, i)
		case leafFloat:
			k.floats = append(k.floats, float64(i))
		default:
			return false
		}
	case bsoncore.TypeDouble:
		switch k.kind {
		case leafNone, leafFloat:
		case leafInt:
			for _, i := range k.ints {
				k.floats = append(k.floats, float64(i))
			}
		default:
			return false
		}
		k.kind = leafFloat
		k.floats = append(k.floats, v.Double())
	default:
		return false
	}
	return true
}
