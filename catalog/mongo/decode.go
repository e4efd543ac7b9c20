package mongo

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/brokerfs/brokerfs/catalog"
)

// BSON decoding without reflection. Documents (start, stop, descriptor, resource) become the
// generic value model of package catalog plus their JSON as stored; event data goes straight
// into typed columns (events.go).

var errMalformed = errors.New("malformed BSON")

// maxDepth bounds the nesting of decoded values (MongoDB itself stops at 100).
const maxDepth = 100

// elems iterates over the elements of a BSON document or array without allocating:
//
//	for it := newElems(doc); it.next(); { use it.key, it.val }
//	if it.err != nil { ... }
type elems struct {
	rest []byte
	key  []byte
	val  bsoncore.Value
	err  error
}

func newElems(doc []byte) elems {
	if len(doc) < 5 || int(int32(uint32(doc[0])|uint32(doc[1])<<8|uint32(doc[2])<<16|uint32(doc[3])<<24)) != len(doc) || doc[len(doc)-1] != 0 {
		return elems{err: errMalformed}
	}
	return elems{rest: doc[4 : len(doc)-1]}
}

func (e *elems) next() bool {
	if e.err != nil || len(e.rest) == 0 {
		return false
	}
	t := bsoncore.Type(e.rest[0])
	key, rest, ok := bsoncore.ReadKeyBytes(e.rest[1:])
	if !ok {
		e.err = errMalformed
		return false
	}
	v, rest, ok := bsoncore.ReadValue(rest, t)
	if !ok {
		e.err = errMalformed
		return false
	}
	e.key, e.val, e.rest = key, v, rest
	return true
}

// lookup returns the value of key in doc (top level only).
func lookup(doc []byte, key string) (bsoncore.Value, bool) {
	for it := newElems(doc); it.next(); {
		if string(it.key) == key {
			return it.val, true
		}
	}
	return bsoncore.Value{}, false
}

// decodeDoc decodes a document into a generic map, leaving out the top-level _id.
func decodeDoc(doc []byte) (map[string]any, error) {
	v, err := decodeMap(doc, 0, true)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func decodeMap(doc []byte, depth int, skipID bool) (map[string]any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", errMalformed, maxDepth)
	}
	m := make(map[string]any)
	it := newElems(doc)
	for it.next() {
		if skipID && string(it.key) == "_id" {
			continue
		}
		v, err := decodeValue(it.val, depth+1)
		if err != nil {
			return nil, err
		}
		m[string(it.key)] = v
	}
	return m, it.err
}

func decodeList(arr []byte, depth int) ([]any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", errMalformed, maxDepth)
	}
	out := []any{}
	it := newElems(arr)
	for it.next() {
		v, err := decodeValue(it.val, depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, it.err
}

// decodeValue converts a BSON value to the generic model: doubles to float64, int32 and
// int64 to int64, documents to map[string]any, arrays to []any. Dates become float64 seconds
// since the epoch (Bluesky times are such numbers), ObjectIDs hex strings, Decimal128 float64;
// other rare types (binary, regex, code, timestamps) their MongoDB Extended JSON text.
func decodeValue(v bsoncore.Value, depth int) (any, error) {
	switch v.Type {
	case bsoncore.TypeDouble:
		return v.Double(), nil
	case bsoncore.TypeInt32:
		return int64(v.Int32()), nil
	case bsoncore.TypeInt64:
		return v.Int64(), nil
	case bsoncore.TypeString:
		if s, ok := v.StringValueOK(); ok {
			return s, nil
		}
		return nil, errMalformed
	case bsoncore.TypeBoolean:
		return v.Boolean(), nil
	case bsoncore.TypeNull, bsoncore.TypeUndefined:
		return nil, nil
	case bsoncore.TypeEmbeddedDocument:
		return decodeMap(v.Data, depth, false)
	case bsoncore.TypeArray:
		return decodeList(v.Data, depth)
	case bsoncore.TypeDateTime:
		return float64(v.DateTime()) / 1000, nil
	case bsoncore.TypeObjectID:
		id := v.ObjectID()
		return hex.EncodeToString(id[:]), nil
	case bsoncore.TypeDecimal128:
		h, l := v.Decimal128()
		f, err := strconv.ParseFloat(bson.NewDecimal128(h, l).String(), 64)
		if err != nil {
			return math.NaN(), nil
		}
		return f, nil
	}
	return v.String(), nil
}

// appendDocJSON appends the JSON of a BSON document with its keys in stored order and
// without the top-level _id, written the way catalog.AppendJSON writes generic values
// (Python's json.dumps layout, NaN as NaN).
func appendDocJSON(dst []byte, doc []byte) ([]byte, error) {
	return appendJSON(dst, bsoncore.Value{Type: bsoncore.TypeEmbeddedDocument, Data: doc}, 0, true)
}

func appendJSON(dst []byte, v bsoncore.Value, depth int, skipID bool) ([]byte, error) {
	if depth > maxDepth {
		return dst, fmt.Errorf("%w: nested deeper than %d", errMalformed, maxDepth)
	}
	switch v.Type {
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
		isDoc := v.Type == bsoncore.TypeEmbeddedDocument
		open, end := byte('['), byte(']')
		if isDoc {
			open, end = '{', '}'
		}
		dst = append(dst, open)
		first := true
		it := newElems(v.Data)
		for it.next() {
			if skipID && string(it.key) == "_id" {
				continue
			}
			if !first {
				dst = append(dst, ", "...)
			}
			first = false
			if isDoc {
				dst = catalog.AppendJSONString(dst, string(it.key))
				dst = append(dst, ": "...)
			}
			var err error
			if dst, err = appendJSON(dst, it.val, depth+1, false); err != nil {
				return dst, err
			}
		}
		return append(dst, end), it.err
	case bsoncore.TypeDouble:
		return catalog.AppendFloat(dst, v.Double()), nil
	case bsoncore.TypeInt32:
		return strconv.AppendInt(dst, int64(v.Int32()), 10), nil
	case bsoncore.TypeInt64:
		return strconv.AppendInt(dst, v.Int64(), 10), nil
	case bsoncore.TypeString:
		s, ok := v.StringValueOK()
		if !ok {
			return dst, errMalformed
		}
		return catalog.AppendJSONString(dst, s), nil
	case bsoncore.TypeBoolean:
		return strconv.AppendBool(dst, v.Boolean()), nil
	case bsoncore.TypeNull, bsoncore.TypeUndefined:
		return append(dst, "null"...), nil
	}
	g, err := decodeValue(v, depth)
	if err != nil {
		return dst, err
	}
	return catalog.AppendJSON(dst, g), nil
}

// parsed decodes a stored document into its generic map and its JSON.
func parsed(doc []byte) (map[string]any, []byte, error) {
	m, err := decodeDoc(doc)
	if err != nil {
		return nil, nil, err
	}
	raw, err := appendDocJSON(nil, doc)
	if err != nil {
		return nil, nil, err
	}
	return m, raw, nil
}

func parseStart(doc []byte) (*catalog.Start, error) {
	m, raw, err := parsed(doc)
	if err != nil {
		return nil, err
	}
	return catalog.ParseStart(m, raw)
}

func parseStop(doc []byte) (*catalog.Stop, map[string]any, error) {
	m, raw, err := parsed(doc)
	if err != nil {
		return nil, nil, err
	}
	s, err := catalog.ParseStop(m, raw)
	return s, m, err
}

func parseDescriptor(doc []byte) (*catalog.Descriptor, error) {
	m, raw, err := parsed(doc)
	if err != nil {
		return nil, err
	}
	return catalog.ParseDescriptor(m, raw)
}

func parseResource(doc []byte) (*catalog.Resource, map[string]any, error) {
	m, raw, err := parsed(doc)
	if err != nil {
		return nil, nil, err
	}
	r, err := catalog.ParseResource(m, raw)
	return r, m, err
}
