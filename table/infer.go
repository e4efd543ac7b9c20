package table

import (
	"fmt"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

// kinds is what a field's values have shown so far: enough to decide its dtype and row shape
// as databroker's reading would have them.
type kinds struct {
	sawF, sawI, sawB, sawS bool
	maxLen                 int    // longest string, in code points
	ndDtype                string // dtype of the first numpy array value
	shape                  []int  // of the first non-nil value
	shapeOK                bool
	// changed is set when an observation may change the decision (a new kind, a longer
	// string, a first array dtype or shape); the builder clears it after deciding again.
	changed bool
}

// observeColumn records the first n values of a page's column.
func (k *kinds) observeColumn(col *catalog.Column, n int) {
	if col == nil || n == 0 {
		return
	}
	switch col.Kind {
	case catalog.KindFloat:
		k.set(&k.sawF)
	case catalog.KindInt:
		k.set(&k.sawI)
	case catalog.KindBool:
		k.set(&k.sawB)
	case catalog.KindString:
		k.set(&k.sawS)
		for _, s := range col.S[:n] {
			k.length(s)
		}
	case catalog.KindValue:
		for _, v := range col.V[:n] {
			k.observe(v)
		}
		return
	default:
		return
	}
	if !k.shapeOK {
		k.shape, k.shapeOK, k.changed = []int{}, true, true
	}
}

func (k *kinds) set(flag *bool) {
	if !*flag {
		*flag, k.changed = true, true
	}
}

func (k *kinds) length(s string) {
	if n := encode.UnicodeLen(s); n > k.maxLen {
		k.maxLen, k.changed = n, true
	}
}

func (k *kinds) observe(v any) {
	if v == nil {
		return
	}
	if !k.shapeOK {
		k.shape, k.shapeOK, k.changed = shapeOf(v), true, true
	}
	k.observeLeaf(v)
}

// observeLeaf records the type of a value or of the elements of a list or array.
func (k *kinds) observeLeaf(v any) {
	switch x := v.(type) {
	case float64:
		k.set(&k.sawF)
	case int64:
		k.set(&k.sawI)
	case bool:
		k.set(&k.sawB)
	case string:
		k.set(&k.sawS)
		k.length(x)
	case *catalog.NDArray:
		if x.Strings != nil {
			k.set(&k.sawS)
			for _, s := range x.Strings {
				k.length(s)
			}
		} else if k.ndDtype == "" {
			k.ndDtype, k.changed = x.Dtype, true
			if len(x.Dtype) > 1 && x.Dtype[1] == 'f' {
				k.set(&k.sawF)
			}
		}
	case []any:
		walkLeaves(x, k.observeLeaf)
	}
}

// maxRowBytes bounds one event's value in the event documents (a string, a list, an array):
// a value claiming more is refused (its field fails with EIO) rather than allocated, which
// keeps brokerfs's memory bounded for hostile catalogs. External frames, read one at a time
// from their files, may be larger: maxFrameBytes.
const (
	maxRowBytes   = 64 << 20
	maxFrameBytes = 512 << 20
)

// decide chooses the field's dtype and row shape from its data key and what its values showed,
// as databroker's reading would have them.
func decide(dk catalog.DataKey, k *kinds) (encode.Dtype, []int, error) {
	var descr string
	switch dk.Dtype {
	case "number":
		descr = "<f8"
	case "integer":
		descr = "<i8"
		if k.sawF {
			descr = "<f8" // numpy would make these floats too
		}
	case "boolean":
		descr = "|b1"
	case "string":
		descr = fmt.Sprintf("<U%d", max(k.maxLen, 1))
	default: // array
		switch {
		case dk.DtypeNumpy != "":
			descr = dk.DtypeNumpy
		case k.sawS:
			descr = fmt.Sprintf("<U%d", max(k.maxLen, 1))
		case k.ndDtype != "":
			descr = k.ndDtype
		case k.sawF:
			descr = "<f8"
		case k.sawI:
			descr = "<i8"
		case k.sawB:
			descr = "|b1"
		default:
			descr = "<f8"
		}
	}
	dt, err := encode.ParseDtype(littleEndian(descr))
	if err != nil {
		return encode.Dtype{}, nil, err
	}
	if dt.Descr[1] == 'U' && dk.Dtype == "array" {
		// A declared unicode dtype may be narrower than the data.
		dt, err = encode.ParseDtype(fmt.Sprintf("<U%d", max(k.maxLen, dt.Size/4, 1)))
		if err != nil {
			return encode.Dtype{}, nil, err
		}
	}
	shape := []int{}
	if dk.Dtype == "array" || k.shapeOK && len(k.shape) > 0 {
		if k.shapeOK {
			shape = k.shape
		} else {
			shape = append([]int{}, dk.Shape...)
		}
	}
	if len(shape) > maxDims {
		return encode.Dtype{}, nil, fmt.Errorf("values of %d dimensions: numpy reads at most %d", len(shape), maxDims)
	}
	if _, err := rowBytes(dt, shape); err != nil {
		return encode.Dtype{}, nil, err
	}
	return dt, shape, nil
}

// rowBytes is the size of one row, checked against overflow and maxRowBytes.
func rowBytes(dt encode.Dtype, shape []int) (int, error) { return rowBytesMax(dt, shape, maxRowBytes) }

func rowBytesMax(dt encode.Dtype, shape []int, limit int) (int, error) {
	n := dt.Size
	if n > limit {
		return 0, fmt.Errorf("dtype %s: more than %d bytes per event", dt.Descr, limit)
	}
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v: negative dimension", shape)
		}
		if d > 0 && n > limit/d {
			return 0, fmt.Errorf("shape %v of %s: more than %d bytes per event", shape, dt.Descr, limit)
		}
		n *= d
	}
	return n, nil
}
