package tiled

import (
	"context"
	"flag"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

// Benchmarks against servers with 20 ms added to every request (a WAN round trip). They
// report requests per operation; the targets of issue 10 are: listing 1,000 runs in ≤ 10
// requests, opening a run in ≤ 3, one frame of a big array in one request of about one
// frame, a 100 MB field at ≥ 0.8x the server's own bandwidth. Run with
//
//	go test -run '^$' -bench . -benchtime 5x ./catalog/tiled
const benchLatency = 20 * time.Millisecond

func BenchmarkListRuns1000(b *testing.B) {
	f := newFake(b, manyRuns(1000))
	f.latency = benchLatency
	c, err := Open(context.Background(), f.url(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	before := f.requests.Load()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		starts, err := c.Runs(context.Background())
		if err != nil || len(starts) != 1000 {
			b.Fatal(len(starts), err)
		}
	}
	b.ReportMetric(float64(f.requests.Load()-before)/float64(b.N), "requests/op")
}

// BenchmarkOpenRun opens the recorded qxscan run (185 events, 290 baseline fields) on the
// replayed server and reads its descriptors and every event.
func BenchmarkOpenRun(b *testing.B) {
	r := newReplay(b, "public")
	r.latency = benchLatency
	o := testOpts()
	c, err := Open(context.Background(), r.url(), o)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	before := c.Requests()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run, err := c.Run(ctx, "624e776a-a914-4a74-8841-babf1591fb29")
		if err != nil {
			b.Fatal(err)
		}
		descs, err := run.Descriptors(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for _, d := range descs {
			if err := run.EventPages(ctx, d.UID, 0, -1, nil, func(*catalog.EventPage) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(c.Requests()-before)/float64(b.N), "requests/op")
}

const (
	benchFrames = 200
	benchH      = 512
	benchW      = 512 // 512 KiB a frame, 100 MiB the field
)

func bigBench(b *testing.B, o Options) (*fake, catalog.ArrayReader, []byte) {
	uid := "big00000-0000-4000-8000-00000000b100"
	docs, data := bigRun(uid, benchFrames, benchH, benchW)
	f := newFake(b, [][]catalog.Document{docs})
	f.addArray(uid, "primary", "img", "u", 2, []int{benchFrames, benchH, benchW}, data)
	f.latency = benchLatency
	c, err := Open(context.Background(), f.url(), o)
	if err != nil {
		b.Fatal(err)
	}
	run, err := c.Run(context.Background(), uid)
	if err != nil {
		b.Fatal(err)
	}
	ar := run.(catalog.ArrayReader)
	if _, _, ok, err := ar.ArrayField(context.Background(), uid+"-d", "img"); !ok || err != nil {
		b.Fatal(ok, err)
	}
	return f, ar, data
}

// BenchmarkOneFrame reads frame k of a 200-frame field: one request of one frame's bytes.
func BenchmarkOneFrame(b *testing.B) {
	f, ar, _ := bigBench(b, Options{})
	frame := make([]byte, benchH*benchW*2)
	req, sent := f.requests.Load(), f.bytesSent.Load()
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ar.ReadArray(context.Background(), "big00000-0000-4000-8000-00000000b100-d", "img", i%benchFrames, i%benchFrames+1, frame); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(f.requests.Load()-req)/float64(b.N), "requests/op")
	b.ReportMetric(float64(f.bytesSent.Load()-sent)/float64(b.N), "server-bytes/op")
}

// BenchmarkField100MB reads the whole 100 MiB field by row range (8 requests in flight, of
// 12.5 MiB each); BenchmarkField100MBServer is the server's own bandwidth: one plain GET of the
// whole array into memory. With -tiled.rate the server sends each response at most that fast
// (a per-connection network limit), which parallel requests overcome.
func BenchmarkField100MB(b *testing.B) {
	f, ar, _ := bigBench(b, Options{})
	f.rate = *benchRate
	dst := make([]byte, benchFrames*benchH*benchW*2)
	req := f.requests.Load()
	b.SetBytes(int64(len(dst)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ar.ReadArray(context.Background(), "big00000-0000-4000-8000-00000000b100-d", "img", 0, benchFrames, dst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(f.requests.Load()-req)/float64(b.N), "requests/op")
}

func BenchmarkField100MBServer(b *testing.B) {
	f, _, _ := bigBench(b, Options{})
	f.rate = *benchRate
	u := f.url() + "/array/full/big00000-0000-4000-8000-00000000b100/primary/data/img"
	buf := make([]byte, benchFrames*benchH*benchW*2)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(res.Body, buf); err != nil {
			b.Fatal(err)
		}
		res.Body.Close()
	}
}

// benchRate limits each response to that many bytes per second (a per-connection network
// limit, which parallel requests overcome); 0 is loopback speed.
var benchRate = flag.Float64("tiled.rate", 0, "benchmarks: bytes per second per response of the synthetic server")
