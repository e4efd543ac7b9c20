package nodes

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

// stream is one stream of a run as a table: the events of all its descriptors merged in time
// order, one row per event, with a summary of every field (dtype, shape per row) computed by
// one scan over the events. Small columns are kept from that scan; large ones are re-read from
// the catalog in row ranges when a file is read.
type stream struct {
	run    catalog.Run
	name   string
	descs  []*catalog.Descriptor // in stored order
	keys   map[string]catalog.DataKey
	fields []string // sorted
	ext    *externals

	once    sync.Once
	err     error // the scan's failure; guarded by once
	scanned *scan // guarded by once

	enc encoders
}

// scan is what one pass over a stream's events learns. Immutable once built.
type scan struct {
	rows   int
	descs  []descRange // where each descriptor's rows start in stored order
	order  []int32     // merged row -> stored row; nil when stored order is time order
	time   []float64   // by merged row
	seq    []int64     // by merged row
	fields map[string]*fieldScan
}

type descRange struct {
	uid   string
	first int // stored row of the descriptor's first event
	rows  int
}

// fieldScan is one field's summary and, when small enough, its values by stored row.
type fieldScan struct {
	name     string
	dtype    encode.Dtype
	rowShape []int
	err      error // a value that cannot be encoded: reads fail with EIO
	// external fields hold datum ids; their dtype and shape come from the first datum's file.
	external  bool
	describe  sync.Mutex // guards described, dtype and rowShape of external fields
	described bool

	values *keptColumn // by stored row, or nil when not kept (too large)
	ts     []float64   // timestamps by stored row (NaN where missing)
}

// maxKeptBytes bounds the values one stream keeps in memory from its scan; fields beyond it
// are re-read from the catalog for each read.
const maxKeptBytes = 64 << 20

func newStream(run catalog.Run, ext *externals, name string, descs []*catalog.Descriptor, include func(string) bool) *stream {
	s := &stream{run: run, ext: ext, name: name, descs: descs, keys: map[string]catalog.DataKey{}}
	for _, d := range descs {
		for k, dk := range d.DataKeys {
			if _, ok := s.keys[k]; ok || !include(k) {
				continue
			}
			s.keys[k] = dk
			s.fields = append(s.fields, k)
		}
	}
	sort.Strings(s.fields)
	return s
}

// hasField reports whether field is one of the stream's fields.
func (s *stream) hasField(field string) bool {
	_, ok := s.keys[field]
	return ok
}

// summary scans the stream once and returns the result; concurrent callers share the scan.
// The scan is detached from the caller's cancellation so that one interrupted `ls` does not
// poison the result for everyone.
func (s *stream) summary(ctx context.Context) (*scan, error) {
	s.once.Do(func() {
		s.scanned, s.err = s.doScan(context.WithoutCancel(ctx))
	})
	return s.scanned, s.err
}

// fieldAcc accumulates one field during the scan.
type fieldAcc struct {
	fs      *fieldScan
	dk      catalog.DataKey
	keep    bool // still keeping values: the stream is under maxKeptBytes
	maxLen  int  // longest string, in code points
	sawF    bool
	sawI    bool
	sawB    bool
	sawS    bool
	ndDtype string // dtype of the first numpy array value
	shape   []int  // of the first non-nil value
	shapeOK bool
}

func (s *stream) doScan(ctx context.Context) (*scan, error) {
	sc := &scan{fields: make(map[string]*fieldScan, len(s.fields))}
	accs := make(map[string]*fieldAcc, len(s.fields))
	for _, f := range s.fields {
		fs := &fieldScan{name: f, values: &keptColumn{}, external: s.keys[f].External}
		sc.fields[f] = fs
		accs[f] = &fieldAcc{fs: fs, dk: s.keys[f], keep: true}
	}
	kept := 0
	for _, d := range s.descs {
		dr := descRange{uid: d.UID, first: len(sc.time)}
		var want []string
		for k := range d.DataKeys {
			if accs[k] != nil {
				want = append(want, k)
			}
		}
		sort.Strings(want)
		if want == nil {
			want = []string{}
		}
		err := s.run.EventPages(ctx, d.UID, 0, -1, want, func(p *catalog.EventPage) error {
			// Pages may overlap what we have only if a backend starts before `from`; from is 0.
			base := dr.first + p.FirstRow
			if base != len(sc.time) {
				return fmt.Errorf("descriptor %s: page at row %d, expected %d", d.UID, p.FirstRow, len(sc.time)-dr.first)
			}
			n := p.Len()
			sc.time = append(sc.time, p.Time...)
			sc.seq = append(sc.seq, p.SeqNum...)
			for _, f := range s.fields {
				a := accs[f]
				a.observeColumn(p.Data[f], n)
				if a.keep {
					before := a.fs.values.bytes
					a.fs.values.appendColumn(p.Data[f], n)
					kept += a.fs.values.bytes - before
					// Datum ids are always kept: they are small and every read needs them.
					if kept > maxKeptBytes && !a.fs.external {
						kept -= a.fs.values.bytes
						a.keep, a.fs.values = false, nil
					}
				}
				ts := p.Timestamps[f]
				for i := 0; i < n; i++ {
					t := math.NaN()
					if i < len(ts) {
						t = ts[i]
					}
					a.fs.ts = append(a.fs.ts, t)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("scan events of descriptor %s: %w", d.UID, err)
		}
		dr.rows = len(sc.time) - dr.first
		sc.descs = append(sc.descs, dr)
	}
	sc.rows = len(sc.time)
	for _, a := range accs {
		a.finish()
	}
	if len(s.descs) > 1 {
		sc.mergeByTime()
	}
	return sc, nil
}

// mergeByTime orders the rows of several descriptors by event time, as databroker's merge of
// per-descriptor datasets does; ties keep stored order.
func (sc *scan) mergeByTime() {
	order := make([]int32, sc.rows)
	for i := range order {
		order[i] = int32(i)
	}
	sort.SliceStable(order, func(a, b int) bool { return sc.time[order[a]] < sc.time[order[b]] })
	identity := true
	for i, o := range order {
		if int(o) != i {
			identity = false
			break
		}
	}
	if identity {
		return
	}
	time := make([]float64, sc.rows)
	seq := make([]int64, sc.rows)
	for i, o := range order {
		time[i], seq[i] = sc.time[o], sc.seq[o]
	}
	sc.time, sc.seq, sc.order = time, seq, order
}

// stored maps a merged row to its stored row.
func (sc *scan) stored(row int) int {
	if sc.order == nil {
		return row
	}
	return int(sc.order[row])
}

// locate maps a stored row to its descriptor and the row within it.
func (sc *scan) locate(stored int) (desc string, row int) {
	i := sort.Search(len(sc.descs), func(i int) bool { return sc.descs[i].first+sc.descs[i].rows > stored })
	return sc.descs[i].uid, stored - sc.descs[i].first
}

// observeColumn records the first n values of a page's column in the summary.
func (a *fieldAcc) observeColumn(col *catalog.Column, n int) {
	if col == nil || n == 0 {
		return
	}
	switch col.Kind {
	case catalog.KindFloat:
		a.sawF = true
	case catalog.KindInt:
		a.sawI = true
	case catalog.KindBool:
		a.sawB = true
	case catalog.KindString:
		a.sawS = true
		for _, s := range col.S[:n] {
			a.maxLen = max(a.maxLen, encode.UnicodeLen(s))
		}
	case catalog.KindValue:
		for _, v := range col.V[:n] {
			a.observe(v)
		}
		return
	}
	if !a.shapeOK {
		a.shape, a.shapeOK = []int{}, true
	}
}

func (a *fieldAcc) observe(v any) {
	if v == nil {
		return
	}
	if !a.shapeOK {
		a.shape, a.shapeOK = shapeOf(v), true
	}
	a.observeLeaf(v)
}

// observeLeaf records the type of a value or of the elements of a list or array.
func (a *fieldAcc) observeLeaf(v any) {
	switch x := v.(type) {
	case float64:
		a.sawF = true
	case int64:
		a.sawI = true
	case bool:
		a.sawB = true
	case string:
		a.sawS = true
		a.maxLen = max(a.maxLen, encode.UnicodeLen(x))
	case *catalog.NDArray:
		if x.Strings != nil {
			a.sawS = true
			for _, s := range x.Strings {
				a.maxLen = max(a.maxLen, encode.UnicodeLen(s))
			}
		} else if a.ndDtype == "" {
			a.ndDtype = x.Dtype
			if len(x.Dtype) > 1 && x.Dtype[1] == 'f' {
				a.sawF = true
			}
		}
	case []any:
		walkLeaves(x, a.observeLeaf)
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
func shapeOf(v any) []int {
	switch x := v.(type) {
	case *catalog.NDArray:
		return append([]int{}, x.Shape...)
	case []any:
		if len(x) == 0 {
			return []int{0}
		}
		return append([]int{len(x)}, shapeOf(x[0])...)
	}
	return []int{}
}

// finish decides the field's dtype and row shape, as databroker's reading would have them.
func (a *fieldAcc) finish() {
	fs := a.fs
	if fs.external {
		return
	}
	var descr string
	switch a.dk.Dtype {
	case "number":
		descr = "<f8"
	case "integer":
		descr = "<i8"
		if a.sawF {
			descr = "<f8" // numpy would make these floats too
		}
	case "boolean":
		descr = "|b1"
	case "string":
		descr = fmt.Sprintf("<U%d", max(a.maxLen, 1))
	default: // array
		switch {
		case a.dk.DtypeNumpy != "":
			descr = a.dk.DtypeNumpy
		case a.sawS:
			descr = fmt.Sprintf("<U%d", max(a.maxLen, 1))
		case a.ndDtype != "":
			descr = a.ndDtype
		case a.sawF:
			descr = "<f8"
		case a.sawI:
			descr = "<i8"
		case a.sawB:
			descr = "|b1"
		default:
			descr = "<f8"
		}
	}
	dt, err := encode.ParseDtype(littleEndian(descr))
	if err != nil {
		fs.err = fmt.Errorf("field %s: %w", fs.name, err)
		dt, _ = encode.ParseDtype("<f8")
	}
	if dt.Descr[1] == 'U' && a.dk.Dtype == "array" {
		// A declared unicode dtype may be narrower than the data.
		dt, _ = encode.ParseDtype(fmt.Sprintf("<U%d", max(a.maxLen, dt.Size/4, 1)))
	}
	fs.dtype = dt
	fs.rowShape = []int{}
	if a.dk.Dtype == "array" || a.shapeOK && len(a.shape) > 0 {
		if a.shapeOK {
			fs.rowShape = a.shape
		} else {
			fs.rowShape = append([]int{}, a.dk.Shape...)
		}
	}
}

// littleEndian rewrites a big-endian or native descr as little-endian: brokerfs always writes
// little-endian .npy files.
func littleEndian(d string) string {
	if len(d) > 1 && (d[0] == '>' || d[0] == '=') {
		return "<" + d[1:]
	}
	return d
}

// keptColumn holds a field's values by stored row, copied out of the backend's buffers.
type keptColumn struct {
	catalog.Column
	bytes int // an estimate of the memory held
}

// appendColumn appends the first n values of col (nil: n missing values).
func (k *keptColumn) appendColumn(col *catalog.Column, n int) {
	if col == nil {
		for i := 0; i < n; i++ {
			k.AppendValue(nil)
		}
		k.bytes += 16 * n
		return
	}
	switch col.Kind {
	case catalog.KindFloat:
		for _, v := range col.F[:n] {
			k.AppendFloat(v)
		}
		k.bytes += 8 * n
	case catalog.KindInt:
		for _, v := range col.I[:n] {
			k.AppendInt(v)
		}
		k.bytes += 8 * n
	case catalog.KindBool:
		for _, v := range col.B[:n] {
			k.AppendBool(v)
		}
		k.bytes += n
	case catalog.KindString:
		for _, v := range col.S[:n] {
			// Backends may alias their buffers in strings too: copy.
			k.AppendString(string(append([]byte(nil), v...)))
			k.bytes += len(v) + 16
		}
	default:
		for _, v := range col.V[:n] {
			c, sz := keepValue(v)
			k.AppendValue(c)
			k.bytes += sz
		}
	}
}

// keepValue copies a value out of a backend's reused buffers and estimates its size.
func keepValue(v any) (any, int) {
	switch x := v.(type) {
	case *catalog.NDArray:
		c := *x
		c.Shape = append([]int{}, x.Shape...)
		c.Data = append([]byte(nil), x.Data...)
		n := len(c.Data) + 64
		if x.Strings != nil {
			c.Strings = make([]string, len(x.Strings))
			for i, s := range x.Strings {
				c.Strings[i] = string(append([]byte(nil), s...))
				n += len(s) + 16
			}
		}
		return &c, n
	case []any:
		out := make([]any, len(x))
		n := 24
		for i, e := range x {
			var sz int
			out[i], sz = keepValue(e)
			n += sz
		}
		return out, n
	case string:
		return string(append([]byte(nil), x...)), len(x) + 16
	}
	return v, 16
}
