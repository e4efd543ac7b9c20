package nodes

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/memory"
	"github.com/brokerfs/brokerfs/handlers"
)

// twoFiles is a handler whose frames depend on its file: a.h5 holds (1, 2, 3) frames, b.h5
// (1, 2, 2) frames; element i of point n is 1000*file + 100*n + i (file 0 for a, 1 for b).
type twoFiles struct {
	path      string
	describes *atomic.Int64
}

func (h *twoFiles) shape() []int {
	if filepath.Base(h.path) == "b.h5" {
		return []int{1, 2, 2}
	}
	return []int{1, 2, 3}
}

func (h *twoFiles) Describe(context.Context, map[string]any) (string, []int, error) {
	h.describes.Add(1)
	return "<u2", h.shape(), nil
}

func (h *twoFiles) Read(_ context.Context, kw map[string]any) (*catalog.NDArray, error) {
	n, _ := handlers.IntKwarg(kw, "point_number", -1)
	sh := h.shape()
	k := sh[0] * sh[1] * sh[2]
	file := 0
	if filepath.Base(h.path) == "b.h5" {
		file = 1
	}
	a := &catalog.NDArray{Dtype: "<u2", Shape: sh, Data: make([]byte, 2*k)}
	for i := range k {
		binary.LittleEndian.PutUint16(a.Data[2*i:], uint16(1000*file+100*n+i))
	}
	return a, nil
}

func (h *twoFiles) Files(kw []map[string]any) ([]string, error) { return []string{h.path}, nil }
func (h *twoFiles) Close() error                                { return nil }

// twoResourceRun is a run of resources a.h5 then b.h5 whose datums are datums (resource,
// id, point_number), and whose events' img are imgs.
func twoResourceRun(datums [][3]any, imgs []string) []catalog.Document {
	const uid = "f1000000-0000-4000-8000-000000000001"
	docs := []catalog.Document{
		{Name: "start", Doc: map[string]any{"uid": uid, "time": 1.0}},
		{Name: "descriptor", Doc: map[string]any{"uid": "d1", "run_start": uid, "time": 1.0, "name": "primary",
			"data_keys": map[string]any{"img": map[string]any{"dtype": "array", "shape": []any{}, "source": "PV:img", "external": "FILESTORE:"}}}},
	}
	for _, r := range []string{"a", "b"} {
		docs = append(docs, catalog.Document{Name: "resource", Doc: map[string]any{"uid": "res-" + r, "spec": "AD_HDF5",
			"root": "/data", "resource_path": r + ".h5", "resource_kwargs": map[string]any{}, "run_start": uid}})
	}
	for _, d := range datums {
		docs = append(docs, catalog.Document{Name: "datum", Doc: map[string]any{"resource": "res-" + d[0].(string),
			"datum_id": d[1], "datum_kwargs": map[string]any{"point_number": int64(d[2].(int))}}})
	}
	for i, img := range imgs {
		docs = append(docs, catalog.Document{Name: "event", Doc: map[string]any{"uid": fmt.Sprint("e", i), "descriptor": "d1",
			"time": 2.0 + float64(i), "seq_num": int64(i + 1), "data": map[string]any{"img": img},
			"timestamps": map[string]any{"img": 2.0}, "filled": map[string]any{"img": false}}})
	}
	return append(docs, catalog.Document{Name: "stop", Doc: map[string]any{"uid": "s", "run_start": uid, "time": 9.0, "exit_status": "success"}})
}

// The .npy of an external field is sized from the datum of its first row: in the usual run the
// run's first datum, which the handler warmed up early describes (once in all); not that one
// when another datum comes first; when two documents give one datum id, from the first, as its
// frames are read.
func TestExternalDescribedFromItsFirstRow(t *testing.T) {
	for _, c := range []struct {
		name      string
		datums    [][3]any
		imgs      []string
		shape     string
		want      func(row, i int) uint16
		describes int64 // 0: not checked
	}{
		{"usual", [][3]any{{"a", "a0", 0}, {"a", "a1", 1}}, []string{"a0", "a1"},
			"2, 1, 2, 3", func(row, i int) uint16 { return uint16(100*row + i) }, 1},
		{"first datum unused", [][3]any{{"a", "a0", 0}, {"b", "b0", 0}, {"b", "b1", 1}}, []string{"b1", "b0"},
			"2, 1, 2, 2", func(row, i int) uint16 { return uint16(1000 + 100*(1-row) + i) }, 0},
		{"duplicate id", [][3]any{{"a", "x0", 0}, {"a", "x1", 1}, {"b", "x0", 5}}, []string{"x0", "x1"},
			"2, 1, 2, 3", func(row, i int) uint16 { return uint16(100*row + i) }, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			describes := &atomic.Int64{}
			reg := handlers.NewRegistry()
			reg.Register("AD_HDF5", func(_ context.Context, path string, _ map[string]any) (handlers.Handler, error) {
				return &twoFiles{path: path, describes: describes}, nil
			})
			cat, err := memory.New(twoResourceRun(c.datums, c.imgs))
			if err != nil {
				t.Fatal(err)
			}
			tr := newTree(t, cat, func(cfg *Config) {
				cfg.Filler = handlers.NewFiller(handlers.FillerOptions{Registry: reg, Logger: cfg.Logger, Retry: 1})
				t.Cleanup(func() { cfg.Filler.Close() })
			})
			descr, shape, data := parseNPY(t, tr.mustRead("f1000000-0000-4000-8000-000000000001/primary/img.npy"))
			if descr != "<u2" || shape != c.shape {
				t.Fatalf("img.npy: %s (%s), want <u2 (%s)", descr, shape, c.shape)
			}
			per := len(data) / 2 / len(c.imgs)
			for i := range len(data) / 2 {
				if got, want := binary.LittleEndian.Uint16(data[2*i:]), c.want(i/per, i%per); got != want {
					t.Fatalf("flat[%d] = %d, want %d", i, got, want)
				}
			}
			if n := describes.Load(); c.describes != 0 && n != c.describes {
				t.Errorf("%d handler Describe calls, want %d", n, c.describes)
			}
		})
	}
}
