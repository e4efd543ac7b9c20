package table

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

// scanState is one pass over a stream's events.
type scanState struct {
	s      *Stream
	b      *cache.Builder // nil: memory mode
	budget *int64

	time, seq *builder
	fields    map[string]*builder // non-lazy fields
	ts        map[string]*builder
	ids       map[string][]string // external fields: datum id by stored row
	remote    map[string]bool     // fields the run serves by row range
	files     int                 // files created, for unique names

	rows   int
	spares int64 // what the file sinks' spare buffers may still take (spareBudget)
	descs  []descRange
	order  []int32     // merged row -> stored row; nil when stored order is time order
	gate   func() bool // a prescan's: whether to commit (Stream.Prescan)
}

type descRange struct {
	uid   string
	first int // stored row of the descriptor's first event
	rows  int
}

var (
	keyNumber  = catalog.DataKey{Dtype: "number"}
	keyInteger = catalog.DataKey{Dtype: "integer"}
)

func (sc *scanState) newBuilder(name string, dk catalog.DataKey) *builder {
	bl := &builder{name: name, dk: dk}
	bl.newSink = func() (sink, error) {
		if sc.b == nil {
			return &memSink{budget: sc.budget}, nil
		}
		sc.files++
		f, err := sc.b.Create(columnFile(sc.files, 0))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errSpill, err)
		}
		hdr := encode.NPYHeader(bl.dt, append([]int{0}, bl.rowShape...))
		return &fileSink{st: sc.b, f: f, hdr: int64(len(hdr)), writing: -1, spareBudget: &sc.spares, deferWriteback: sc.gate != nil}, nil
	}
	return bl
}

func (sc *scanState) run(ctx context.Context) error {
	s := sc.s
	sc.time = sc.newBuilder("time", keyNumber)
	sc.seq = sc.newBuilder("seq_num", keyInteger)
	sc.fields, sc.ts = map[string]*builder{}, map[string]*builder{}
	sc.ids, sc.remote = map[string][]string{}, map[string]bool{}
	ar, _ := arrayReader(ctx, s.run)
	for _, f := range s.Fields {
		dk := s.Keys[f]
		switch {
		case dk.Err != nil:
			// A malformed data key: the field fails alone (EIO, logged when read).
			bl := sc.newBuilder(f, dk)
			bl.fail(dk.Err)
			sc.fields[f] = bl
		case dk.External:
			sc.ids[f] = nil
		case ar != nil && sc.isRemote(ctx, ar, f):
			sc.remote[f] = true
		default:
			sc.fields[f] = sc.newBuilder(f, dk)
		}
		sc.ts[f] = sc.newBuilder("timestamps of "+f, keyNumber)
	}
	var nan []float64
	readCtx := ctx
	if sc.b != nil {
		// What the scan reads goes into the cache entry: the catalog need not keep its copy.
		readCtx = catalog.WithKeptReads(ctx)
	}
	for _, d := range s.Descs {
		dr := descRange{uid: d.UID, first: sc.rows}
		var want []string
		for k := range d.DataKeys {
			if sc.fields[k] != nil || sc.has(k) {
				want = append(want, k)
			}
		}
		sort.Strings(want)
		if want == nil {
			want = []string{}
		}
		err := s.run.EventPages(readCtx, d.UID, 0, -1, want, func(p *catalog.EventPage) error {
			if base := dr.first + p.FirstRow; base != sc.rows {
				return fmt.Errorf("descriptor %s: page at row %d, expected %d", d.UID, p.FirstRow, sc.rows-dr.first)
			}
			n := p.Len()
			if err := sc.add(sc.time, &catalog.Column{Kind: catalog.KindFloat, F: p.Time}, n); err != nil {
				return err
			}
			if err := sc.add(sc.seq, &catalog.Column{Kind: catalog.KindInt, I: p.SeqNum}, n); err != nil {
				return err
			}
			for _, f := range s.Fields {
				if bl := sc.fields[f]; bl != nil {
					if err := sc.add(bl, p.Data[f], n); err != nil {
						return err
					}
				} else if _, ok := sc.ids[f]; ok {
					sc.ids[f] = appendIDs(sc.ids[f], p.Data[f], n)
				}
				ts := p.Timestamps[f]
				if len(ts) < n {
					for len(nan) < n {
						nan = append(nan, math.NaN())
					}
					ts = append(append([]float64(nil), ts...), nan[len(ts):n]...)
				}
				if err := sc.add(sc.ts[f], &catalog.Column{Kind: catalog.KindFloat, F: ts}, n); err != nil {
					return err
				}
			}
			sc.rows += n
			return nil
		})
		if err != nil {
			return fmt.Errorf("scan events of descriptor %s: %w", d.UID, err)
		}
		dr.rows = sc.rows - dr.first
		sc.descs = append(sc.descs, dr)
	}
	for _, bl := range sc.builders() {
		if err := sc.settle(bl, bl.finish()); err != nil {
			return err
		}
	}
	if len(s.Descs) > 1 {
		if err := sc.mergeByTime(); err != nil {
			return err
		}
	}
	return nil
}

func (sc *scanState) has(k string) bool { _, ok := sc.ids[k]; return ok }

// isRemote asks an ArrayReader whether it serves field by row range. An error leaves the field
// to the scan: the events still carry its values.
func (sc *scanState) isRemote(ctx context.Context, ar catalog.ArrayReader, f string) bool {
	_, _, ok, err := ar.ArrayField(ctx, sc.s.Descs[0].UID, f)
	return err == nil && ok
}

// builders lists every builder in a fixed order: time, seq_num, fields, timestamps.
func (sc *scanState) builders() []*builder {
	out := []*builder{sc.time, sc.seq}
	for _, f := range sc.s.Fields {
		if bl := sc.fields[f]; bl != nil {
			out = append(out, bl)
		}
	}
	for _, f := range sc.s.Fields {
		out = append(out, sc.ts[f])
	}
	return out
}

func (sc *scanState) add(bl *builder, col *catalog.Column, n int) error {
	return sc.settle(bl, bl.appendColumn(col, n))
}

// settle handles a builder's storage failure: in memory mode the column stops keeping values
// (it will be re-read from the catalog); with a cache entry the whole scan fails with errSpill
// and is redone in memory mode.
func (sc *scanState) settle(bl *builder, err error) error {
	if err == nil {
		return nil
	}
	if sc.b == nil && errors.Is(err, errSpill) {
		if bl.out != nil {
			bl.out.discard()
		}
		bl.out, bl.newSink = nil, nil
		return nil
	}
	return err
}

// appendIDs appends the datum ids of a page's column of an external field.
func appendIDs(ids []string, col *catalog.Column, n int) []string {
	for i := 0; i < n; i++ {
		var id string
		if col != nil {
			id, _ = col.At(i).(string)
		}
		ids = append(ids, string(append([]byte(nil), id...)))
	}
	return ids
}

// mergeByTime orders the rows of several descriptors by event time, as databroker's merge of
// per-descriptor datasets does; ties keep stored order. Stored columns are rewritten in the
// merged order.
func (sc *scanState) mergeByTime() error {
	times := make([]float64, sc.rows)
	if err := readFloats(sc.time, times); err != nil {
		return err
	}
	order := make([]int32, sc.rows)
	for i := range order {
		order[i] = int32(i)
	}
	sort.SliceStable(order, func(a, b int) bool { return times[order[a]] < times[order[b]] })
	identity := true
	for i, o := range order {
		if int(o) != i {
			identity = false
			break
		}
	}
	if identity {
		return nil
	}
	sc.order = order
	for _, bl := range sc.builders() {
		if err := sc.settle(bl, sc.permute(bl, order)); err != nil {
			return err
		}
	}
	for f, ids := range sc.ids {
		merged := make([]string, len(ids))
		for i, o := range order {
			merged[i] = ids[o]
		}
		sc.ids[f] = merged
	}
	return nil
}

func readFloats(bl *builder, dst []float64) error {
	if bl.out == nil || bl.dt.Descr != "<f8" {
		return fmt.Errorf("event times not kept")
	}
	raw := make([]byte, 8*len(dst))
	if err := bl.out.readAt(raw, 0); err != nil {
		return err
	}
	for i := range dst {
		dst[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return nil
}

// permute rewrites a builder's rows in merged order.
func (sc *scanState) permute(bl *builder, order []int32) error {
	if bl.out == nil || bl.rb == 0 {
		return nil
	}
	out, err := bl.newSink()
	if err != nil {
		return err
	}
	rb := bl.rb
	per := max(1, (1<<20)/rb)
	buf := make([]byte, per*rb)
	for r := 0; r < len(order); r += per {
		k := min(per, len(order)-r)
		for i := 0; i < k; i++ {
			if err := bl.out.readAt(buf[i*rb:(i+1)*rb], int64(order[r+i])*int64(rb)); err != nil {
				out.discard()
				return err
			}
		}
		if err := out.append(buf[:k*rb]); err != nil {
			out.discard()
			return err
		}
	}
	bl.out.discard()
	bl.out = out
	return nil
}

// stored maps a merged row to its stored row.
func (sc *scanState) stored(row int) int {
	if sc.order == nil {
		return row
	}
	return int(sc.order[row])
}

// table makes the Table of a finished scan: in memory mode directly; with a cache entry by
// writing the headers, committing the entry and serving its files.
func (sc *scanState) table(ctx context.Context) (*Table, error) {
	s := sc.s
	t := &Table{Rows: sc.rows, Fields: map[string]*Column{}, Timestamps: map[string]*Column{}, stream: s}
	meta := entryMeta{Version: metaVersion, Rows: sc.rows}
	var cols []*Column
	add := func(role, name string, c *Column) {
		cols = append(cols, c)
		switch role {
		case roleTime:
			t.Time = c
		case roleSeq:
			t.SeqNum = c
		case roleField:
			t.Fields[name] = c
		case roleTS:
			t.Timestamps[name] = c
		}
	}
	roleOf := func(bl *builder) (string, string) {
		switch {
		case bl == sc.time:
			return roleTime, ""
		case bl == sc.seq:
			return roleSeq, ""
		}
		for f, b := range sc.ts {
			if b == bl {
				return roleTS, f
			}
		}
		return roleField, bl.name
	}
	for _, bl := range sc.builders() {
		role, name := roleOf(bl)
		c := &Column{Name: name, Dtype: bl.dt, RowShape: bl.rowShape, Rows: sc.rows, Err: bl.err}
		cm := columnMeta{Role: role, Name: name, Descr: bl.dt.Descr, Shape: bl.rowShape}
		if bl.err != nil {
			cm.Err = bl.err.Error()
		} else {
			switch out := bl.out.(type) {
			case *fileSink:
				if err := finishFile(out, bl, sc.rows); err != nil {
					return nil, err
				}
				cm.File, cm.Size = filepath.Base(out.f.Name()), out.hdr+out.n
			case *memSink:
				a := &memArray{dt: bl.dt, rowShape: bl.rowShape, rows: sc.rows, rb: bl.rb, b: out.b}
				c.data, c.npy = a, npyFile(a)
			case nil:
				a := &redoArray{s: s, sc: sc, field: bl.name, dt: bl.dt, rowShape: bl.rowShape, rb: bl.rb}
				c.data, c.npy = a, npyFile(a)
			}
		}
		meta.Columns = append(meta.Columns, cm)
		add(role, name, c)
	}
	for _, f := range s.Fields {
		ids, ext := sc.ids[f]
		if !ext && !sc.remote[f] {
			continue
		}
		lc := &lazyColumn{s: s, field: f, rows: sc.rows, ids: ids, remote: sc.remote[f]}
		cm := columnMeta{Role: roleField, Name: f, Lazy: true}
		if sc.remote[f] {
			lc.descs, lc.order = sc.descs, sc.order
			for _, d := range sc.descs {
				cm.Descs, cm.First = append(cm.Descs, d.uid), append(cm.First, d.first)
			}
		}
		if sc.b != nil {
			name, err := sc.writeLazy(lc)
			if err != nil {
				return nil, err
			}
			cm.File = name
		}
		meta.Columns = append(meta.Columns, cm)
		add(roleField, f, &Column{Name: f, Rows: sc.rows, lazy: lc})
	}
	if sc.b == nil {
		return t, nil
	}
	raw, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	if sc.gate != nil && !sc.gate() {
		return nil, errMoot
	}
	e, err := sc.b.Commit(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: commit: %w", errSpill, err)
	}
	// Serve the committed files; the builders' handles are closed.
	for i, cm := range meta.Columns {
		if cm.File != "" && !cm.Lazy {
			cols[i].npy, cols[i].data = entryColumn(t, e, cm, sc.rows)
		}
	}
	return t, nil
}

// finishFile writes the .npy header into the room left for it and closes the file.
func finishFile(out *fileSink, bl *builder, rows int) error {
	if err := out.sync(); err != nil {
		return err
	}
	out.buf = nil
	out.releaseSpares()
	hdr := encode.NPYHeader(bl.dt, append([]int{rows}, bl.rowShape...))
	if int64(len(hdr)) != out.hdr {
		return fmt.Errorf("npy header of %d bytes where %d were left", len(hdr), out.hdr)
	}
	if _, err := out.f.WriteAt(hdr, 0); err != nil {
		return fmt.Errorf("%w: %w", errSpill, err)
	}
	return out.f.Close()
}

// writeLazy stores a lazy column's datum ids (and, for remote fields, the merge order) in the
// entry, so a later mount fills its rows without scanning the events.
func (sc *scanState) writeLazy(lc *lazyColumn) (string, error) {
	sc.files++
	name := fmt.Sprintf("c%d.ids", sc.files)
	f, err := sc.b.Create(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errSpill, err)
	}
	defer f.Close()
	var order []int32
	if lc.remote {
		order = sc.order
	}
	raw, err := json.Marshal(struct {
		IDs   []string `json:"ids,omitempty"`
		Order []int32  `json:"order,omitempty"`
	}{lc.ids, order})
	if err != nil {
		return "", err
	}
	if err := sc.b.Reserve(int64(len(raw))); err != nil {
		return "", fmt.Errorf("%w: %w", errSpill, err)
	}
	if _, err := f.Write(raw); err != nil {
		return "", fmt.Errorf("%w: %w", errSpill, err)
	}
	return name, f.Close()
}

// fromEntry makes the Table of a committed entry.
func (s *Stream) fromEntry(e *cache.Entry) (*Table, error) {
	var meta entryMeta
	if err := json.Unmarshal(e.Meta, &meta); err != nil {
		return nil, fmt.Errorf("entry meta: %w", err)
	}
	if meta.Version != metaVersion {
		return nil, fmt.Errorf("entry meta version %d, want %d", meta.Version, metaVersion)
	}
	t := &Table{Rows: meta.Rows, Fields: map[string]*Column{}, Timestamps: map[string]*Column{}, stream: s}
	for _, cm := range meta.Columns {
		c := &Column{Name: cm.Name, Rows: meta.Rows, RowShape: cm.Shape}
		if c.RowShape == nil {
			c.RowShape = []int{}
		}
		switch {
		case cm.Err != "":
			c.Err = errors.New(cm.Err)
		case cm.Lazy:
			lc := &lazyColumn{s: s, field: cm.Name, rows: meta.Rows, remote: len(cm.Descs) > 0}
			if err := loadLazy(e, cm, lc); err != nil {
				return nil, err
			}
			c.lazy = lc
		default:
			dt, err := encode.ParseDtype(cm.Descr)
			if err != nil {
				return nil, err
			}
			c.Dtype = dt
			if _, err := rowBytes(dt, c.RowShape); err != nil {
				return nil, err
			}
			c.npy, c.data = entryColumn(t, e, cm, meta.Rows)
		}
		switch cm.Role {
		case roleTime:
			t.Time = c
		case roleSeq:
			t.SeqNum = c
		case roleField:
			t.Fields[cm.Name] = c
		case roleTS:
			t.Timestamps[cm.Name] = c
		default:
			return nil, fmt.Errorf("entry column of role %q", cm.Role)
		}
	}
	if t.Time == nil || t.SeqNum == nil {
		return nil, fmt.Errorf("entry without time or seq_num")
	}
	for _, f := range s.Fields {
		if t.Fields[f] == nil || t.Timestamps[f] == nil {
			return nil, fmt.Errorf("entry without field %s", f)
		}
	}
	return t, nil
}

func loadLazy(e *cache.Entry, cm columnMeta, lc *lazyColumn) error {
	f, err := e.Open(cm.File)
	if err != nil {
		return err
	}
	defer f.Close()
	var v struct {
		IDs   []string `json:"ids"`
		Order []int32  `json:"order"`
	}
	if err := json.NewDecoder(f).Decode(&v); err != nil {
		return fmt.Errorf("entry ids: %w", err)
	}
	lc.ids, lc.order = v.IDs, v.Order
	if !lc.remote && len(lc.ids) != lc.rows {
		return fmt.Errorf("entry ids: %d for %d rows", len(lc.ids), lc.rows)
	}
	if lc.remote {
		if len(cm.Descs) != len(cm.First) {
			return fmt.Errorf("entry descriptor ranges")
		}
		for i, d := range cm.Descs {
			end := lc.rows
			if i+1 < len(cm.First) {
				end = cm.First[i+1]
			}
			lc.descs = append(lc.descs, descRange{uid: d, first: cm.First[i], rows: end - cm.First[i]})
		}
	}
	return nil
}

// arrayReader returns run's ArrayReader, looking through a run that is opened lazily (from a
// cached skeleton) to the catalog's run.
func arrayReader(ctx context.Context, run catalog.Run) (catalog.ArrayReader, error) {
	if u, ok := run.(interface {
		Underlying(context.Context) (catalog.Run, error)
	}); ok {
		r, err := u.Underlying(ctx)
		if err != nil {
			return nil, err
		}
		run = r
	}
	ar, ok := run.(catalog.ArrayReader)
	if !ok {
		return nil, fmt.Errorf("run serves no arrays by row range")
	}
	return ar, nil
}
