package table

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/parquet-go/parquet-go"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/encode"
)

// ParquetColumnsKey is the key of the Parquet file's key-value metadata that holds, as a JSON
// object, each field column's units, source and dtype from its data key:
// {"det": {"units": "counts", "source": "PV:det", "dtype": "number"}, ...}.
const ParquetColumnsKey = "brokerfs.columns"

// parquetRowGroup is the most rows in one row group: it bounds the memory of the writer.
const parquetRowGroup = 64 << 10

// parquetChunk is how many rows are read from the columns at a time.
const parquetChunk = 4096

// ErrTooLarge means a file cannot be built without a cache to hold it.
var ErrTooLarge = errors.New("too large to build in memory")

// Parquet is the table as a Parquet file (<stream>.parquet): the columns of TableColumns,
// typed (bool, int8-64, uint8-64, float, double, UTF-8 string; time_iso a UTC timestamp in
// microseconds, null where time_iso is empty), Snappy compressed, with ParquetColumnsKey in
// its key-value metadata. Built once: into the cache when the table is stored, else in memory
// within the stream's memory budget (64 MiB by default): a larger one fails with ErrTooLarge.
func (t *Table) Parquet(ctx context.Context) (File, error) {
	t.pqMu.Lock()
	defer t.pqMu.Unlock()
	if t.pq != nil {
		return t.pq, nil
	}
	f, err := t.buildParquet(ctx)
	if err != nil {
		return nil, err
	}
	t.pq = f
	return f, nil
}

func (t *Table) buildParquet(ctx context.Context) (File, error) {
	s := t.stream
	st := s.cfg.Store
	if s.key != "" && st != nil {
		key := s.key + "\x00parquet"
		if e, err := st.Lookup(key); err == nil {
			var m struct{ Size int64 }
			if json.Unmarshal(e.Meta, &m) == nil {
				return &osFile{size: m.Size, open: t.opener(e, "data.parquet")}, nil
			}
		}
		f, err := t.storeParquet(ctx, st, key)
		if err == nil {
			s.cfg.stats().ParquetWritten.Add(1)
			return f, nil
		}
		if errors.Is(err, context.Canceled) || !errors.Is(err, errSpill) {
			return nil, err
		}
		if _, logged := s.cfg.warned.LoadOrStore(rootCause(err), true); !logged {
			s.cfg.logger().Error("cannot store a Parquet file in the cache; serving without it", "dir", st.Dir(), "err", err)
		}
	}
	limit := s.cfg.budget()
	buf := &limitedBuffer{limit: limit}
	if err := t.writeParquet(ctx, buf); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("parquet table of stream %s: %w (more than %d MiB without a cache; its .csv has the same columns)", s.Name, ErrTooLarge, limit>>20)
		}
		return nil, err
	}
	return Bytes(buf.b.Bytes()), nil
}

// storeParquet writes the file into a cache entry; a storage failure wraps errSpill.
func (t *Table) storeParquet(ctx context.Context, st *cache.Store, key string) (File, error) {
	b, err := st.Build(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSpill, err)
	}
	defer b.Abort()
	out, err := b.Create("data.parquet")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSpill, err)
	}
	defer out.Close()
	w := &reservingWriter{b: b, w: out}
	if err := t.writeParquet(ctx, w); err != nil {
		return nil, err
	}
	if err := out.Close(); err != nil {
		return nil, fmt.Errorf("%w: %w", errSpill, err)
	}
	meta, _ := json.Marshal(struct{ Size int64 }{w.n})
	e, err := b.Commit(meta)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSpill, err)
	}
	return &osFile{size: w.n, open: t.opener(e, "data.parquet")}, nil
}

// reservingWriter reserves cache space before it writes.
type reservingWriter struct {
	b *cache.Builder
	w io.Writer
	n int64
}

func (r *reservingWriter) Write(p []byte) (int, error) {
	if err := r.b.Reserve(int64(len(p))); err != nil {
		return 0, fmt.Errorf("%w: %w", errSpill, err)
	}
	n, err := r.w.Write(p)
	r.n += int64(n)
	if err != nil {
		err = fmt.Errorf("%w: %w", errSpill, err)
	}
	return n, err
}

// limitedBuffer is a bytes.Buffer that refuses to grow past limit.
type limitedBuffer struct {
	b     bytes.Buffer
	limit int64
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if int64(l.b.Len())+int64(len(p)) > l.limit {
		return 0, ErrTooLarge
	}
	return l.b.Write(p)
}

// pqColumn is one column of the Parquet file being written.
type pqColumn struct {
	name  string
	node  parquet.Node
	arr   encode.Array
	dec   *encode.Decoder
	size  int  // element size
	iso   bool // time_iso: arr is the event times
	value func(v encode.Value) parquet.Value
}

// writeParquet writes the Parquet file of the table to w.
func (t *Table) writeParquet(ctx context.Context, w io.Writer) (err error) {
	// The library is not ours: whatever it panics with is this file's failure, not the mount's.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("write parquet table of stream %s: %v", t.stream.Name, r)
		}
	}()
	tcols := t.TableColumns()
	_, cs, err := t.tableArrays(ctx, tcols)
	if err != nil {
		return err
	}
	cols := make([]pqColumn, len(tcols))
	meta := map[string]map[string]string{}
	group := parquet.Group{}
	for i, tc := range tcols {
		c := &cols[i]
		c.name = tc.Name
		if tc.ISO {
			c.iso = true
			c.arr, err = t.Time.Array(ctx)
			if err != nil {
				return err
			}
			c.node = parquet.Optional(parquet.Timestamp(parquet.Microsecond))
		} else {
			c.arr, err = cs[i].Array(ctx)
			if err != nil {
				return err
			}
			if err := c.typed(); err != nil {
				return fmt.Errorf("column %s: %w", tc.Name, err)
			}
		}
		if c.dec, err = encode.NewDecoder(c.arr.Dtype()); err != nil {
			return fmt.Errorf("column %s: %w", tc.Name, err)
		}
		c.size = c.arr.Dtype().Size
		group[tc.Name] = c.node
		if tc.Field != "" && len(tc.Meta) > 0 {
			meta[tc.Name] = tc.Meta
		}
	}
	order := make([]string, len(cols))
	for i, c := range cols {
		order[i] = c.name
	}
	rawMeta, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	schema := parquet.NewSchema("stream", orderedGroup{Group: group, order: order})
	config, err := parquet.NewWriterConfig(
		schema,
		parquet.Compression(&parquet.Snappy),
		parquet.KeyValueMetadata(ParquetColumnsKey, string(rawMeta)),
		parquet.CreatedBy("brokerfs", "", ""),
		parquet.MaxRowsPerRowGroup(parquetRowGroup),
	)
	if err != nil {
		return fmt.Errorf("parquet writer: %w", err)
	}
	pw := parquet.NewWriter(w, config)

	raws := make([][]byte, len(cols))
	rows := make([]parquet.Row, 0, parquetChunk)
	for from := 0; from < t.Rows; from += parquetChunk {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("write parquet table: %w", err)
		}
		to := min(from+parquetChunk, t.Rows)
		for i, c := range cols {
			need := (to - from) * c.size
			if cap(raws[i]) < need {
				raws[i] = make([]byte, need)
			}
			raws[i] = raws[i][:need]
			if need > 0 {
				if err := c.arr.ReadRows(ctx, from, to, raws[i]); err != nil {
					return fmt.Errorf("read rows %d-%d of %s: %w", from, to, c.name, err)
				}
			}
		}
		rows = rows[:0]
		for r := range to - from {
			row := make(parquet.Row, len(cols))
			for i := range cols {
				c := &cols[i]
				b := raws[i][r*c.size : (r+1)*c.size]
				if c.iso {
					us, ok := encode.UnixMicros(math.Float64frombits(binary.LittleEndian.Uint64(b)))
					if ok {
						row[i] = parquet.Int64Value(us).Level(0, 1, i)
					} else {
						row[i] = parquet.NullValue().Level(0, 0, i)
					}
					continue
				}
				row[i] = c.value(c.dec.Decode(b)).Level(0, 0, i)
			}
			rows = append(rows, row)
		}
		if _, err := pw.WriteRows(rows); err != nil {
			return fmt.Errorf("write parquet rows: %w", err)
		}
	}
	return pw.Close()
}

// typed chooses the column's Parquet type from its dtype.
func (c *pqColumn) typed() error {
	dt := c.arr.Dtype()
	switch k := dt.Kind(); k {
	case 'b':
		c.node = parquet.Leaf(parquet.BooleanType)
		c.value = func(v encode.Value) parquet.Value { return parquet.BooleanValue(v.Bool) }
	case 'i':
		if dt.Size == 8 {
			c.node = parquet.Leaf(parquet.Int64Type)
			c.value = func(v encode.Value) parquet.Value { return parquet.Int64Value(v.Int) }
		} else {
			c.node = parquet.Int(8 * dt.Size)
			c.value = func(v encode.Value) parquet.Value { return parquet.Int32Value(int32(v.Int)) }
		}
	case 'u':
		c.node = parquet.Uint(8 * dt.Size)
		if dt.Size == 8 {
			c.value = func(v encode.Value) parquet.Value { return parquet.Int64Value(int64(v.Uint)) }
		} else {
			c.value = func(v encode.Value) parquet.Value { return parquet.Int32Value(int32(uint32(v.Uint))) }
		}
	case 'f':
		if dt.Size == 8 {
			c.node = parquet.Leaf(parquet.DoubleType)
			c.value = func(v encode.Value) parquet.Value { return parquet.DoubleValue(v.Float) }
		} else {
			// float16 and float32 are float32 exactly.
			c.node = parquet.Leaf(parquet.FloatType)
			c.value = func(v encode.Value) parquet.Value { return parquet.FloatValue(float32(v.Float)) }
		}
	case 'U':
		c.node = parquet.String()
		c.value = func(v encode.Value) parquet.Value { return parquet.ByteArrayValue(slices.Clone(v.Str)) }
	default:
		return fmt.Errorf("%w: no parquet type for dtype %s", encode.ErrUnsupported, dt.Descr)
	}
	return nil
}

// orderedGroup is a parquet.Group whose columns come in the table's order, not by name.
type orderedGroup struct {
	parquet.Group
	order []string
}

func (g orderedGroup) Fields() []parquet.Field {
	fields := g.Group.Fields()
	rank := make(map[string]int, len(g.order))
	for i, n := range g.order {
		rank[n] = i
	}
	slices.SortStableFunc(fields, func(a, b parquet.Field) int { return rank[a.Name()] - rank[b.Name()] })
	return fields
}
