package msgpack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/filestore"
)

// gatedReader holds reads past off until open is closed (or a deadline passes: the test then
// fails instead of hanging).
type gatedReader struct {
	r     io.ReaderAt
	off   int64
	open  chan struct{}
	t     *testing.T
	timed bool
}

func (g *gatedReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > g.off {
		select {
		case <-g.open:
		case <-time.After(10 * time.Second):
			if !g.timed {
				g.timed = true
				g.t.Error("the follower read nothing while the pass waited for it")
			}
		}
	}
	return g.r.ReadAt(p, off)
}

// seenPage is what a test keeps of a page.
type seenPage struct {
	first int
	seq   []int64
	img   []float64 // element 0 of each row
}

func keepPage(p *catalog.EventPage) seenPage {
	s := seenPage{first: p.FirstRow, seq: append([]int64(nil), p.SeqNum...)}
	for i := range p.Len() {
		a := p.Data["img"].At(i).(*catalog.NDArray)
		s.img = append(s.img, math.Float64frombits(binary.LittleEndian.Uint64(a.Data)))
	}
	return s
}

// TestEarlyRunFollowsThePass: an index pass that offers an early run (a big event page) has
// its EventPages read pages while the pass is still reading: the pass's reads past the middle
// of the file wait until the follower has had its first page. What the follower reads is what
// the finished run's EventPages reads: two stretches of corrupt bytes the pass passed over
// are jumped, a page of another descriptor is left out, and the rows counted agree; in a file cut
// in the middle of its last page (no stop), that page is left out and logged once, by the pass.
// Only the finished file ends with a stop (endsWithStop).
func TestEarlyRunFollowsThePass(t *testing.T) {
	for _, cut := range []bool{false, true} {
		t.Run(fmt.Sprint("cut=", cut), func(t *testing.T) { testFollow(t, cut) })
	}
}

func testFollow(t *testing.T, cut bool) {
	const width, rows, pages = 40_000, 4, 8 // a page is 1.28 MB: more than bigDocument
	path := filepath.Join(t.TempDir(), "run.msgpack")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w := NewWriter(bw)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Write("start", m{"uid": "u", "time": 1.0}))
	for _, d := range []string{"d", "other"} {
		must(w.Write("descriptor", m{"uid": d, "run_start": "u", "time": 1.0, "name": d, "data_keys": m{
			"img": m{"dtype": "array", "shape": []any{int64(width)}, "source": "s"}}}))
	}
	row := 0
	for i := range pages {
		desc := "d"
		if i == 5 {
			desc = "other"
		}
		if i == 3 || i == 6 {
			must(bw.Flush())
			if _, err := bw.Write(bytes.Repeat([]byte{0xc1}, 100)); err != nil { // corrupt bytes
				t.Fatal(err)
			}
		}
		arr := &catalog.NDArray{Dtype: "<f8", Shape: []int{rows, width}, Data: make([]byte, 8*rows*width)}
		var times, seqs []any
		for k := range rows {
			binary.LittleEndian.PutUint64(arr.Data[8*width*k:], math.Float64bits(float64(row)))
			times, seqs = append(times, float64(row)), append(seqs, int64(row+1))
			row++
		}
		must(w.Write("event_page", m{"descriptor": desc, "time": times, "seq_num": seqs, "data": m{"img": arr},
			"timestamps": m{"img": times}}))
	}
	if !cut {
		must(w.Write("stop", m{"uid": "s", "run_start": "u", "time": 2.0, "exit_status": "success"}))
	}
	must(bw.Flush())
	if cut {
		fi, err := f.Stat()
		must(err)
		must(f.Truncate(fi.Size() - 100_000))
	}
	must(f.Close())

	file, err := os.Open(path)
	must(err)
	defer file.Close()
	fi, err := file.Stat()
	must(err)
	if endsWithStop(file, fi.Size()) == cut {
		t.Errorf("endsWithStop %v for a file cut %v", !cut, cut)
	}
	log, logs := testLogger()
	g := &gatedReader{r: file, off: fi.Size() / 2, open: make(chan struct{}), t: t}
	x := newIndexer(path, g, fi.Size(), fi.ModTime(), nil, log)
	prog := newProgress()
	x.prog = prog
	var followed []seenPage
	var ferr error
	var wg sync.WaitGroup
	var er *earlyRun
	calls := 0
	x.early = func(desc string) {
		calls++
		if desc != "d" {
			t.Errorf("early run at descriptor %q", desc)
		}
		er = newEarlyRun(path, fi, x.ix.start, prog)
		descs, _ := er.Descriptors(context.Background())
		if len(descs) != 2 {
			t.Errorf("%d descriptors known early, want 2", len(descs))
		}
		if _, err := er.Stop(context.Background()); err == nil {
			t.Errorf("a stop before the pass ended")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			ferr = er.EventPages(context.Background(), desc, 0, -1, []string{"img"}, func(p *catalog.EventPage) error {
				followed = append(followed, keepPage(p))
				once.Do(func() { close(g.open) })
				return nil
			})
		}()
	}
	ix, err := x.build()
	if err == nil {
		ix.ino, ix.dev = filestore.StatIDs(fi)
	}
	prog.finish(ix, err)
	must(err)
	wg.Wait()
	must(ferr)
	if calls != 1 {
		t.Fatalf("early run offered %d times", calls)
	}
	if len(ix.gaps) != 2 || !strings.Contains(strings.Join(logs.lines(), "\n"), "skipping bad document") {
		t.Errorf("gaps %v; log: %q", ix.gaps, logs.lines())
	}
	var read []seenPage
	must(newRun(path, ix).EventPages(context.Background(), "d", 0, -1, []string{"img"}, func(p *catalog.EventPage) error {
		read = append(read, keepPage(p))
		return nil
	}))
	want := pages - 1 // the other descriptor's page
	if cut {
		want--
		if n := strings.Count(strings.Join(logs.lines(), "\n"), "incomplete last document"); n != 1 {
			t.Errorf("the cut page logged %d times: %q", n, logs.lines())
		}
	}
	if len(read) != want || len(followed) != len(read) {
		t.Fatalf("followed %d pages, the run reads %d, want %d", len(followed), len(read), want)
	}
	for i := range read {
		if followed[i].first != read[i].first || !slices.Equal(followed[i].seq, read[i].seq) || !slices.Equal(followed[i].img, read[i].img) {
			t.Errorf("page %d: followed %+v, read %+v", i, followed[i], read[i])
		}
	}
	// Rows [6, 14) once the pass has ended: the pages the run gives for them.
	var part, runPart []seenPage
	must(er.EventPages(context.Background(), "d", 6, 14, []string{"img"}, func(p *catalog.EventPage) error {
		part = append(part, keepPage(p))
		return nil
	}))
	must(newRun(path, ix).EventPages(context.Background(), "d", 6, 14, []string{"img"}, func(p *catalog.EventPage) error {
		runPart = append(runPart, keepPage(p))
		return nil
	}))
	if len(part) == 0 || len(part) != len(runPart) {
		t.Fatalf("rows 6-14: %d pages, the run gives %d", len(part), len(runPart))
	}
	for i := range part {
		if part[i].first != runPart[i].first || !slices.Equal(part[i].seq, runPart[i].seq) || !slices.Equal(part[i].img, runPart[i].img) {
			t.Errorf("rows 6-14, page %d: %+v, the run's %+v", i, part[i], runPart[i])
		}
	}
	if stop, err := er.Stop(context.Background()); (err == nil) == cut || (stop == nil) != cut {
		t.Errorf("stop once the pass ended: %v, %v", stop, err)
	}
}

// TestEndsWithStop: a file whose last document is a stop, and files whose end is not one.
func TestEndsWithStop(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	if err := w.Write("start", m{"uid": "u", "time": 1.0}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write("stop", m{"uid": "s", "run_start": "u", "time": 2.0, "exit_status": "success"}); err != nil {
		t.Fatal(err)
	}
	stopped := b.Bytes()
	// A stop that holds stop-like pairs nested 40 deep: each ends before the file does, the
	// outer one last. Checking each costs what follows it (quadratic in stopTail: 0.4 s for a
	// 60 KiB tail of them): endsWithStop gives up after maxStopTries, and the file offers no
	// early run.
	nested := []byte("\x92\xa4stop\x80")
	for range 40 {
		nested = append(append([]byte("\x92\xa4stop\x82\x00"), nested...), 0x01, 0x00)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"stop last", stopped, true},
		{"a byte after the stop", append(bytes.Clone(stopped), 0xc0), false},
		{"stop cut", stopped[:len(stopped)-1], false},
		{"no stop", stopped[:bytes.LastIndex(stopped, []byte(stopPair))], false},
		{"empty", nil, false},
		{"stop-likes nested in the stop", nested, false},
		{"stop-likes nested in the stop, within maxStopTries", nested[25*8 : len(nested)-25*2], true},
	} {
		if got := endsWithStop(bytes.NewReader(tc.data), int64(len(tc.data))); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestPublishCostIsNotTheGaps: a pass tells its followers how far it is every publishEvery
// bytes; what a publish costs must not grow with the gaps found so far. A file's corrupt
// stretches are untrusted input: a big file of many small ones made every publish copy them
// all (quadratic in the file's size). Measured in bytes allocated, not time.
func TestPublishCostIsNotTheGaps(t *testing.T) {
	const gaps = 100_000
	x := newIndexer("run.msgpack", bytes.NewReader(nil), 1<<40, time.Time{}, nil, slog.New(slog.DiscardHandler))
	x.prog = newProgress()
	for i := range int64(gaps) {
		x.gap(10*i, 10*i+5, "event", errors.New("bad"))
	}
	x.ix.end = 10 * gaps
	x.prog.publish(x.ix)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range int64(4) {
		x.gap(10*(gaps+i), 10*(gaps+i)+5, "event", errors.New("bad"))
		x.ix.end = 10 * (gaps + i + 1)
		x.prog.publish(x.ix)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
		t.Errorf("4 publishes with %d gaps allocated %d bytes", gaps, got)
	}
	end, gs, _, _, _, _ := x.prog.snapshot()
	if end != 10*(gaps+4) || len(gs) != gaps+4 {
		t.Errorf("published end %d, %d gaps; want %d, %d", end, len(gs), 10*(gaps+4), gaps+4)
	}
}
