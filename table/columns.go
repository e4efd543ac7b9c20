package table

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

// entryColumn serves a column from its committed .npy file: the file itself for reads of the
// .npy, row ranges of it for CSV and tables.
func entryColumn(t *Table, e *cache.Entry, cm columnMeta, rows int) (File, encode.Array) {
	open := t.opener(e, cm.File)
	dt, _ := encode.ParseDtype(cm.Descr)
	shape := cm.Shape
	if shape == nil {
		shape = []int{}
	}
	rb, _ := rowBytes(dt, shape)
	hdr := cm.Size - int64(rows)*int64(rb)
	return &osFile{size: cm.Size, open: open}, &fileArray{open: open, dt: dt, rowShape: shape, rows: rows, rb: rb, hdr: hdr}
}

// fileArray reads rows of a column's .npy file in the cache.
type fileArray struct {
	open     func() (*os.File, error)
	dt       encode.Dtype
	rowShape []int
	rows, rb int
	hdr      int64

	mu sync.Mutex
	f  *os.File // guarded by mu; opened on first read
}

func (a *fileArray) Dtype() encode.Dtype { return a.dt }
func (a *fileArray) RowShape() []int     { return a.rowShape }
func (a *fileArray) Rows() int           { return a.rows }

func (a *fileArray) ReadRows(_ context.Context, from, to int, dst []byte) error {
	a.mu.Lock()
	if a.f == nil {
		f, err := a.open()
		if err != nil {
			a.mu.Unlock()
			return err
		}
		a.f = f
	}
	f := a.f
	a.mu.Unlock()
	_, err := f.ReadAt(dst[:(to-from)*a.rb], a.hdr+int64(from)*int64(a.rb))
	if err != nil {
		return fmt.Errorf("read cache file %s: %w", f.Name(), err)
	}
	return nil
}

// memArray is a column kept in memory.
type memArray struct {
	dt       encode.Dtype
	rowShape []int
	rows, rb int
	b        []byte
}

func (a *memArray) Dtype() encode.Dtype { return a.dt }
func (a *memArray) RowShape() []int     { return a.rowShape }
func (a *memArray) Rows() int           { return a.rows }
func (a *memArray) ReadRows(_ context.Context, from, to int, dst []byte) error {
	copy(dst, a.b[from*a.rb:to*a.rb])
	return nil
}

// redoArray is a column too large to keep in memory without a cache: its rows are read from
// the catalog again for each read, one EventPages call per contiguous range of stored rows.
type redoArray struct {
	s        *Stream
	sc       *scanState
	field    string
	dt       encode.Dtype
	rowShape []int
	rb       int
}

func (a *redoArray) Dtype() encode.Dtype { return a.dt }
func (a *redoArray) RowShape() []int     { return a.rowShape }
func (a *redoArray) Rows() int           { return a.sc.rows }

func (a *redoArray) ReadRows(ctx context.Context, from, to int, dst []byte) error {
	rb := a.rb
	for r := from; r < to; {
		st := a.sc.stored(r)
		desc, drow := locate(a.sc.descs, st)
		n := 1
		for r+n < to && a.sc.stored(r+n) == st+n {
			if d, _ := locate(a.sc.descs, st+n); d != desc {
				break
			}
			n++
		}
		r0 := r
		err := a.s.run.EventPages(ctx, desc, drow, drow+n, []string{a.field}, func(p *catalog.EventPage) error {
			col := p.Data[a.field]
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
				if err := putValue(dst[off:off+rb], a.dt, a.rowShape, v); err != nil {
					return fmt.Errorf("field %s row %d: %w", a.field, r0+row-drow, err)
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

// locate maps a stored row to its descriptor and the row within it.
func locate(descs []descRange, stored int) (desc string, row int) {
	i := sort.Search(len(descs), func(i int) bool { return descs[i].first+descs[i].rows > stored })
	if i == len(descs) {
		i = len(descs) - 1
	}
	return descs[i].uid, stored - descs[i].first
}
