package msgpack

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/brokerfs/brokerfs/catalog"
)

// Writer writes documents as suitcase-msgpack does: each a msgpack array [name, doc], generic
// values as msgpack types (floats as float64, integers in their smallest encoding, strings as
// str), *catalog.NDArray as a msgpack-numpy map. It is not safe for concurrent use.
//
// Each Write is one Write call on the underlying writer, so a reader of a live file sees whole
// documents as soon as the writer's buffer allows; wrap an *os.File in a bufio.Writer (and
// Flush it) for throughput, as WriteRun does.
//
// Go maps have no order, so map keys are written sorted, except that a document's identifying
// keys come first, in the order event-model emits them (time, uid, seq_num, descriptor, ...):
// readers that find the descriptor before the data can skip other streams' pages sooner.
type Writer struct {
	w     io.Writer
	buf   []byte
	pairs [][]pair // scratch entry lists, one per nesting depth
}

// pair is a map entry being written; rank orders a document's leading keys first.
type pair struct {
	key  string
	val  any
	rank int
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// leadingRank places a document's top-level keys: these first, in this order, then the
// others sorted.
func leadingRank(k string) int {
	switch k {
	case "time":
		return 0
	case "uid":
		return 1
	case "seq_num":
		return 2
	case "descriptor":
		return 3
	case "run_start":
		return 4
	case "resource":
		return 5
	case "datum_id":
		return 6
	case "filled":
		return 7
	}
	return 8
}

// Write writes one document.
func (w *Writer) Write(name string, doc map[string]any) error {
	b := append(w.buf[:0], 0x92)
	b = appendStr(b, name)
	b, err := w.appendMap(b, doc, 0)
	w.buf = b
	if err != nil {
		return fmt.Errorf("write %s document: %w", name, err)
	}
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("write %s document: %w", name, err)
	}
	return nil
}

// WriteRun writes a run's documents to a new file at path.
func WriteRun(path string, docs []catalog.Document) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	w := NewWriter(bw)
	for _, d := range docs {
		if err := w.Write(d.Name, d.Doc); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (w *Writer) appendMap(b []byte, m map[string]any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, fmt.Errorf("values nested more than %d deep", maxDepth)
	}
	for len(w.pairs) <= depth {
		w.pairs = append(w.pairs, nil)
	}
	pairs := w.pairs[depth][:0]
	for k, v := range m {
		rank := 0
		if depth == 0 {
			rank = leadingRank(k)
		}
		pairs = append(pairs, pair{key: k, val: v, rank: rank})
	}
	// Insertion sort: maps here are small, and it allocates nothing.
	for i := 1; i < len(pairs); i++ {
		for j := i; j > 0 && pairs[j].less(&pairs[j-1]); j-- {
			pairs[j], pairs[j-1] = pairs[j-1], pairs[j]
		}
	}
	w.pairs[depth] = pairs
	b = appendMapHeader(b, len(pairs))
	for i := range pairs {
		b = appendStr(b, pairs[i].key)
		var err error
		if b, err = w.appendValue(b, pairs[i].val, depth+1); err != nil {
			return b, fmt.Errorf("key %q: %w", pairs[i].key, err)
		}
		pairs[i].val = nil // do not keep the caller's values alive
	}
	return b, nil
}

func (p *pair) less(q *pair) bool {
	if p.rank != q.rank {
		return p.rank < q.rank
	}
	return p.key < q.key
}

func (w *Writer) appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, fmt.Errorf("values nested more than %d deep", maxDepth)
	}
	switch x := v.(type) {
	case nil:
		return append(b, 0xc0), nil
	case bool:
		if x {
			return append(b, 0xc3), nil
		}
		return append(b, 0xc2), nil
	case float64:
		return appendFloat(b, x), nil
	case int64:
		return appendInt(b, x), nil
	case string:
		return appendStr(b, x), nil
	case []any:
		b = appendArrayHeader(b, len(x))
		for _, e := range x {
			var err error
			if b, err = w.appendValue(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case map[string]any:
		return w.appendMap(b, x, depth)
	case *catalog.NDArray:
		return appendNDArray(b, x), nil
	// Conveniences beyond the generic value model.
	case int:
		return appendInt(b, int64(x)), nil
	case int32:
		return appendInt(b, int64(x)), nil
	case float32:
		return appendFloat(b, float64(x)), nil
	case []byte:
		return appendBin(b, x), nil
	case []string:
		b = appendArrayHeader(b, len(x))
		for _, s := range x {
			b = appendStr(b, s)
		}
		return b, nil
	case []float64:
		b = appendArrayHeader(b, len(x))
		for _, f := range x {
			b = appendFloat(b, f)
		}
		return b, nil
	case []int64:
		b = appendArrayHeader(b, len(x))
		for _, i := range x {
			b = appendInt(b, i)
		}
		return b, nil
	}
	return b, fmt.Errorf("cannot write a %T", v)
}

// appendNDArray writes an array as msgpack-numpy does; string arrays, which numpy would
// store as fixed-width UTF-32, are written as nested lists of strings instead.
func appendNDArray(b []byte, a *catalog.NDArray) []byte {
	if a.Strings != nil {
		return appendJSONish(b, a.List())
	}
	b = appendMapHeader(b, 5)
	b = append(appendBin(b, []byte("nd")), 0xc3)
	b = appendStr(appendBin(b, []byte("type")), a.Dtype)
	b = appendBin(appendBin(b, []byte("kind")), nil)
	b = appendArrayHeader(appendBin(b, []byte("shape")), len(a.Shape))
	for _, d := range a.Shape {
		b = appendInt(b, int64(d))
	}
	return appendBin(appendBin(b, []byte("data")), a.Data)
}

// appendJSONish writes the plain values NDArray.List returns.
func appendJSONish(b []byte, v any) []byte {
	switch x := v.(type) {
	case []any:
		b = appendArrayHeader(b, len(x))
		for _, e := range x {
			b = appendJSONish(b, e)
		}
		return b
	case string:
		return appendStr(b, x)
	}
	return append(b, 0xc0)
}

func appendFloat(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(f))
}

// appendInt writes an integer in its smallest encoding, as msgpack-python does.
func appendInt(b []byte, i int64) []byte {
	switch {
	case i >= 0 && i <= 0x7f:
		return append(b, byte(i))
	case i >= -32 && i < 0:
		return append(b, byte(i))
	case i >= 0 && i <= math.MaxUint8:
		return append(b, 0xcc, byte(i))
	case i >= 0 && i <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(i))
	case i >= 0 && i <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(i))
	case i >= 0:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(i))
	case i >= math.MinInt8:
		return append(b, 0xd0, byte(i))
	case i >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(i))
	case i >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(i))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(i))
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n <= 31:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

func appendBin(b []byte, d []byte) []byte {
	switch n := len(d); {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, d...)
}

func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

func appendMapHeader(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}
