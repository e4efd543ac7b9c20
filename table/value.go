package table

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

// maxDims is NumPy's limit on dimensions (NPY_MAXDIMS): a deeper value cannot be loaded.
const maxDims = 64

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
		return fmt.Errorf("scalar value %s in a field of shape %v", brief(v), rowShape)
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
			if err := encode.PutFloat(dst[i:i+dt.Size], dt, math.NaN()); err != nil {
				return err
			}
		}
	}
	return nil
}

// putScalar encodes one generic scalar as one element of dtype dt.
func putScalar(dst []byte, dt encode.Dtype, v any) error {
	if dt.Descr[1] == 'U' {
		s, ok := v.(string)
		if !ok {
			s = fmt.Sprint(v)
		}
		encode.PutUnicode(dst, s, dt.Size/4)
		return nil
	}
	switch x := v.(type) {
	case float64:
		if k := dt.Descr[1]; (k == 'i' || k == 'u') && (math.IsNaN(x) || math.IsInf(x, 0)) {
			return fmt.Errorf("cannot store %v as %s", x, dt.Descr)
		}
		return encode.PutFloat(dst, dt, x)
	case int64:
		return encode.PutInt(dst, dt, x)
	case bool:
		return encode.PutBool(dst, dt, x)
	case nil:
		return putMissing(dst, dt)
	}
	return fmt.Errorf("cannot store %T as %s", v, dt.Descr)
}

// putFloats and putInts are the fast paths of the common scalar columns: no boxing per value.
func putFloats(dst []byte, src []float64) {
	for i, v := range src {
		binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(v))
	}
}

func putInts(dst []byte, src []int64) {
	for i, v := range src {
		binary.LittleEndian.PutUint64(dst[8*i:], uint64(v))
	}
}

func walkLeaves(list []any, fn func(any)) {
	for _, e := range list {
		if l, ok := e.([]any); ok {
			walkLeaves(l, fn)
		} else {
			fn(e)
		}
	}
}

// shapeOf is the numpy shape of a generic value; ragged lists take their first element's.
// Nesting deeper than NumPy's limit is cut at maxDims+1 dimensions, which the caller refuses.
func shapeOf(v any) []int {
	var shape []int
	for len(shape) <= maxDims {
		switch x := v.(type) {
		case *catalog.NDArray:
			return append(shape, x.Shape...)
		case []any:
			shape = append(shape, len(x))
			if len(x) == 0 {
				return shape
			}
			v = x[0]
			continue
		}
		return shape
	}
	return shape
}

// littleEndian rewrites a big-endian or native descr as little-endian: brokerfs always writes
// little-endian .npy files.
func littleEndian(d string) string {
	if len(d) > 1 && (d[0] == '>' || d[0] == '=') {
		return "<" + d[1:]
	}
	return d
}

// brief formats a value for an error message: quoted and cut at 80 bytes. A map that looks
// like a msgpack-numpy array but is not one (its data does not match its shape and dtype)
// holds the raw bytes of its data, which must not go whole into a log line.
func brief(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}
