package integration

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestTIFF: <field>.tif of fields with images, read with tifffile and PIL
// (testdata/tiff_check.py) against arrays computed without brokerfs.
//
//   - embedded: a run whose events hold int16, uint8 (2 frames per event), float64 and
//     uint16 images (testdata/tiff_run.py); expect.py checks the whole mount (listings with
//     each .tif, a field named x.tif beside x) and tiff_check.py each .tif against the values
//     written.
//   - external: the AD_HDF5 field of testdata/external_run.py (5 points of 2 frames) on a
//     fresh cache: det.tif is listed (det.csv is not); stat and a walk through every IFD
//     (O_DIRECT preads) need no frame; an O_DIRECT pread of one page's strip returns h5py's
//     frame and makes exactly one handler read (the brokerfs_handler_reads_total metric);
//     then tiff_check.py compares every page with h5py's frames.
func TestTIFF(t *testing.T) {
	t.Parallel()
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		runPython(t, "testdata/tiff_run.py", dir)
		var m struct {
			UID    string   `json:"uid"`
			Fields []string `json:"fields"`
		}
		b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		cat := filepath.Join(dir, "cat")
		mnt, _ := mount(t, cat)
		expect(t, mnt, runFiles(t, cat))
		args := []string{"testdata/tiff_check.py"}
		for _, f := range m.Fields {
			args = append(args, filepath.Join(dir, "expected_"+f+".npy"), filepath.Join(mnt, m.UID, "primary", f+".tif"))
		}
		t.Logf("tiff_check.py:\n%s", strings.TrimSpace(runPython(t, args...)))
	})

	t.Run("external", func(t *testing.T) {
		t.Parallel()
		r := writeExternalRuns(t)
		addr := freeAddr(t)
		mnt, logs := mount(t, filepath.Join(r.dir, "cat_msgpack"), r.rootMap(), "--cache-dir", t.TempDir(), "--metrics", addr)
		primary := filepath.Join(mnt, r.DetUID, "primary")
		names, err := os.ReadDir(primary)
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, e := range names {
			listed = append(listed, e.Name())
		}
		if !slices.Contains(listed, "det.tif") || slices.Contains(listed, "det.csv") {
			t.Errorf("primary lists %v: want det.tif and no det.csv", listed)
		}
		det := filepath.Join(primary, "det.tif")
		fi, err := os.Stat(det)
		if err != nil {
			t.Fatalf("stat det.tif: %v\n%s", err, logs)
		}
		if n := handlerReads(t, addr); n != 0 {
			t.Errorf("stat of det.tif made %d handler reads, want 0", n)
		}

		// One page through O_DIRECT (no kernel readahead): the IFDs, then page 7's strip
		// (point 3, its second frame).
		f, err := os.OpenFile(det, os.O_RDONLY|syscall.O_DIRECT, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		strips := tiffStrips(t, f)
		if n := handlerReads(t, addr); n != 0 {
			t.Errorf("reading det.tif's IFDs made %d handler reads, want 0", n)
		}
		fb := r.rowBytes() / r.FrameShape[0]
		if len(strips) != 5*r.FrameShape[0] {
			t.Fatalf("det.tif has %d pages, want %d", len(strips), 5*r.FrameShape[0])
		}
		const k = 7
		for i, s := range strips {
			if s[1] != int64(fb) || s[0] != strips[0][0]+int64(i*fb) || s[0]+s[1] > fi.Size() {
				t.Fatalf("det.tif: strips %v, want contiguous frames of %d bytes in a file of %d", strips, fb, fi.Size())
			}
		}
		page := make([]byte, fb)
		if _, err := f.ReadAt(page, strips[k][0]); err != nil {
			t.Fatalf("read page %d of det.tif: %v\n%s", k, err, logs)
		}
		if string(page) != string(r.expectedBytes[k*fb:(k+1)*fb]) {
			t.Errorf("page %d of det.tif differs from h5py's frame", k)
		}
		if n := handlerReads(t, addr); n != 1 {
			t.Errorf("reading one page of det.tif made %d handler reads, want 1 (its point)", n)
		}
		out := runPython(t, "testdata/tiff_check.py", filepath.Join(r.dir, "expected.npy"), det)
		t.Logf("tiff_check.py: %s", strings.TrimSpace(out))
	})
}

// freeAddr returns a local address no one listens on, for --metrics.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// handlerReads is brokerfs_handler_reads_total from the server's --metrics address.
func handlerReads(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "brokerfs_handler_reads_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics: %q", sc.Text())
			}
			return int(n)
		}
	}
	t.Fatalf("metrics lack brokerfs_handler_reads_total (%v)", sc.Err())
	return 0
}

// tiffStrips returns the (offset, byte count) of each page's one strip, walking the IFDs of
// a classic little-endian TIFF through f (TIFF 6.0: 12-byte entries, tag 273 StripOffsets,
// 279 StripByteCounts).
func tiffStrips(t *testing.T, f *os.File) [][2]int64 {
	t.Helper()
	readAt := func(off int64, n int) []byte {
		b := make([]byte, n)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatalf("read %d bytes at %d of %s: %v", n, off, f.Name(), err)
		}
		return b
	}
	head := readAt(0, 8)
	if string(head[:4]) != "II*\x00" {
		t.Fatalf("not a classic little-endian TIFF: %q", head[:4])
	}
	var strips [][2]int64
	for next := int64(binary.LittleEndian.Uint32(head[4:])); next != 0; {
		n := int(binary.LittleEndian.Uint16(readAt(next, 2)))
		ifd := readAt(next+2, 12*n+4)
		var s [2]int64
		for i := range n {
			e := ifd[12*i:]
			switch binary.LittleEndian.Uint16(e) {
			case 273:
				s[0] = int64(binary.LittleEndian.Uint32(e[8:]))
			case 279:
				s[1] = int64(binary.LittleEndian.Uint32(e[8:]))
			}
		}
		strips = append(strips, s)
		next = int64(binary.LittleEndian.Uint32(ifd[12*n:]))
	}
	if len(strips) == 0 {
		t.Fatal("a TIFF of no pages")
	}
	return strips
}
