package nodes

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
	"github.com/brokerfs/brokerfs/catalog/memory"
)

// tiffPage is one page of a classic little-endian TIFF: its size and its strip.
type tiffPage struct{ w, h, off, n uint32 }

// tiffPages walks the IFDs of a classic little-endian TIFF read through readAt, written from
// the TIFF 6.0 specification (not from package encode), and returns each page's width, height
// and its strip's offset and byte count (one strip per page).
func tiffPages(t *testing.T, readAt func(off int64, n int) []byte) []tiffPage {
	t.Helper()
	if b := readAt(0, 8); string(b[:4]) != "II*\x00" {
		t.Fatalf("not a classic little-endian TIFF: %q", b)
	}
	var pages []tiffPage
	for next := int64(binary.LittleEndian.Uint32(readAt(4, 4))); next != 0; {
		n := int(binary.LittleEndian.Uint16(readAt(next, 2)))
		ifd := readAt(next+2, 12*n+4)
		var p tiffPage
		for i := range n {
			e := ifd[12*i:]
			v := binary.LittleEndian.Uint32(e[8:])
			switch tag := binary.LittleEndian.Uint16(e); tag {
			case 256:
				p.w = v
			case 257:
				p.h = v
			case 273:
				p.off = v
			case 279:
				p.n = v
			}
		}
		pages = append(pages, p)
		next = int64(binary.LittleEndian.Uint32(ifd[12*n:]))
	}
	return pages
}

// bytesAt reads from a whole file's bytes.
func bytesAt(b []byte) func(off int64, n int) []byte {
	return func(off int64, n int) []byte { return b[off : off+int64(n)] }
}

// TestExternalTIFF: an external field of (1, 2, 3) frames per event lists img.tif (and no
// img.csv); a lookup and a walk through all the IFDs fill nothing; a read of page 2's pixels
// fills datum 2 alone; the whole file is three 3 x 2 pages whose pixels are the .npy's data.
func TestExternalTIFF(t *testing.T) {
	tr, reads, _ := externalTree(t, false)
	dir := catalogtest.UIDAssets + "/primary/"
	if got := tr.list(catalogtest.UIDAssets + "/primary"); !contains(got, "img.tif") || contains(got, "img.csv") {
		t.Errorf("primary = %v, want img.tif and no img.csv", got)
	}
	f := tr.mustLookup(dir + "img.tif").(*file)
	if reads.Load() != 0 {
		t.Errorf("lookup filled %d datums", reads.Load())
	}
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	readAt := func(off int64, n int) []byte {
		res, errno := f.Read(context.Background(), fh, make([]byte, n), off)
		if errno != 0 {
			t.Fatalf("read %d bytes at %d: %v", n, off, errno)
		}
		b, _ := res.Bytes(nil)
		return b
	}
	pages := tiffPages(t, readAt)
	if reads.Load() != 0 {
		t.Errorf("reading the IFDs filled %d datums", reads.Load())
	}
	if len(pages) != 3 || pages[2].w != 3 || pages[2].h != 2 || pages[2].n != 12 {
		t.Fatalf("pages %+v", pages)
	}
	buf := make([]byte, 12)
	res, errno := f.Read(context.Background(), fh, buf, int64(pages[2].off))
	if errno != 0 {
		t.Fatal(errno)
	}
	b, _ := res.Bytes(buf)
	if got := binary.LittleEndian.Uint16(b); got != 200 {
		t.Errorf("page 2 starts with %d, want 200", got)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("reading one page made %d handler reads, want 1", n)
	}

	whole := tr.mustRead(dir + "img.tif")
	_, _, data := parseNPY(t, tr.mustRead(dir+"img.npy"))
	for k, p := range tiffPages(t, bytesAt(whole)) {
		if got, want := whole[p.off:p.off+p.n], data[12*k:12*k+12]; string(got) != string(want) {
			t.Errorf("page %d = %v, want the .npy's frame %v", k, got, want)
		}
	}
}

// TestEmbeddedTIFF: fields of two or more dimensions per event in the documents list a .tif
// whose pages are their frames (events x leading dimensions); 1-D and string fields list
// none, and asking for one is ENOENT; a field named like another's .tif ("x.tif") collides
// with nothing; a field named "time" gets the reserved-name escape for its .tif too.
func TestEmbeddedTIFF(t *testing.T) {
	arr := func(shape ...int) map[string]any {
		s := make([]any, len(shape))
		for i, d := range shape {
			s[i] = int64(d)
		}
		return map[string]any{"dtype": "array", "shape": s, "source": "s"}
	}
	keys := map[string]any{"x": arr(2, 3), "x.tif": arr(2, 2, 2), "time": arr(1, 2), "v": arr(3),
		"s": map[string]any{"dtype": "string", "shape": []any{}, "source": "s"}}
	// Event i: x[r][c] = 100*i + 10*r + c; x.tif[a][r][c] = -(100*i + 10*a + r*2 + c).
	docs := []catalog.Document{
		{Name: "start", Doc: map[string]any{"uid": "u-1", "time": 1.0, "scan_id": int64(1)}},
		{Name: "descriptor", Doc: map[string]any{"uid": "d-1", "run_start": "u-1", "time": 1.0, "name": "primary", "data_keys": keys}},
	}
	for i := range 3 {
		x := []any{}
		for r := range 2 {
			x = append(x, []any{int64(100*i + 10*r), int64(100*i + 10*r + 1), int64(100*i + 10*r + 2)})
		}
		xt := []any{}
		for a := range 2 {
			xt = append(xt, []any{
				[]any{int64(-(100*i + 10*a)), int64(-(100*i + 10*a + 1))},
				[]any{int64(-(100*i + 10*a + 2)), int64(-(100*i + 10*a + 3))}})
		}
		docs = append(docs, catalog.Document{Name: "event", Doc: map[string]any{"descriptor": "d-1", "uid": fmt.Sprint("e-", i),
			"time": 2.0 + float64(i), "seq_num": int64(i + 1),
			"data":       map[string]any{"x": x, "x.tif": xt, "time": []any{[]any{1.5, 2.5}}, "v": []any{1.0, 2.0, 3.0}, "s": "a"},
			"timestamps": map[string]any{}}})
	}
	docs = append(docs, catalog.Document{Name: "stop", Doc: map[string]any{"uid": "s-1", "run_start": "u-1", "time": 9.0, "exit_status": "success"}})
	cat, err := memory.New(docs)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTree(t, cat, nil)
	got := tr.list("u-1/primary")
	sort.Strings(got)
	want := "[%74ime.npy %74ime.tif descriptors.json s.csv s.npy time.csv time.npy timestamps v.csv v.npy x.npy x.tif x.tif.npy x.tif.tif]"
	if fmt.Sprint(got) != want {
		t.Errorf("primary = %v\nwant      %v", got, want)
	}
	for _, name := range []string{"v.tif", "s.tif"} {
		if _, errno := tr.lookup("u-1/primary/" + name); errno != syscall.ENOENT {
			t.Errorf("%s: %v, want ENOENT", name, errno)
		}
	}

	x := tr.mustRead("u-1/primary/x.tif")
	pages := tiffPages(t, bytesAt(x))
	if len(pages) != 3 {
		t.Fatalf("x.tif: %d pages, want 3", len(pages))
	}
	for i, p := range pages {
		if p.w != 3 || p.h != 2 || p.n != 6*8 {
			t.Fatalf("x.tif page %d: %+v", i, p)
		}
		if got, want := fmt.Sprint(ints(x[p.off:p.off+p.n])), fmt.Sprint([]int64{
			int64(100 * i), int64(100*i + 1), int64(100*i + 2), int64(100*i + 10), int64(100*i + 11), int64(100*i + 12)}); got != want {
			t.Errorf("x.tif page %d = %s, want %s", i, got, want)
		}
	}
	xt := tr.mustRead("u-1/primary/x.tif.tif")
	pages = tiffPages(t, bytesAt(xt))
	if len(pages) != 6 {
		t.Fatalf("x.tif.tif: %d pages, want 6 (3 events x 2)", len(pages))
	}
	for k, p := range pages {
		i, a := k/2, k%2
		var want []int64
		for j := range 4 {
			want = append(want, int64(-(100*i + 10*a + j)))
		}
		if got := ints(xt[p.off : p.off+p.n]); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("x.tif.tif page %d = %v, want %v", k, got, want)
		}
	}
	tm := tr.mustRead("u-1/primary/%74ime.tif")
	if p := tiffPages(t, bytesAt(tm)); len(p) != 3 || fmt.Sprint(floats(tm[p[1].off:p[1].off+p[1].n])) != "[1.5 2.5]" {
		t.Errorf("%%74ime.tif: pages %+v", p)
	}
	if strings.Contains(tr.logs.String(), "level=ERROR") {
		t.Errorf("errors logged: %s", tr.logs)
	}
}
