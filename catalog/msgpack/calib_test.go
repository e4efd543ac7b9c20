package msgpack

import (
	"context"
	"os"

	"github.com/brokerfs/brokerfs/catalog"
	"testing"
)

func BenchmarkCalibSkip(b *testing.B) {
	path := bench1M(b)
	f, _ := os.Open(path)
	fi, _ := f.Stat()
	defer f.Close()
	cpu0 := cpuTime()
	for b.Loop() {
		w := newWindow(f, fi.Size(), scanWindow)
		pos := int64(0)
		docs := 0
		for pos < fi.Size() {
			bb, _ := w.at(pos)
			n, err := skip(bb, 0)
			for err == errShort {
				bb, _ = w.more(pos, len(bb), n)
				n, err = skip(bb, 0)
			}
			pos += int64(n)
			docs++
		}
		w.release()
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ns/doc")
}

func BenchmarkCalibSum(b *testing.B) {
	path := bench1M(b)
	f, _ := os.Open(path)
	fi, _ := f.Stat()
	defer f.Close()
	cpu0 := cpuTime()
	var s byte
	for b.Loop() {
		w := newWindow(f, fi.Size(), scanWindow)
		for pos := int64(0); pos < fi.Size(); {
			bb, _ := w.at(pos)
			for _, c := range bb {
				s += c
			}
			pos += int64(len(bb))
		}
		w.release()
	}
	_ = s
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/1e6, "cpu-ns/doc")
}

func BenchmarkEventPages100k(b *testing.B) {
	path := benchCache(b, "events100k-v1.msgpack", func(path string) error { return writeEventsFile(path, 100_000, benchUID) })
	c, _ := Open([]string{path}, Options{})
	run := mustRun(b, c, benchUID)
	ctx := context.Background()
	for b.Loop() {
		n, sum := 0, 0.0
		err := run.EventPages(ctx, benchDesc, 0, -1, []string{"x"}, func(p *catalog.EventPage) error {
			n += p.Len()
			for _, v := range p.Data["x"].F {
				sum += v
			}
			return nil
		})
		if err != nil || n != 100_000 {
			b.Fatalf("%d events, %v", n, err)
		}
	}
}
