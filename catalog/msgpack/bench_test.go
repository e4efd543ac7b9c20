package msgpack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

// The benchmark files are big (204 MB, 10,000 files): they are made once per machine in a
// cache directory under os.TempDir and reused by later runs.
const (
	benchEvents = 1_000_000
	benchUID    = "bench000-0000-4000-8000-000000000001"
	benchDesc   = benchUID + "-d1"
)

var benchDirOnce sync.Mutex

// benchCache returns the path of a cached benchmark input, making it with make (given a path
// to create) when missing. Other test processes may be making it at the same time (go test
// ./... runs packages in parallel, and sessions share the machine): each makes its own in a
// private temporary directory and renames it into place, so no one reads a half-made input.
func benchCache(b *testing.B, name string, build func(path string) error) string {
	b.Helper()
	benchDirOnce.Lock()
	defer benchDirOnce.Unlock()
	dir := filepath.Join(os.TempDir(), "brokerfs-msgpack-bench")
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	tmp, err := os.MkdirTemp(dir, name+".tmp")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if err := build(filepath.Join(tmp, name)); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tmp, name), path); err != nil {
		if _, statErr := os.Stat(path); statErr != nil {
			b.Fatal(err) // not another process's input already in place
		}
	}
	return path
}

// writeScalarHead writes the start and the descriptor (two scalar float fields x and y) of the
// benchmarks' runs.
func writeScalarHead(w *Writer, uid, desc string, t0 float64) error {
	docs := []catalog.Document{
		{Name: "start", Doc: map[string]any{"uid": uid, "time": t0, "scan_id": int64(1), "plan_name": "count"}},
		{Name: "descriptor", Doc: map[string]any{"uid": desc, "run_start": uid, "time": t0, "name": "primary",
			"data_keys": map[string]any{
				"x": map[string]any{"dtype": "number", "shape": []any{}, "source": "SIM:x"},
				"y": map[string]any{"dtype": "number", "shape": []any{}, "source": "SIM:y"}}}},
	}
	for _, d := range docs {
		if err := w.Write(d.Name, d.Doc); err != nil {
			return err
		}
	}
	return nil
}

// writeEvents writes a run of n single-row event_page documents with two scalar float
// fields, as suitcase-msgpack writes a run fed one event at a time.
func writeEvents(w io.Writer, n int, uid string) error {
	mw := NewWriter(w)
	desc := uid + "-d1"
	t0 := 1.7e9
	if err := writeScalarHead(mw, uid, desc, t0); err != nil {
		return err
	}
	// One set of maps and lists, refilled for every event: generating must not dominate.
	tl, ul, sl, xl, yl, txl, tyl := make([]any, 1), make([]any, 1), make([]any, 1), make([]any, 1), make([]any, 1), make([]any, 1), make([]any, 1)
	page := map[string]any{"time": tl, "uid": ul, "seq_num": sl, "descriptor": desc, "filled": map[string]any{},
		"data": map[string]any{"x": xl, "y": yl}, "timestamps": map[string]any{"x": txl, "y": tyl}}
	for i := range n {
		t := t0 + float64(i)*0.01
		tl[0], sl[0] = t, int64(i+1)
		ul[0] = uid36(i)
		xl[0], yl[0] = float64(i)*0.5, float64(i)*-0.25+1e-3
		txl[0], tyl[0] = t-0.001, t-0.002
		if err := mw.Write("event_page", page); err != nil {
			return err
		}
	}
	return mw.Write("stop", map[string]any{"uid": uid + "-stop", "run_start": uid, "time": t0 + float64(n), "exit_status": "success",
		"num_events": map[string]any{"primary": int64(n)}})
}

// uid36 makes a distinct 36-character uid without fmt (generating must not dominate).
func uid36(i int) string {
	b := []byte("00000000-0000-4000-8000-000000000000")
	for j, k := 7, i; j >= 0; j, k = j-1, k>>4 {
		b[j] = "0123456789abcdef"[k&15]
	}
	for j, k := 35, i; j >= 24; j, k = j-1, k>>4 {
		b[j] = "0123456789abcdef"[k&15]
	}
	return string(b)
}

func writeEventsFile(path string, n int, uid string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := writeEvents(bw, n, uid); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cpuTime is the process's user+system CPU time. The benchmark machine is shared, so CPU
// time per event is reported beside wall time: it does not count time spent waiting for a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func bench1M(b *testing.B) string {
	return benchCache(b, "events1M-v2.msgpack", func(path string) error { return writeEventsFile(path, benchEvents, benchUID) })
}

// BenchmarkEventPages1M reads one field of a million single-row event pages in one
// EventPages pass (the index is built before the timer starts).
func BenchmarkEventPages1M(b *testing.B) {
	path := bench1M(b)
	c, err := Open([]string{path}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	run := mustRun(b, c, benchUID)
	ctx := context.Background()
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		n, sum := 0, 0.0
		err := run.EventPages(ctx, benchDesc, 0, -1, []string{"x"}, func(p *catalog.EventPage) error {
			n += p.Len()
			for _, v := range p.Data["x"].F {
				sum += v
			}
			return nil
		})
		if err != nil || n != benchEvents {
			b.Fatalf("%d events, %v", n, err)
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&ms1)
	events := float64(b.N) * benchEvents
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	b.ReportMetric(float64(cpu.Nanoseconds())/events, "cpu-ns/event")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/events, "allocs/event")
}

// BenchmarkSkip1M walks the same file document by document with the bare skipper, decoding
// nothing: a floor for EventPages1M, and a gauge of how fast the machine is right now.
func BenchmarkSkip1M(b *testing.B) {
	path := bench1M(b)
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	cpu0 := cpuTime()
	for b.Loop() {
		w := newWindow(f, fi.Size(), scanWindow)
		for pos := int64(0); pos < fi.Size(); {
			bb, err := w.at(pos)
			n := 0
			if err == nil {
				n, err = skip(bb, 0)
			}
			for errors.Is(err, errShort) {
				if bb, err = w.more(pos, len(bb), n); err == nil {
					n, err = skip(bb, 0)
				}
			}
			if err != nil {
				b.Fatalf("offset %d: %v", pos, err)
			}
			pos += int64(n)
		}
		w.release()
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/benchEvents, "cpu-ns/event")
}

// BenchmarkIndex1M builds the index of a million-event file: the cost of a run's first use.
func BenchmarkIndex1M(b *testing.B) {
	path := bench1M(b)
	ctx := context.Background()
	cpu0 := cpuTime()
	for b.Loop() {
		c, err := Open([]string{path}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Run(ctx, benchUID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchEvents, "ns/event")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/benchEvents, "cpu-ns/event")
}

// BenchmarkWrite1M writes a million single-row event pages to a buffered discard writer.
func BenchmarkWrite1M(b *testing.B) {
	cpu0 := cpuTime()
	for b.Loop() {
		if err := writeEvents(bufio.NewWriter(io.Discard), benchEvents, benchUID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchEvents, "ns/event")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/benchEvents, "cpu-ns/event")
}

// runsDir is a cached directory of 10,000 small run files (a start, a descriptor, 20 events).
func runsDir(b *testing.B) string {
	return benchCache(b, "runs10k-v1", func(dir string) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for i := range 10_000 {
			uid := uid36(i)
			var buf bytes.Buffer
			if err := writeEvents(&buf, 20, uid); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, uid+".msgpack"), buf.Bytes(), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}

// BenchmarkRunsCold lists 10,000 run files with a new catalog: every start is read.
func BenchmarkRunsCold(b *testing.B) {
	dir := runsDir(b)
	ctx := context.Background()
	cpu0 := cpuTime()
	for b.Loop() {
		c, err := Open([]string{dir}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		starts, err := c.Runs(ctx)
		if err != nil || len(starts) != 10_000 {
			b.Fatalf("%d runs, %v", len(starts), err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")
}

// BenchmarkRunsWarm lists 10,000 unchanged run files again: one stat each, no reads.
func BenchmarkRunsWarm(b *testing.B) {
	dir := runsDir(b)
	ctx := context.Background()
	c, err := Open([]string{dir}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Runs(ctx); err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime()
	for b.Loop() {
		starts, err := c.Runs(ctx)
		if err != nil || len(starts) != 10_000 {
			b.Fatalf("%d runs, %v", len(starts), err)
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")
}

// Spectra: single-row event pages each holding a 4096-float64 msgpack-numpy array (32 KiB),
// as a detector's MCA spectrum stored by suitcase.
const (
	spectraRows = 2000
	spectraUID  = "spectra0-0000-4000-8000-000000000001"
)

func benchSpectra(b *testing.B) string {
	return benchCache(b, "spectra2k-v1.msgpack", func(path string) error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		w := NewWriter(bw)
		desc := spectraUID + "-d1"
		docs := []catalog.Document{
			{Name: "start", Doc: map[string]any{"uid": spectraUID, "time": 1.0}},
			{Name: "descriptor", Doc: map[string]any{"uid": desc, "run_start": spectraUID, "time": 1.0, "data_keys": map[string]any{
				"spectrum": map[string]any{"dtype": "array", "shape": []any{int64(4096)}}}}},
		}
		for _, d := range docs {
			if err := w.Write(d.Name, d.Doc); err != nil {
				return err
			}
		}
		arr := &catalog.NDArray{Dtype: "<f8", Shape: []int{1, 4096}, Data: make([]byte, 8*4096)}
		for i := range spectraRows {
			page := map[string]any{"descriptor": desc, "time": []any{float64(i)}, "seq_num": []any{int64(i + 1)},
				"data": map[string]any{"spectrum": arr}, "timestamps": map[string]any{"spectrum": []any{float64(i)}}}
			if err := w.Write("event_page", page); err != nil {
				return err
			}
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return f.Close()
	})
}

// BenchmarkEventPagesRanges reads a stream of 32 KiB rows four rows at a time, as the FUSE
// layer does for 128 KiB reads of a .npy: each call starts from the checkpoint before its
// rows, so the bytes walked per call are what matters.
func BenchmarkEventPagesRanges(b *testing.B) {
	c, err := Open([]string{benchSpectra(b)}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	run := mustRun(b, c, spectraUID)
	ctx := context.Background()
	cpu0 := cpuTime()
	for b.Loop() {
		for from := 0; from < spectraRows; from += 4 {
			n := 0
			err := run.EventPages(ctx, spectraUID+"-d1", from, from+4, []string{"spectrum"}, func(p *catalog.EventPage) error {
				n += p.Len()
				return nil
			})
			if err != nil || n < 4 {
				b.Fatalf("rows [%d, %d): %d, %v", from, from+4, n, err)
			}
		}
	}
	bytes := float64(spectraRows) * 8 * 4096 * float64(b.N)
	b.ReportMetric(bytes/b.Elapsed().Seconds()/1e6, "MB/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")
}

// pagedRows is the page size of the paged benchmark file: a million events in event_page
// documents of 10,000 rows each (as bench's scalar-1000000-p10000 run), six columns.
const pagedRows = 10_000

func benchPaged1M(b *testing.B) string {
	return benchCache(b, "paged1M-p10000-v1.msgpack", func(path string) error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		w := NewWriter(bw)
		desc := benchDesc
		t0 := 1.7e9
		if err := writeScalarHead(w, benchUID, desc, t0); err != nil {
			return err
		}
		for i := 0; i < benchEvents; i += pagedRows {
			k := min(pagedRows, benchEvents-i)
			tl, ul, sl, xl, yl, txl, tyl := make([]any, k), make([]any, k), make([]any, k), make([]any, k), make([]any, k), make([]any, k), make([]any, k)
			for j := range k {
				e := i + j
				t := t0 + float64(e)*0.01
				tl[j], sl[j], ul[j] = t, int64(e+1), uid36(e)
				xl[j], yl[j] = float64(e)*0.5, float64(e)*-0.25+1e-3
				txl[j], tyl[j] = t-0.001, t-0.002
			}
			page := map[string]any{"time": tl, "uid": ul, "seq_num": sl, "descriptor": desc, "filled": map[string]any{},
				"data": map[string]any{"x": xl, "y": yl}, "timestamps": map[string]any{"x": txl, "y": tyl}}
			if err := w.Write("event_page", page); err != nil {
				return err
			}
		}
		if err := w.Write("stop", map[string]any{"uid": benchUID + "-stop", "run_start": benchUID, "time": t0 + 1e4,
			"exit_status": "success", "num_events": map[string]any{"primary": int64(benchEvents)}}); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return f.Close()
	})
}

// readPaged reads every field of the paged file's stream, as a table scan does, and checks
// the row count and the sum of x (x of event i is i/2).
func readPaged(b *testing.B, run catalog.Run) {
	n, sum := 0, 0.0
	err := run.EventPages(context.Background(), benchDesc, 0, -1, []string{"x", "y"}, func(p *catalog.EventPage) error {
		n += p.Len()
		for _, v := range p.Data["x"].F {
			sum += v
		}
		return nil
	})
	if want := float64(benchEvents) * float64(benchEvents-1) / 4; err != nil || n != benchEvents || sum != want {
		b.Fatalf("%d events, sum %g (want %g), %v", n, sum, want, err)
	}
}

// BenchmarkIndexPages1M indexes the paged file: the first half of a first table scan.
func BenchmarkIndexPages1M(b *testing.B) {
	path := benchPaged1M(b)
	ctx := context.Background()
	cpu0 := cpuTime()
	for b.Loop() {
		c, err := Open([]string{path}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Run(ctx, benchUID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/op")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")
}

// BenchmarkEventPagesPaged1M reads the paged file's x and y (index built before the timer).
func BenchmarkEventPagesPaged1M(b *testing.B) {
	c, err := Open([]string{benchPaged1M(b)}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	run := mustRun(b, c, benchUID)
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		readPaged(b, run)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/op")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")
}

// BenchmarkFirstScanPaged1M is a first table scan of the paged file: open, index, read all.
func BenchmarkFirstScanPaged1M(b *testing.B) {
	path := benchPaged1M(b)
	cpu0 := cpuTime()
	for b.Loop() {
		c, err := Open([]string{path}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		readPaged(b, mustRun(b, c, benchUID))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/op")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")
}
