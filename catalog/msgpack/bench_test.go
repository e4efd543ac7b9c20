package msgpack

import (
	"bufio"
	"context"
	"fmt"
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

func benchCache(b *testing.B, name string, make func(path string) error) string {
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
	tmp := path + ".tmp"
	os.RemoveAll(tmp)
	if err := make(tmp); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// writeEvents writes a run of n single-row event_page documents with two scalar float
// fields, as suitcase-msgpack writes a run fed one event at a time.
func writeEvents(w io.Writer, n int, uid string) error {
	mw := NewWriter(w)
	desc := uid + "-d1"
	t0 := 1.7e9
	docs := []catalog.Document{
		{Name: "start", Doc: map[string]any{"uid": uid, "time": t0, "scan_id": int64(1), "plan_name": "count"}},
		{Name: "descriptor", Doc: map[string]any{"uid": desc, "run_start": uid, "time": t0, "name": "primary",
			"data_keys": map[string]any{
				"x": map[string]any{"dtype": "number", "shape": []any{}, "source": "SIM:x"},
				"y": map[string]any{"dtype": "number", "shape": []any{}, "source": "SIM:y"}}}},
	}
	for _, d := range docs {
		if err := mw.Write(d.Name, d.Doc); err != nil {
			return err
		}
	}
	// One set of maps and lists, refilled for every event: generating must not dominate.
	tl, ul, sl, xl, yl, txl, tyl := make([]any, 1), make([]any, 1), make([]any, 1), make([]any, 1), make([]any, 1), make([]any, 1), make([]any, 1)
	page := map[string]any{"time": tl, "uid": ul, "seq_num": sl, "descriptor": desc, "filled": map[string]any{},
		"data": map[string]any{"x": xl, "y": yl}, "timestamps": map[string]any{"x": txl, "y": tyl}}
	for i := range n {
		t := t0 + float64(i)*0.01
		tl[0], sl[0] = t, int64(i+1)
		ul[0] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		xl[0], yl[0] = float64(i)*0.5, float64(i)*-0.25+1e-3
		txl[0], tyl[0] = t-0.001, t-0.002
		if err := mw.Write("event_page", page); err != nil {
			return err
		}
	}
	return mw.Write("stop", map[string]any{"uid": uid + "-stop", "run_start": uid, "time": t0 + float64(n), "exit_status": "success",
		"num_events": map[string]any{"primary": int64(n)}})
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
	return benchCache(b, "events1M-v1.msgpack", func(path string) error { return writeEventsFile(path, benchEvents, benchUID) })
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
	for b.Loop() {
		if err := writeEvents(bufio.NewWriter(io.Discard), benchEvents, benchUID); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchEvents, "ns/event")
}
