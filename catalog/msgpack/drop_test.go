package msgpack

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/brokerfs/brokerfs/catalog"
)

// resident reports, per page of the file, whether it is in the page cache (mincore).
func resident(t *testing.T, path string) []bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatal(errno)
	}
	out := make([]bool, len(vec))
	for i, v := range vec {
		out[i] = v&1 != 0
	}
	return out
}

// TestDropBehind: EventPages for a caller that keeps its reads (catalog.WithKeptReads) drops
// from the page cache the pages of its descriptor's documents larger than bigDocument once
// decoded, and leaves those of small documents; the pages it returns hold the values all the
// same. Without WithKeptReads nothing is dropped.
func TestDropBehind(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type == unix.TMPFS_MAGIC {
		t.Skip("the page cache of tmpfs cannot be dropped")
	}
	const width, rows = 4096, 64 // pages of 2 MiB
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": "u", "time": 1.0}},
		{Name: "descriptor", Doc: m{"uid": "d", "run_start": "u", "time": 1.0, "name": "primary",
			"data_keys": m{"spec": m{"dtype": "array", "shape": []any{int64(width)}, "source": "s"}, "x": m{"dtype": "number", "shape": []any{}, "source": "s"}}}},
		{Name: "descriptor", Doc: m{"uid": "d2", "run_start": "u", "time": 1.0, "name": "baseline",
			"data_keys": m{"x": m{"dtype": "number", "shape": []any{}, "source": "s"}}}},
	}
	for p := range 4 {
		col := make([]any, rows)
		for i := range col {
			data := make([]byte, 8*width)
			data[0] = byte(p*rows + i)
			col[i] = &catalog.NDArray{Dtype: "<f8", Shape: []int{width}, Data: data}
		}
		times, seqs, uids := make([]any, rows), make([]any, rows), make([]any, rows)
		for i := range rows {
			times[i], seqs[i], uids[i] = float64(p*rows+i), int64(p*rows+i+1), "e"
		}
		docs = append(docs, catalog.Document{Name: "event_page", Doc: m{"descriptor": "d", "time": times, "seq_num": seqs,
			"uid": uids, "data": m{"spec": col}, "timestamps": m{"spec": times}}})
		// A small document between the big ones: its pages stay.
		docs = append(docs, catalog.Document{Name: "event", Doc: m{"descriptor": "d2", "time": 1.0, "seq_num": int64(p + 1),
			"uid": "e", "data": m{"x": 1.5}, "timestamps": m{"x": 1.0}}})
	}
	docs = append(docs, catalog.Document{Name: "stop", Doc: m{"uid": "s", "run_start": "u", "time": 9.0}})
	writeRuns(t, dir, [][]catalog.Document{docs})
	path := dir + "/u.msgpack"
	raw, err := os.ReadFile(path) // every page in the page cache
	if err != nil {
		t.Fatal(err)
	}
	if f, err := os.Open(path); err == nil {
		f.Sync() // dirty pages are not dropped; catalog files are old
		f.Close()
	}
	c, _ := openDir(t, dir)
	r := mustRun(t, c, "u")
	if n := countTrue(resident(t, path)); n != len(resident(t, path)) {
		t.Skipf("%d of %d pages resident after reading the file: no page cache to test with", n, len(resident(t, path)))
	}
	var got []byte
	// A read that keeps nothing drops nothing.
	if err := r.EventPages(context.Background(), "d", 0, -1, nil, func(*catalog.EventPage) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if n := countTrue(resident(t, path)); n != len(resident(t, path)) {
		t.Errorf("a read without WithKeptReads dropped %d pages", len(resident(t, path))-n)
	}
	err = r.EventPages(catalog.WithKeptReads(context.Background()), "d", 0, -1, nil, func(p *catalog.EventPage) error {
		for i := range p.Len() {
			got = append(got, p.Data["spec"].At(i).(*catalog.NDArray).Data[0])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		if int(b) != i {
			t.Fatalf("row %d starts with %d", i, b)
		}
	}
	if len(got) != 4*rows {
		t.Fatalf("%d rows", len(got))
	}
	// Pages wholly inside a big document are dropped; the first page (start, descriptors) and
	// the last (stop) stay.
	res := resident(t, path)
	ps := os.Getpagesize()
	if !res[0] || !res[len(res)-1] {
		t.Errorf("the head or the tail of the file was dropped")
	}
	dropped := len(res) - countTrue(res)
	if want := len(raw)/ps - 2*4 - 2; dropped < want*9/10 {
		t.Errorf("%d of %d pages dropped, want about %d", dropped, len(res), want)
	}
	// The small documents between the big ones: the page of each stays (it is only partly
	// inside a big document).
	for p, off := 0, 0; p < 4; p++ {
		i := indexOf(raw[off:], []byte("\x92\xa5event"))
		if i < 0 {
			t.Fatalf("event %d not found", p)
		}
		off += i
		if !res[off/ps] {
			t.Errorf("the page of small event %d (offset %d) was dropped", p, off)
		}
		off++
	}
}

func countTrue(b []bool) (n int) {
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

func indexOf(b, sub []byte) int {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return i
		}
	}
	return -1
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return nil }

// TestReadOnce: the index and EventPages read a file of pages bigger than the window's first
// MiB (pages of 2.1 MB, not a power of two) once, not the head of each next page twice.
func TestReadOnce(t *testing.T) {
	const width, rows = 4096, 65
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": "u", "time": 1.0}},
		{Name: "descriptor", Doc: m{"uid": "d", "run_start": "u", "time": 1.0, "name": "primary",
			"data_keys": m{"spec": m{"dtype": "array", "shape": []any{int64(width)}, "source": "s"}}}},
	}
	for p := range 10 {
		col, times, seqs, uids := make([]any, rows), make([]any, rows), make([]any, rows), make([]any, rows)
		for i := range rows {
			col[i] = &catalog.NDArray{Dtype: "<f8", Shape: []int{width}, Data: make([]byte, 8*width)}
			times[i], seqs[i], uids[i] = float64(p*rows+i), int64(p*rows+i+1), "e"
		}
		docs = append(docs, catalog.Document{Name: "event_page", Doc: m{"descriptor": "d", "time": times, "seq_num": seqs,
			"uid": uids, "data": m{"spec": col}, "timestamps": m{"spec": times}}})
	}
	path := filepath.Join(t.TempDir(), "u.msgpack")
	if err := WriteRun(path, docs); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	cr := &countingReader{r: f}
	ix, err := newIndexer(path, cr, fi.Size(), time.Time{}, nil, slog.New(slog.DiscardHandler)).build()
	if err != nil {
		t.Fatal(err)
	}
	if n := cr.n.Load(); n > fi.Size()+fi.Size()/20 {
		t.Errorf("the index read %d bytes of a file of %d", n, fi.Size())
	}
	cr = &countingReader{r: f}
	r := &run{path: path, ix: ix, open: func() (readerAt, error) { return cr, nil }}
	got := 0
	if err := r.EventPages(context.Background(), "d", 0, -1, nil, func(p *catalog.EventPage) error { got += p.Len(); return nil }); err != nil {
		t.Fatal(err)
	}
	if got != 10*rows {
		t.Errorf("%d rows", got)
	}
	if n := cr.n.Load(); n > fi.Size()+fi.Size()/20 {
		t.Errorf("EventPages read %d bytes of a file of %d", n, fi.Size())
	}
}
