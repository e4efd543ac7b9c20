package msgpack

// Page columns: the values of one key for every row of an event_page, stored as a list or, by
// numpy-based writers, as one array.

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/brokerfs/brokerfs/catalog"
)

// floatColumn appends a page column of numbers (a list or a numpy array) to dst and returns
// the position after it. rows < 0 accepts any length. strict rejects non-numbers (times);
// otherwise they read as catalog.AsFloat does: nil as NaN, anything else as 0 (timestamps).
func floatColumn(b []byte, pos, rows int, dst []float64, strict bool) ([]float64, int, error) {
	if pos < len(b) && isMap(b[pos]) {
		end, err := ndColumn(b, pos, rows, func(v any) bool {
			f, ok := catalog.AsFloat(v)
			dst = append(dst, f)
			return ok || !strict
		})
		return dst, end, err
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
	dst = slices.Grow(dst, n) // n is bounded by the bytes at hand
	for range n {
		if pos+9 <= len(b) && b[pos] == 0xcb { // float64, the common case, inlined
			dst = append(dst, math.Float64frombits(binary.BigEndian.Uint64(b[pos+1:])))
			pos += 9
			continue
		}
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
		end, err := ndColumn(b, pos, rows, func(v any) bool {
			i, ok := catalog.AsInt(v)
			dst = append(dst, i)
			return ok
		})
		return dst, end, err
	}
	n, pos, err := arrayLen(b, pos)
	if err != nil {
		return dst, pos, err
	}
	if n != rows {
		return dst, pos, &typeError{what: fmt.Sprintf("list of %d", rows), have: fmt.Sprintf("list of %d", n)}
	}
	dst = slices.Grow(dst, min(n, len(b)-pos))
	for range n {
		// Unsigned integers, what counters are, inlined.
		if pos < len(b) {
			switch c := b[pos]; {
			case c <= 0x7f:
				dst, pos = append(dst, int64(c)), pos+1
				continue
			case c == 0xcc && pos+2 <= len(b):
				dst, pos = append(dst, int64(b[pos+1])), pos+2
				continue
			case c == 0xcd && pos+3 <= len(b):
				dst, pos = append(dst, int64(binary.BigEndian.Uint16(b[pos+1:]))), pos+3
				continue
			case c == 0xce && pos+5 <= len(b):
				dst, pos = append(dst, int64(binary.BigEndian.Uint32(b[pos+1:]))), pos+5
				continue
			}
		}
		i, next, err := integer(b, pos)
		if err != nil {
			return dst, pos, err
		}
		dst, pos = append(dst, i), next
	}
	return dst, pos, nil
}

// ndColumn passes the elements of a one-dimensional numpy array column to add, which reports
// whether it took the element, and returns the position after the array. Pages written from
// numpy keep whole columns as one array; they are rare, so this is not fast.
func ndColumn(b []byte, pos, rows int, add func(any) bool) (int, error) {
	var h ndHeader
	ok, err := parseNumpy(b, pos, &h)
	if err != nil {
		return pos, err
	}
	if !ok {
		return pos, &typeError{what: "list", have: "map"}
	}
	v, isArr := ndValue(&h, true)
	a, _ := v.(*catalog.NDArray)
	if !isArr || a == nil || len(a.Shape) != 1 {
		return pos, &typeError{what: "list", have: "array"}
	}
	if rows >= 0 && a.Shape[0] != rows {
		return pos, &columnError{fmt.Sprintf("array column of shape %v in a page of %d rows", a.Shape, rows)}
	}
	for _, e := range a.List().([]any) {
		if !add(e) {
			return pos, &typeError{what: "number", have: fmt.Sprintf("%T", e)}
		}
	}
	return h.end, nil
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
