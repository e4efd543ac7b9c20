package nodes

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
	"github.com/brokerfs/brokerfs/handlers"
)

// externals resolves a run's datums to their resources and kwargs; loaded once per run state,
// on the first read of an external field. A failed load is retried on the next read.
type externals struct {
	run    catalog.Run
	filler *handlers.Filler

	mu        sync.Mutex
	loaded    bool                        // guarded by mu
	resources []*catalog.Resource         // guarded by mu
	datums    map[string]datumRef         // datum id -> ref; guarded by mu
	byRes     map[string][]map[string]any // resource uid -> datum kwargs; guarded by mu
}

type datumRef struct {
	res    *catalog.Resource
	kwargs map[string]any
}

func (x *externals) load(ctx context.Context) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.loaded {
		return nil
	}
	res, err := x.run.Resources(ctx)
	if err != nil {
		return fmt.Errorf("read resources: %w", err)
	}
	datums := map[string]datumRef{}
	byRes := map[string][]map[string]any{}
	for _, r := range res {
		err := x.run.Datums(ctx, r.UID, func(p *catalog.DatumPage) error {
			for i, id := range p.DatumID {
				kw := make(map[string]any, len(p.DatumKwargs))
				for k, col := range p.DatumKwargs {
					if i < len(col) {
						kw[k], _ = keepValue(col[i])
					}
				}
				id = strings.Clone(id)
				datums[id] = datumRef{res: r, kwargs: kw}
				byRes[r.UID] = append(byRes[r.UID], kw)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read datums of resource %s: %w", r.UID, err)
		}
	}
	x.resources, x.datums, x.byRes, x.loaded = res, datums, byRes, true
	return nil
}

func (x *externals) datum(ctx context.Context, id string) (datumRef, error) {
	if err := x.load(ctx); err != nil {
		return datumRef{}, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	ref, ok := x.datums[id]
	if !ok {
		return datumRef{}, fmt.Errorf("datum %s: no datum document with this id", id)
	}
	return ref, nil
}

// describeExternal sets an external field's dtype and row shape from its first datum's file
// (its dataset header): descriptor shapes are often wrong, and st_size must equal what a full
// read returns. Only a success is remembered.
func (s *stream) describeExternal(ctx context.Context, sc *scan, fs *fieldScan) error {
	fs.describe.Lock()
	defer fs.describe.Unlock()
	if fs.described {
		return nil
	}
	if sc.rows == 0 {
		fs.dtype, fs.rowShape, fs.described = dtF8, []int{}, true
		return nil
	}
	id, err := datumID(fs, 0)
	if err != nil {
		return err
	}
	ref, err := s.ext.datum(ctx, id)
	if err != nil {
		return err
	}
	descr, shape, err := s.ext.filler.Describe(ctx, ref.res, ref.kwargs)
	if err != nil {
		return err
	}
	dt, err := encode.ParseDtype(littleEndian(descr))
	if err != nil {
		return fmt.Errorf("resource %s: %w", ref.res.UID, err)
	}
	fs.dtype, fs.rowShape, fs.described = dt, shape, true
	return nil
}

// datumID is the datum id of an external field's stored row.
func datumID(fs *fieldScan, stored int) (string, error) {
	if fs.values == nil || stored >= fs.values.Len() {
		return "", fmt.Errorf("field %s row %d: no datum id", fs.name, stored)
	}
	id, ok := fs.values.At(stored).(string)
	if !ok {
		return "", fmt.Errorf("field %s row %d: datum id is %T, not a string", fs.name, stored, fs.values.At(stored))
	}
	return id, nil
}

// readExternal fills rows [from, to) of an external field, one datum per row, each through
// the filler's cache: only the datums covering the rows asked for are read.
func (a fieldArray) readExternal(ctx context.Context, from, to int, dst []byte) error {
	rb := encode.RowBytes(a)
	for r := from; r < to; r++ {
		id, err := datumID(a.fs, a.sc.stored(r))
		if err != nil {
			return err
		}
		ref, err := a.s.ext.datum(ctx, id)
		if err != nil {
			return err
		}
		arr, err := a.s.ext.filler.Read(ctx, ref.res, id, ref.kwargs)
		if err != nil {
			return err
		}
		if err := putValue(dst[(r-from)*rb:(r-from+1)*rb], a.fs.dtype, a.fs.rowShape, arr); err != nil {
			return fmt.Errorf("field %s row %d (datum %s): %w", a.fs.name, r, id, err)
		}
	}
	return nil
}

// filesTxt lists the external files the run needs, after root_map, one per line, sorted:
// databroker's get_file_list, ready for `rsync --files-from`.
func (x *externals) filesTxt(ctx context.Context) (content, error) {
	if err := x.load(ctx); err != nil {
		return nil, err
	}
	x.mu.Lock()
	res, byRes := x.resources, x.byRes
	x.mu.Unlock()
	seen := map[string]bool{}
	var lines []string
	for _, r := range res {
		files, err := x.filler.Files(ctx, r, byRes[r.UID])
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if !seen[f] {
				seen[f] = true
				lines = append(lines, f)
			}
		}
	}
	sort.Strings(lines)
	var b []byte
	for _, l := range lines {
		b = append(append(b, l...), '\n')
	}
	return bytesContent(b), nil
}
