package table

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sort"

	"github.com/brokerfs/brokerfs/encode"
)

// A stream's table is what databroker's run.<stream>.read() gives as one data frame, as one
// file: seq_num, time, time_iso, then every field with one value per event, one row per
// event (the merged rows of the stream's columns). It is <stream>.csv and <stream>.parquet.

// TableColumn is one column of a stream's table.
type TableColumn struct {
	// Name is the column's name, unique in the table: the data key, or the data key followed
	// by "_" as often as it takes to differ from seq_num, time, time_iso and every other field.
	Name string
	// Field is the data key; "" for seq_num, time and time_iso.
	Field string
	// Meta is what the data key says of the field: units, source and dtype, those that it
	// gives as strings. Nil for seq_num, time and time_iso.
	Meta map[string]string
	// ISO: the time_iso column, the event times as UTC date-times.
	ISO bool

	col *Column
}

// Names of the table's first columns.
const (
	ColSeqNum  = "seq_num"
	ColTime    = "time"
	ColTimeISO = "time_iso"
)

// TableColumns lists the columns of the table: seq_num, time, time_iso, then the fields in
// the descriptors' order (the first descriptor's data keys by name, then those that a later
// descriptor adds, by name), those with one value per event only: fields with rows of one or
// more dimensions, external fields (filled by handlers), complex fields and fields whose
// values cannot form one array (their .npy fails) are left out.
func (t *Table) TableColumns() []TableColumn {
	cols := []TableColumn{
		{Name: ColSeqNum, col: t.SeqNum},
		{Name: ColTime, col: t.Time},
		{Name: ColTimeISO, ISO: true},
	}
	used := map[string]bool{ColSeqNum: true, ColTime: true, ColTimeISO: true}
	order := t.stream.fieldOrder()
	for _, f := range order {
		used[f] = true
	}
	for _, f := range order {
		c := t.Fields[f]
		if c == nil || c.lazy != nil || c.Err != nil || len(c.RowShape) != 0 || c.Dtype.Kind() == 'c' || c.Dtype.Kind() == 0 {
			continue
		}
		name := f
		if name == ColSeqNum || name == ColTime || name == ColTimeISO {
			for used[name] {
				name += "_"
			}
			used[name] = true
		}
		cols = append(cols, TableColumn{Name: name, Field: f, Meta: t.stream.keyMeta(f), col: c})
	}
	return cols
}

// fieldOrder is the stream's fields in the descriptors' order: each descriptor's data keys
// by name, a key once. (The order of keys within a document is not kept by every catalog,
// so within one descriptor it is by name.)
func (s *Stream) fieldOrder() []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range s.Descs {
		keys := make([]string, 0, len(d.DataKeys))
		for k := range d.DataKeys {
			if _, shown := s.Keys[k]; shown && !seen[k] {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			seen[k] = true
		}
		out = append(out, keys...)
	}
	return out
}

// keyMeta is the units, source and dtype of data key f in the first descriptor that has it,
// those given as strings.
func (s *Stream) keyMeta(f string) map[string]string {
	m := map[string]string{}
	for _, d := range s.Descs {
		if _, ok := d.DataKeys[f]; !ok {
			continue
		}
		dks, _ := d.Doc["data_keys"].(map[string]any)
		dk, _ := dks[f].(map[string]any)
		for _, k := range []string{"units", "source", "dtype"} {
			if v, ok := dk[k].(string); ok {
				m[k] = v
			}
		}
		break
	}
	return m
}

// tableArrays returns the columns' names and rows.
func (t *Table) tableArrays(ctx context.Context, cols []TableColumn) ([]string, []*Column, error) {
	names := make([]string, len(cols))
	cs := make([]*Column, len(cols))
	for i, tc := range cols {
		names[i] = tc.Name
		if tc.ISO {
			times, err := t.Time.Array(ctx)
			if err != nil {
				return nil, nil, err
			}
			cs[i] = &Column{Name: ColTimeISO, Dtype: encode.Unicode(encode.ISOTimeLen), RowShape: []int{}, Rows: t.Rows, data: &isoArray{times: times}}
			continue
		}
		cs[i] = tc.col
	}
	return names, cs, nil
}

// TableCSV is the table as CSV text (<stream>.csv), formatted once as Table.CSV formats:
// values as in the per-field .csv files, time_iso as "2024-01-02T03:04:05.123456+00:00" (""
// for a time that is NaN, infinite or outside years 1-9999).
func (t *Table) TableCSV(ctx context.Context) (File, error) {
	names, cs, err := t.tableArrays(ctx, t.TableColumns())
	if err != nil {
		return nil, err
	}
	return t.CSV(ctx, "table", names, cs)
}

// isoArray is the time_iso column: the event times as "<U32" ISO 8601 text.
type isoArray struct {
	times encode.Array // <f8
}

func (a *isoArray) Dtype() encode.Dtype { return encode.Unicode(encode.ISOTimeLen) }
func (a *isoArray) RowShape() []int     { return []int{} }
func (a *isoArray) Rows() int           { return a.times.Rows() }

func (a *isoArray) ReadRows(ctx context.Context, from, to int, dst []byte) error {
	if a.times.Dtype().Descr != "<f8" {
		return fmt.Errorf("event times of dtype %s", a.times.Dtype().Descr)
	}
	raw := make([]byte, 8*(to-from))
	if err := a.times.ReadRows(ctx, from, to, raw); err != nil {
		return err
	}
	rb := 4 * encode.ISOTimeLen
	var text []byte
	for i := range to - from {
		out := dst[i*rb : (i+1)*rb]
		us, ok := encode.UnixMicros(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		if !ok {
			clear(out)
			continue
		}
		text = encode.AppendISOTime(text[:0], us)
		encode.PutUnicode(out, string(text), encode.ISOTimeLen)
	}
	return nil
}
