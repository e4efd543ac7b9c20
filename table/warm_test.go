package table

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/memory"
	"github.com/brokerfs/brokerfs/handlers"
)

// datumsRun counts a run's Datums calls; with hold set, a call for resource res-b waits until
// hold is closed.
type datumsRun struct {
	catalog.Run
	calls *atomic.Int64
	hold  chan struct{}
	held  chan struct{} // closed when a call waits on hold
}

func (r datumsRun) Datums(ctx context.Context, res string, fn func(*catalog.DatumPage) error) error {
	r.calls.Add(1)
	if r.hold != nil && res == "res-b" {
		close(r.held)
		<-r.hold
	}
	return r.Run.Datums(ctx, res, fn)
}

// frames is a handler of (1, 2) uint16 frames: element i of point n of file f.h5 is
// 1000*(f == "b") + 10*n + i.
type frames struct {
	path      string
	describes *atomic.Int64
}

func (h *frames) base() uint16 {
	if filepath.Base(h.path) == "b.h5" {
		return 1000
	}
	return 0
}

func (h *frames) Describe(context.Context, map[string]any) (string, []int, error) {
	h.describes.Add(1)
	return "<u2", []int{1, 2}, nil
}

func (h *frames) Read(_ context.Context, kw map[string]any) (*catalog.NDArray, error) {
	n, _ := handlers.IntKwarg(kw, "point_number", -1)
	a := &catalog.NDArray{Dtype: "<u2", Shape: []int{1, 2}, Data: make([]byte, 4)}
	for i := range 2 {
		binary.LittleEndian.PutUint16(a.Data[2*i:], h.base()+uint16(10*n+i))
	}
	return a, nil
}

func (h *frames) Files([]map[string]any) ([]string, error) { return []string{h.path}, nil }
func (h *frames) Close() error                             { return nil }

// warmRun is a run whose "primary" stream has an external field img over datums a0, a1 (of
// a.h5) and b0 (of b.h5), and a scalar x; its "baseline" stream has only scalars.
func warmRun() []catalog.Document {
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": 1.0}},
		{Name: "descriptor", Doc: m{"uid": "d1", "run_start": uid, "time": 1.0, "name": "primary", "data_keys": m{
			"img": m{"dtype": "array", "shape": []any{int64(1), int64(2)}, "source": "PV:img", "external": "FILESTORE:"},
			"x":   m{"dtype": "number", "shape": []any{}, "source": "PV:x"}}}},
		{Name: "descriptor", Doc: m{"uid": "d2", "run_start": uid, "time": 1.0, "name": "baseline", "data_keys": m{
			"y": m{"dtype": "number", "shape": []any{}, "source": "PV:y"}}}},
	}
	for _, r := range []string{"a", "b"} {
		docs = append(docs, catalog.Document{Name: "resource", Doc: m{"uid": "res-" + r, "spec": "AD_HDF5",
			"root": "/data", "resource_path": r + ".h5", "resource_kwargs": m{}, "run_start": uid}})
	}
	for i, d := range [][2]any{{"a", 0}, {"a", 1}, {"b", 0}} {
		id := fmt.Sprintf("%s%d", d[0], d[1])
		docs = append(docs, catalog.Document{Name: "datum", Doc: m{"resource": "res-" + d[0].(string), "datum_id": id,
			"datum_kwargs": m{"point_number": int64(d[1].(int))}}})
		docs = append(docs, catalog.Document{Name: "event", Doc: m{"uid": fmt.Sprint("e", i), "descriptor": "d1",
			"time": 2.0 + float64(i), "seq_num": int64(i + 1), "data": m{"img": id, "x": float64(i)},
			"timestamps": m{"img": 2.0, "x": 2.0}, "filled": m{"img": false}}})
	}
	docs = append(docs, catalog.Document{Name: "event", Doc: m{"uid": "e9", "descriptor": "d2", "time": 1.5,
		"seq_num": int64(1), "data": m{"y": 7.0}, "timestamps": m{"y": 1.5}}})
	return append(docs, catalog.Document{Name: "stop", Doc: m{"uid": "s1", "run_start": uid, "time": 99.0, "exit_status": "success"}})
}

// warmEnv opens warmRun with a Filler of frames handlers; it returns the streams by name.
func warmEnv(t *testing.T, run0 ...datumsRun) (map[string]*Stream, *Externals, *atomic.Int64, *atomic.Int64) {
	cat, err := memory.New(warmRun())
	if err != nil {
		t.Fatal(err)
	}
	r, err := cat.Run(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	calls, describes := &atomic.Int64{}, &atomic.Int64{}
	run := datumsRun{Run: r, calls: calls}
	if len(run0) > 0 {
		run.hold, run.held = run0[0].hold, run0[0].held
	}
	reg := handlers.NewRegistry()
	reg.Register("AD_HDF5", func(_ context.Context, path string, _ map[string]any) (handlers.Handler, error) {
		return &frames{path: path, describes: describes}, nil
	})
	log := slog.New(slog.DiscardHandler)
	filler := handlers.NewFiller(handlers.FillerOptions{Registry: reg, Logger: log, Retry: 1})
	t.Cleanup(func() { filler.Close() })
	cfg := &Config{Logger: log, Stats: &Stats{}, Filler: filler}
	ext := NewExternals(run, filler)
	descs, _ := run.Descriptors(context.Background())
	streams := map[string]*Stream{}
	for _, d := range descs {
		streams[d.Name] = NewStream(cfg, run, ext, d.Name, []*catalog.Descriptor{d}, nil, "")
	}
	return streams, ext, calls, describes
}

// Warm reads the datum documents once: the first datum is described from that pass, not from
// a pass of its own; the .npy is then sized from that description and reads every frame.
func TestWarmOnePassOverDatums(t *testing.T) {
	streams, ext, calls, describes := warmEnv(t)
	s := streams["primary"]
	s.Warm()
	ctx := context.Background()
	tb, err := s.Table(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := tb.Fields["img"].NPY(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := readAll(t, f, 4096)
	// Header padded to a page, then rows (1, 2) of a0, a1, b0.
	want := []uint16{0, 1, 10, 11, 1000, 1001}
	if len(b) != 4096+2*len(want) {
		t.Fatalf("img.npy is %d bytes, want %d", len(b), 4096+2*len(want))
	}
	for i, w := range want {
		if got := binary.LittleEndian.Uint16(b[4096+2*i:]); got != w {
			t.Errorf("flat[%d] = %d, want %d", i, got, w)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d Datums calls, want 2 (one per resource: one pass)", n)
	}
	if n := describes.Load(); n != 1 {
		t.Errorf("%d Describe calls, want 1", n)
	}
	// The first datum as warm found it, and another one as loaded.
	for _, c := range []struct {
		id, res string
		pn      int
	}{{"a0", "res-a", 0}, {"b0", "res-b", 0}, {"a1", "res-a", 1}} {
		ref, err := ext.firstOr(ctx, c.id)
		if err != nil {
			t.Fatalf("%s: %v", c.id, err)
		}
		pn, _ := handlers.IntKwarg(ref.kwargs, "point_number", -1)
		if ref.res.UID != c.res || pn != c.pn {
			t.Errorf("%s: resource %s point_number %d, want %s %d", c.id, ref.res.UID, pn, c.res, c.pn)
		}
	}
	if _, err := ext.firstOr(ctx, "nope"); err == nil {
		t.Error("an unknown datum id was found")
	}
}

// A stream without external fields warms nothing: no datum is read, no file opened.
func TestWarmScalarStream(t *testing.T) {
	streams, ext, calls, describes := warmEnv(t)
	s := streams["baseline"]
	s.Warm()
	if _, err := s.Table(context.Background()); err != nil {
		t.Fatal(err)
	}
	started := ext.first.Load() != nil
	if started || calls.Load() != 0 || describes.Load() != 0 {
		t.Errorf("warming %v, %d Datums calls, %d Describe calls: want nothing", started, calls.Load(), describes.Load())
	}
}

// The stream's scan, and sizing its external field's .npy, do not wait for every datum to
// load: here the load of the second resource's datums is held back while they run; the frames
// of that resource read once it is let go.
func TestWarmDoesNotWaitForAllDatums(t *testing.T) {
	hold, held := make(chan struct{}), make(chan struct{})
	streams, _, _, _ := warmEnv(t, datumsRun{hold: hold, held: held})
	s := streams["primary"]
	s.Warm()
	<-held // the load holds the Externals' lock from here until hold is closed
	ctx := context.Background()
	type result struct {
		f   File
		err error
	}
	done := make(chan result, 1)
	go func() {
		tb, err := s.Table(ctx)
		if err != nil {
			done <- result{nil, err}
			return
		}
		f, err := tb.Fields["img"].NPY(ctx)
		done <- result{f, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		close(hold)
		t.Fatal("the scan and the .npy's sizing waited for every datum to load")
	}
	close(hold)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got, want := r.f.Size(), int64(4096+2*6); got != want {
		t.Errorf("img.npy: %d bytes, want %d", got, want)
	}
	b := readAll(t, r.f, 4096)
	for i, w := range []uint16{0, 1, 10, 11, 1000, 1001} {
		if got := binary.LittleEndian.Uint16(b[4096+2*i:]); got != w {
			t.Errorf("flat[%d] = %d, want %d", i, got, w)
		}
	}
}
