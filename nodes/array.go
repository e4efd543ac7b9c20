package nodes

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

var (
	dtF8, _ = encode.ParseDtype("<f8")
	dtI8, _ = encode.ParseDtype("<i8")
)

// floatArray is a float64 column held in memory (event times, timestamps).
type floatArray []float64

func (a floatArray) Dtype() encode.Dtype { return dtF8 }
func (a floatArray) RowShape() []int     { return nil }
func (a floatArray) Rows() int           { return len(a) }
func (a floatArray) ReadRows(_ context.Context, from, to int, dst []byte) error {
	for i, v := range a[from:to] {
		binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(v))
	}
	return nil
}

// intArray is an int64 column held in memory (seq_num).
type intArray []int64

func (a intArray) Dtype() encode.Dtype { return dtI8 }
func (a intArray) RowShape() []int     { return nil }
func (a intArray) Rows() int           { return len(a) }
func (a intArray) ReadRows(_ context.Context, from, to int, dst []byte) error {
	for i, v := range a[from:to] {
		binary.LittleEndian.PutUint64(dst[8*i:], uint64(v))
	}
	return nil
}

// fieldArray is a field of a stream, by merged row.
type fieldArray struct {
	s  *stream
	sc *scan
	fs *fieldScan
}

var _ encode.Array = fieldArray{}

func (a fieldArray) Dtype() encode.Dtype { return a.fs.dtype }
func (a fieldArray) RowShape() []int     { return a.fs.rowShape }
func (a fieldArray) Rows() int           { return a.sc.rows }

// ReadRows implements encode.Array: kept values are encoded from memory; others are read from
// the catalog, one EventPages call per contiguous range of stored rows.
func (a fieldArray) ReadRows(ctx context.Context, from, to int, dst []byte) error {
	if a.fs.err != nil {
		return a.fs.err
	}
	if a.fs.external {
		return a.readExternal(ctx, from, to, dst)
	}
	rb := encode.RowBytes(a)
	if k := a.fs.values; k != nil {
		// Fast paths for the common scalar columns: no boxing per value.
		if len(a.fs.rowShape) == 0 {
			switch {
			case k.Kind == catalog.KindFloat && a.fs.dtype.Descr == "<f8":
				for r := from; r < to; r++ {
					binary.LittleEndian.PutUint64(dst[(r-from)*8:], math.Float64bits(k.F[a.sc.stored(r)]))
				}
				return nil
			case k.Kind == catalog.KindInt && a.fs.dtype.Descr == "<i8":
				for r := from; r < to; r++ {
					binary.LittleEndian.PutUint64(dst[(r-from)*8:], uint64(k.I[a.sc.stored(r)]))
				}
				return nil
			}
		}
		for r := from; r < to; r++ {
			if err := putValue(dst[(r-from)*rb:(r-from+1)*rb], a.fs.dtype, a.fs.rowShape, k.At(a.sc.stored(r))); err != nil {
				return fmt.Errorf("field %s row %d: %w", a.fs.name, r, err)
			}
		}
		return nil
	}
	// Group merged rows [from, to) into runs of consecutive stored rows of one descriptor.
	for r := from; r < to; {
		st := a.sc.stored(r)
		desc, drow := a.sc.locate(st)
		n := 1
		for r+n < to && a.sc.stored(r+n) == st+n {
			if d, _ := a.sc.locate(st + n); d != desc {
				break
			}
			n++
		}
		r0 := r
		err := a.s.run.EventPages(ctx, desc, drow, drow+n, []string{a.fs.name}, func(p *catalog.EventPage) error {
			col := p.Data[a.fs.name]
			for i := 0; i < p.Len(); i++ {
				row := p.FirstRow + i
				if row < drow || row >= drow+n {
					continue
				}
				var v any
				if col != nil {
					v = col.At(i)
				}
				off := (r0 + row - drow - from) * rb
				if err := putValue(dst[off:off+rb], a.fs.dtype, a.fs.rowShape, v); err != nil {
					return fmt.Errorf("field %s row %d: %w", a.fs.name, r0+row-drow, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		r += n
	}
	return nil
}

// tsArray is a field's timestamps by merged row.
type tsArray struct {
	sc *scan
	ts []float64
}

func (a tsArray) Dtype() encode.Dtype { return dtF8 }
func (a tsArray) RowShape() []int     { return nil }
func (a tsArray) Rows() int           { return a.sc.rows }
func (a tsArray) ReadRows(_ context.Context, from, to int, dst []byte) error {
	for r := from; r < to; r++ {
		binary.LittleEndian.PutUint64(dst[8*(r-from):], math.Float64bits(a.ts[a.sc.stored(r)]))
	}
	return nil
}

// putValue encodes one event's value as a row of dtype dt and shape rowShape into dst.
func putValue(dst []byte, dt encode.Dtype, rowShape []int, v any) error {
	n := 1
	for _, d := range rowShape {
		n *= d
	}
	switch x := v.(type) {
	case nil:
		return putMissing(dst, dt)
	case *catalog.NDArray:
		if x.Len() != n || !sameShape(x.Shape, rowShape) {
			return fmt.Errorf("value of shape %v in a field of shape %v", x.Shape, rowShape)
		}
		if x.Strings != nil {
			for i, s := range x.Strings {
				if err := putScalar(dst[i*dt.Size:(i+1)*dt.Size], dt, s); err != nil {
					return err
				}
			}
			return nil
		}
		st, err := encode.ParseDtype(x.Dtype)
		if err != nil {
			return err
		}
		return encode.Convert(dst, dt, x.Data, st)
	case []any:
		if got := shapeOf(x); !sameShape(got, rowShape) {
			return fmt.Errorf("value of shape %v in a field of shape %v", got, rowShape)
		}
		i := 0
		var err error
		walkLeaves(x, func(e any) {
			if err == nil && i < n {
				err = putScalar(dst[i*dt.Size:(i+1)*dt.Size], dt, e)
			}
			i++
		})
		return err
	}
	if n != 1 || len(rowShape) != 0 {
		return fmt.Errorf("scalar value %v in a field of shape %v", v, rowShape)
	}
	return putScalar(dst, dt, v)
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// putMissing fills dst for a missing value: NaN for floats, zero otherwise (what numpy's
// conversion of None gives where it can).
func putMissing(dst []byte, dt encode.Dtype) error {
	clear(dst)
	if dt.Descr[1] == 'f' {
		for i := 0; i+dt.Size <= len(dst); i += dt.Size {
			if err := putScalar(dst[i:i+dt.Size], dt, math.NaN()); err != nil {
				return err
			}
		}
	}
	return nil
}

// putScalar encodes one generic scalar as one element of dtype dt.
func putScalar(dst []byte, dt encode.Dtype, v any) error {
	kind := dt.Descr[1]
	if kind == 'U' {
		s, ok := v.(string)
		if !ok {
			s = fmt.Sprint(v)
		}
		encode.PutUnicode(dst, s, dt.Size/4)
		return nil
	}
	var f float64
	var i int64
	isInt := false
	switch x := v.(type) {
	case float64:
		f = x
	case int64:
		i, isInt = x, true
	case bool:
		if x {
			i = 1
		}
		isInt = true
	case nil:
		return putMissing(dst, dt)
	default:
		return fmt.Errorf("cannot store %T as %s", v, dt.Descr)
	}
	switch kind {
	case 'f':
		if isInt {
			f = float64(i)
		}
		switch dt.Size {
		case 8:
			binary.LittleEndian.PutUint64(dst, math.Float64bits(f))
		case 4:
			binary.LittleEndian.PutUint32(dst, math.Float32bits(float32(f)))
		default:
			return fmt.Errorf("unsupported dtype %s", dt.Descr)
		}
	case 'i', 'u', 'b':
		if !isInt {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("cannot store %v as %s", f, dt.Descr)
			}
			i = int64(f)
		}
		if kind == 'b' {
			if i != 0 {
				i = 1
			}
		}
		switch dt.Size {
		case 1:
			dst[0] = byte(i)
		case 2:
			binary.LittleEndian.PutUint16(dst, uint16(i))
		case 4:
			binary.LittleEndian.PutUint32(dst, uint32(i))
		case 8:
			binary.LittleEndian.PutUint64(dst, uint64(i))
		default:
			return fmt.Errorf("unsupported dtype %s", dt.Descr)
		}
	default:
		return fmt.Errorf("unsupported dtype %s", dt.Descr)
	}
	return nil
}
