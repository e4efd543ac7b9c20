package jsonl_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
)

const benchEvents = 100_000

// writeBenchRun writes a run of n one-event lines with five scalar fields, as a RunEngine
// scanning a motor against four detectors writes it.
func writeBenchRun(b *testing.B, path string, n int) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w := jsonl.NewWriter(bw)
	dk := m{"dtype": "number", "shape": []any{}, "source": "PV"}
	_ = w.Write("start", m{"uid": "bench", "time": 1.0, "scan_id": int64(1), "plan_name": "scan"})
	_ = w.Write("descriptor", m{"uid": "d1", "run_start": "bench", "time": 1.0, "name": "primary",
		"data_keys": m{"motor": dk, "I0": dk, "Ion Ch 1": dk, "det": dk, "temp": dk}})
	for i := range n {
		t := 1700000000.0 + float64(i)*0.1
		_ = w.Write("event", m{"descriptor": "d1", "uid": fmt.Sprintf("e-%08d-0000-4000-8000-000000000000", i), "time": t, "seq_num": int64(i + 1),
			"data":       m{"motor": float64(i) * 0.01, "I0": 12345.678 + float64(i), "Ion Ch 1": int64(i % 1000), "det": 1e-7 * float64(i), "temp": 295.15},
			"timestamps": m{"motor": t, "I0": t, "Ion Ch 1": t, "det": t, "temp": t}, "filled": m{}})
	}
	_ = w.Write("stop", m{"uid": "s", "run_start": "bench", "time": 2.0, "exit_status": "success"})
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

// cpuTime is the process's user+system CPU time: on a shared, noisy machine it varies less
// than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func allocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// BenchmarkEventPages reads one field of a 100,000-event file through an indexed run.
func BenchmarkEventPages(b *testing.B) {
	dir := b.TempDir()
	writeBenchRun(b, filepath.Join(dir, "bench.jsonl"), benchEvents)
	c, err := jsonl.Open([]string{dir}, jsonl.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	run, err := c.Run(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := run.Descriptors(ctx); err != nil { // build the index outside the loop
		b.Fatal(err)
	}
	for _, fields := range [][]string{{"I0"}, nil} {
		name := "one-field"
		if fields == nil {
			name = "all-fields"
		}
		b.Run(name, func(b *testing.B) {
			a0, c0, rounds := allocs(), cpuTime(), 0
			for b.Loop() {
				rows, sum := 0, 0.0
				err := run.EventPages(ctx, "d1", 0, -1, fields, func(p *catalog.EventPage) error {
					rows += p.Len()
					for _, v := range p.Data["I0"].F {
						sum += v
					}
					return nil
				})
				if err != nil || rows != benchEvents {
					b.Fatalf("%d rows, %v", rows, err)
				}
				rounds++
			}
			events := float64(rounds * benchEvents)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
			b.ReportMetric(float64(allocs()-a0)/events, "allocs/event")
			b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/events, "cpu-ns/event")
		})
	}
}

// BenchmarkIndex opens a 100,000-event run afresh and builds its index (Descriptors).
func BenchmarkIndex(b *testing.B) {
	dir := b.TempDir()
	writeBenchRun(b, filepath.Join(dir, "bench.jsonl"), benchEvents)
	ctx := context.Background()
	a0, c0, rounds := allocs(), cpuTime(), 0
	for b.Loop() {
		c, _ := jsonl.Open([]string{dir}, jsonl.Options{})
		run, err := c.Run(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := run.Descriptors(ctx); err != nil {
			b.Fatal(err)
		}
		rounds++
	}
	events := float64(rounds * benchEvents)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	b.ReportMetric(float64(allocs()-a0)/events, "allocs/event")
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/events, "cpu-ns/event")
}

// BenchmarkRuns lists 10,000 small run files: cold (a new catalog reads every first line) and
// warm (the same catalog again: only stats).
func BenchmarkRuns(b *testing.B) {
	const files = 10_000
	dir := b.TempDir()
	for i := range files {
		uid := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
		docs := []catalog.Document{
			{Name: "start", Doc: m{"uid": uid, "time": float64(i), "scan_id": int64(i), "plan_name": "count",
				"detectors": []any{"det"}, "versions": m{"bluesky": "1.14.1", "ophyd": "1.10.6"}, "sample": "Si"}},
			{Name: "descriptor", Doc: m{"uid": uid + "-d", "run_start": uid, "time": float64(i), "data_keys": m{}}},
			{Name: "stop", Doc: m{"uid": uid + "-s", "run_start": uid, "time": float64(i), "exit_status": "success"}},
		}
		if err := jsonl.WriteRun(filepath.Join(dir, uid+".jsonl"), docs); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	check := func(b *testing.B, c *jsonl.Catalog) {
		starts, err := c.Runs(ctx)
		if err != nil || len(starts) != files {
			b.Fatalf("%d runs, %v", len(starts), err)
		}
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			c, _ := jsonl.Open([]string{dir}, jsonl.Options{})
			check(b, c)
		}
	})
	b.Run("warm", func(b *testing.B) {
		c, _ := jsonl.Open([]string{dir}, jsonl.Options{})
		check(b, c)
		for b.Loop() {
			check(b, c)
		}
	})
}
