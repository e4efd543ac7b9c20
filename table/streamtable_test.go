package table

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/brokerfs/brokerfs/catalog"
)

// tableRun is a primary stream of two descriptors whose events interleave in time: the
// second descriptor adds a field, one field is 1-D, one is named "time".
func tableRun() []catalog.Document {
	num := func(units string) m {
		return m{"dtype": "number", "shape": []any{}, "source": "PV:" + units, "units": units}
	}
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": 1.0}},
		{Name: "descriptor", Doc: m{"uid": "d1", "run_start": uid, "time": 1.0, "name": "primary", "data_keys": m{
			"motor": num("mm"), "det": m{"dtype": "integer", "shape": []any{}, "source": "PV:det"},
			"ok":       m{"dtype": "boolean", "shape": []any{}, "source": "PV:ok", "units": nil},
			"label":    m{"dtype": "string", "shape": []any{}, "source": "PV:label"},
			"spectrum": m{"dtype": "array", "shape": []any{int64(2)}, "source": "PV:spectrum"},
			"time":     num("s")}}},
		{Name: "descriptor", Doc: m{"uid": "d2", "run_start": uid, "time": 1.5, "name": "primary", "data_keys": m{
			"motor": num("mm"), "extra": num("V")}}},
	}
	ev := func(d string, i int, t float64, data m) catalog.Document {
		ts := m{}
		for k := range data {
			ts[k] = t
		}
		return catalog.Document{Name: "event", Doc: m{"descriptor": d, "uid": fmt.Sprint(d, "-", i), "time": t, "seq_num": int64(i), "data": data, "timestamps": ts}}
	}
	docs = append(docs,
		ev("d1", 1, 1704164645.123456, m{"motor": 0.1, "det": int64(7), "ok": true, "label": "a,b", "spectrum": []any{1.0, 2.0}, "time": 5.0}),
		ev("d1", 2, 1704164647.5, m{"motor": math.Copysign(0, -1), "det": int64(-3), "ok": false, "label": "", "spectrum": []any{3.0, 4.0}, "time": 6.0}),
		ev("d2", 1, 1704164646, m{"motor": 1e-7, "extra": 2.5}),
		ev("d2", 2, math.NaN(), m{"motor": math.Inf(1), "extra": 3.0}),
		catalog.Document{Name: "stop", Doc: m{"uid": "s1", "run_start": uid, "time": 99.0, "exit_status": "success"}})
	return docs
}

func TestTableColumns(t *testing.T) {
	e := newEnv(t, tableRun(), "")
	tb := e.table("")
	var got []string
	for _, c := range tb.TableColumns() {
		got = append(got, c.Name+"="+c.Field)
	}
	want := "[seq_num= time= time_iso= det=det label=label motor=motor ok=ok time_=time extra=extra]"
	if fmt.Sprint(got) != want {
		t.Errorf("columns = %v\nwant      %v", got, want)
	}
	meta := map[string]map[string]string{}
	for _, c := range tb.TableColumns() {
		meta[c.Name] = c.Meta
	}
	if fmt.Sprint(meta["motor"]) != "map[dtype:number source:PV:mm units:mm]" || fmt.Sprint(meta["ok"]) != "map[dtype:boolean source:PV:ok]" {
		t.Errorf("metadata = %v", meta)
	}
}

// wantTableCSV is tableRun's table: rows merged by time (the NaN time sorts last), values
// as the per-field files write them, missing ones NaN (floats), 0, False or "".
const wantTableCSV = `seq_num,time,time_iso,det,label,motor,ok,time_,extra
1,1704164645.123456,2024-01-02T03:04:05.123456+00:00,7,"a,b",0.1,True,5.0,NaN
1,1704164646.0,2024-01-02T03:04:06.000000+00:00,0,"",1e-07,False,NaN,2.5
2,1704164647.5,2024-01-02T03:04:07.500000+00:00,-3,"",-0.0,False,6.0,NaN
2,NaN,"",0,"",inf,False,NaN,3.0
`

func TestTableCSV(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		e := newEnv(t, tableRun(), dir)
		version := ""
		if dir != "" {
			version = "v1"
		}
		f, err := e.table(version).TableCSV(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := string(readAll(t, f, 13)); got != wantTableCSV {
			t.Errorf("cache %q: table csv =\n%s\nwant\n%s", dir, got, wantTableCSV)
		}
		if dir != "" && e.cfg.Stats.CSVFormatted.Load() != 1 {
			t.Errorf("CSV formatted into the cache %d times, want 1", e.cfg.Stats.CSVFormatted.Load())
		}
	}
}

func TestTableParquet(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		e := newEnv(t, tableRun(), dir)
		version := ""
		if dir != "" {
			version = "v1"
		}
		tb := e.table(version)
		f, err := tb.Parquet(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		again, _ := tb.Parquet(context.Background())
		if again != f {
			t.Error("a second Parquet call built the file again")
		}
		b := readAll(t, f, 1000)
		checkParquet(t, b)
		if dir != "" {
			if n := e.cfg.Stats.ParquetWritten.Load(); n != 1 {
				t.Errorf("parquet written into the cache %d times, want 1", n)
			}
			// A new stream over the same store finds the entry: same bytes, nothing written.
			f2, err := e.table(version).Parquet(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readAll(t, f2, 1<<20), b) || e.cfg.Stats.ParquetWritten.Load() != 1 {
				t.Errorf("the cached parquet differs or was written again")
			}
		}
	}
}

func checkParquet(t *testing.T, b []byte) {
	t.Helper()
	pf, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, f := range pf.Schema().Fields() {
		lt := ""
		if l := f.Type().LogicalType(); l != nil {
			lt = "/" + l.String()
		}
		opt := ""
		if f.Optional() {
			opt = "?"
		}
		cols = append(cols, f.Name()+":"+f.Type().Kind().String()+lt+opt)
	}
	want := "[seq_num:INT64/INT(64,true) time:DOUBLE time_iso:INT64/TIMESTAMP(isAdjustedToUTC=true,unit=MICROS)? det:INT64/INT(64,true) label:BYTE_ARRAY/STRING motor:DOUBLE ok:BOOLEAN time_:DOUBLE extra:DOUBLE]"
	if fmt.Sprint(cols) != want {
		t.Errorf("schema = %v\nwant     %v", cols, want)
	}
	raw, ok := pf.Lookup(ParquetColumnsKey)
	var meta map[string]map[string]string
	if !ok || json.Unmarshal([]byte(raw), &meta) != nil {
		t.Fatalf("key-value metadata %s = %q", ParquetColumnsKey, raw)
	}
	if fmt.Sprint(meta["motor"]) != "map[dtype:number source:PV:mm units:mm]" || fmt.Sprint(meta["time_"]) != "map[dtype:number source:PV:s units:s]" {
		t.Errorf("metadata = %v", meta)
	}
	rows := make([]parquet.Row, 10)
	r := parquet.NewReader(bytes.NewReader(b))
	n, _ := r.ReadRows(rows)
	if n != 4 {
		t.Fatalf("%d rows, want 4", n)
	}
	var got []string
	for _, row := range rows[:n] {
		var vs []string
		for _, v := range row {
			vs = append(vs, v.String())
		}
		got = append(got, strings.Join(vs, " "))
	}
	wantRows := []string{
		"1 1.704164645123456e+09 1704164645123456 7 a,b 0.1 true 5 NaN",
		"1 1.704164646e+09 1704164646000000 0  1e-07 false NaN 2.5",
		"2 1.7041646475e+09 1704164647500000 -3  -0 false 6 NaN",
		"2 NaN <null> 0  +Inf false NaN 3",
	}
	for i := range wantRows {
		if got[i] != wantRows[i] {
			t.Errorf("row %d = %q\nwant    %q", i, got[i], wantRows[i])
		}
	}
}

// TestTableParquetTooLarge: without a cache, a Parquet file past the memory budget fails
// with ErrTooLarge instead of growing without bound.
func TestTableParquetTooLarge(t *testing.T) {
	var data []m
	for i := 0; i < 3000; i++ {
		data = append(data, m{"x": float64(i) * 1.1, "s": strings.Repeat("y", 20) + fmt.Sprint(i)})
	}
	e := newEnv(t, events(m{"x": m{"dtype": "number", "shape": []any{}}, "s": m{"dtype": "string", "shape": []any{}}}, data), "")
	e.cfg.MemBudget = 16 << 10
	_, err := e.table("").Parquet(context.Background())
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Parquet with a 16 KiB budget: %v, want ErrTooLarge", err)
	}
}

// BenchmarkTableFiles builds the CSV and Parquet tables of a stream of 20,000 events with ten
// fields, in memory (each iteration scans the events again: see the scan sub-benchmark).
func BenchmarkTableFiles(b *testing.B) {
	keys := m{}
	for k := 0; k < 10; k++ {
		keys[fmt.Sprint("f", k)] = m{"dtype": "number", "shape": []any{}, "units": "mm", "source": "PV"}
	}
	var data []m
	for i := 0; i < 20000; i++ {
		d := m{}
		for k := 0; k < 10; k++ {
			d[fmt.Sprint("f", k)] = float64(i)*0.001 + float64(k)
		}
		data = append(data, d)
	}
	e := newEnv(b, events(keys, data), "")
	// scan is the decoding that every table file's time includes.
	for _, kind := range []string{"scan", "csv", "parquet"} {
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				tb := e.table("")
				var f File
				var err error
				switch kind {
				case "scan":
					continue
				case "csv":
					f, err = tb.TableCSV(context.Background())
				default:
					f, err = tb.Parquet(context.Background())
				}
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(f.Size()), "bytes")
			}
		})
	}
}
