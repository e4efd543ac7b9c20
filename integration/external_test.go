package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// externalRun is testdata/external_run.py's manifest.json: the runs it wrote and their files.
type externalRun struct {
	dir           string
	DetUID        string   `json:"det_uid"`
	DetResources  []string `json:"det_resources"`
	DetFiles      []string `json:"det_files"`
	OldRoot       string   `json:"old_root"`
	Moved         string   `json:"moved"`
	FrameShape    []int    `json:"frame_shape"`
	NopeUID       string   `json:"nope_uid"`
	NopeResource  string   `json:"nope_resource"`
	MyspecUID     string   `json:"myspec_uid"`
	MyspecRes     string   `json:"myspec_resource"`
	TiffUID       string   `json:"tiff_uid"`
	TiffResource  string   `json:"tiff_resource"`
	StoredUID     string   `json:"stored_uid"`
	expectedBytes []byte   // expected.npy's data (after its header)
}

// writeExternalRuns runs testdata/external_run.py into a new directory.
func writeExternalRuns(t *testing.T) *externalRun {
	t.Helper()
	dir := t.TempDir()
	runPython(t, "testdata/external_run.py", dir)
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	r := &externalRun{dir: dir}
	if err := json.Unmarshal(b, r); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	exp, err := os.ReadFile(filepath.Join(dir, "expected.npy"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseNPYHeader(exp)
	if err != nil {
		t.Fatalf("expected.npy: %v", err)
	}
	if h.descr != "<u2" || !slices.Equal(h.shape, append([]int{5}, r.FrameShape...)) {
		t.Fatalf("expected.npy is %s %v, want <u2 [5 %v]", h.descr, h.shape, r.FrameShape)
	}
	r.expectedBytes = exp[h.dataOffset:]
	return r
}

func (r *externalRun) rootMap() string { return "--root-map=" + r.OldRoot + "=" + r.Moved }

// rowBytes is the size of one row (one point: frame_per_point frames) of det.npy.
func (r *externalRun) rowBytes() int {
	n := 2 // uint16
	for _, d := range r.FrameShape {
		n *= d
	}
	return n
}

// npyHeader is what a .npy file's header says.
type npyHeader struct {
	dataOffset int
	descr      string
	fortran    bool
	shape      []int
}

var (
	npyDescr   = regexp.MustCompile(`'descr':\s*'([^']*)'`)
	npyFortran = regexp.MustCompile(`'fortran_order':\s*(True|False)`)
	npyShape   = regexp.MustCompile(`'shape':\s*\(([^)]*)\)`)
)

// parseNPYHeader parses the header at the start of b (which must hold all of it).
func parseNPYHeader(b []byte) (npyHeader, error) {
	if len(b) < 10 || !bytes.HasPrefix(b, []byte("\x93NUMPY")) {
		return npyHeader{}, errors.New("not a .npy file")
	}
	var n, start int
	switch b[6] {
	case 1:
		n, start = int(binary.LittleEndian.Uint16(b[8:10])), 10
	case 2, 3:
		if len(b) < 12 {
			return npyHeader{}, errors.New("short .npy header")
		}
		n, start = int(binary.LittleEndian.Uint32(b[8:12])), 12
	default:
		return npyHeader{}, fmt.Errorf(".npy version %d", b[6])
	}
	if len(b) < start+n {
		return npyHeader{}, fmt.Errorf(".npy header of %d bytes, have %d", start+n, len(b))
	}
	dict := string(b[start : start+n])
	h := npyHeader{dataOffset: start + n}
	m := npyDescr.FindStringSubmatch(dict)
	f := npyFortran.FindStringSubmatch(dict)
	s := npyShape.FindStringSubmatch(dict)
	if m == nil || f == nil || s == nil {
		return npyHeader{}, fmt.Errorf(".npy header %q", dict)
	}
	h.descr, h.fortran = m[1], f[1] == "True"
	for _, d := range strings.Split(s[1], ",") {
		if d = strings.TrimSpace(d); d != "" {
			v, err := strconv.Atoi(d)
			if err != nil {
				return npyHeader{}, fmt.Errorf(".npy shape %q", s[1])
			}
			h.shape = append(h.shape, v)
		}
	}
	return h, nil
}

// readNPYHeader reads the header of a mounted .npy file through f.
func readNPYHeader(t *testing.T, f *os.File) npyHeader {
	t.Helper()
	b := make([]byte, 4096)
	n, err := f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		t.Fatalf("read the header of %s: %v", f.Name(), err)
	}
	h, err := parseNPYHeader(b[:n])
	if err != nil {
		t.Fatalf("%s: %v", f.Name(), err)
	}
	return h
}

// checkNPY runs testdata/external_check.py: np.load(mounted) equals np.load(expected), and
// so do the given rows of np.load(mounted, mmap_mode='r').
func checkNPY(t *testing.T, expected, mounted string, rows ...int) {
	t.Helper()
	args := []string{"testdata/external_check.py", expected, mounted}
	for _, r := range rows {
		args = append(args, strconv.Itoa(r))
	}
	t.Logf("external_check.py: %s", strings.TrimSpace(runPython(t, args...)))
}

// logLinesWith returns the lines of logs that contain every one of words.
func logLinesWith(logs string, words ...string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// waitLogLines waits up to 5 s for a line of logs holding every one of words, then a moment
// more (a second line would come with the first), and returns the lines that hold them all.
// brokerfs logs a failure as it answers the request, but its output reaches the test through
// a pipe and a copying goroutine, so the line may lag the failed read.
func waitLogLines(logs *logBuffer, words ...string) []string {
	deadline := time.Now().Add(5 * time.Second)
	for len(logLinesWith(logs.String(), words...)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	return logLinesWith(logs.String(), words...)
}

// checkScalarFields checks that x.npy and time.npy of a primary stream read fine (5 rows of
// float64; x is 0.5*i).
func checkScalarFields(t *testing.T, primary string, rows int) {
	t.Helper()
	for _, name := range []string{"x.npy", "time.npy"} {
		b, err := os.ReadFile(filepath.Join(primary, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		h, err := parseNPYHeader(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if h.descr != "<f8" || !slices.Equal(h.shape, []int{rows}) || len(b)-h.dataOffset != 8*rows {
			t.Errorf("%s: %s %v with %d data bytes, want <f8 [%d]", name, h.descr, h.shape, len(b)-h.dataOffset, rows)
			continue
		}
		if name == "x.npy" {
			for i := 0; i < rows; i++ {
				v := math.Float64frombits(binary.LittleEndian.Uint64(b[h.dataOffset+8*i:]))
				if v != 0.5*float64(i) {
					t.Errorf("x.npy[%d] = %v, want %v", i, v, 0.5*float64(i))
				}
			}
		}
	}
}

// TestExternalHDF5 mounts an AD_HDF5 field (frame_per_point 2, over two files: one chunked
// and gzip, one contiguous) whose resources' root has moved, from a msgpack catalog and from
// a JSONL one, with --root-map. det.npy must equal what h5py reads from the files (dtype,
// shape, values; also one frame through np.load(mmap_mode='r')), its st_size must be the
// bytes a read returns, and files.txt must list exactly the two files after root_map.
// cat_wrongshape holds the same run with a wrong descriptor shape (Y, X) and no dtype_numpy:
// st_size and the array must come from the files all the same.
func TestExternalHDF5(t *testing.T) {
	t.Parallel()
	r := writeExternalRuns(t)
	for _, cat := range []string{"cat_msgpack", "cat_jsonl", "cat_wrongshape"} {
		t.Run(cat, func(t *testing.T) {
			t.Parallel()
			mnt, logs := mount(t, filepath.Join(r.dir, cat), r.rootMap(), "--debug")
			run := filepath.Join(mnt, r.DetUID)
			det := filepath.Join(run, "primary", "det.npy")

			fi, err := os.Stat(det)
			if err != nil {
				t.Fatalf("stat det.npy: %v\n%s", err, logs)
			}
			// np.load(mmap_mode='r')[3] on the fresh mount, then np.load of all of it.
			checkNPY(t, filepath.Join(r.dir, "expected.npy"), det, 3)
			b, err := os.ReadFile(det)
			if err != nil {
				t.Fatalf("read det.npy: %v\n%s", err, logs)
			}
			if fi.Size() != int64(len(b)) {
				t.Errorf("det.npy: st_size %d, but a read returns %d bytes", fi.Size(), len(b))
			}
			h, err := parseNPYHeader(b)
			if err != nil {
				t.Fatalf("det.npy: %v", err)
			}
			if !bytes.Equal(b[h.dataOffset:], r.expectedBytes) {
				t.Errorf("det.npy's data (%d bytes) differs from expected.npy's (%d bytes)", len(b)-h.dataOffset, len(r.expectedBytes))
			}

			files, err := os.ReadFile(filepath.Join(run, "files.txt"))
			if err != nil {
				t.Fatalf("files.txt: %v", err)
			}
			got := strings.Fields(string(files))
			if strings.Join(got, "\n") != strings.Join(r.DetFiles, "\n") {
				t.Errorf("files.txt lists %q, want %q", got, r.DetFiles)
			}
			checkScalarFields(t, filepath.Join(run, "primary"), 5)
			if strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("errors logged:\n%s", logs)
			}
			// The msgpack catalog counts events in its index: det.npy was sized before the
			// scan (table.Stream.EarlyNPY), and the bytes above are h5py's. JSONL: after it.
			early := len(logLinesWith(logs.String(), "sized before its stream's scan", "field=det")) > 0
			if want := cat == "cat_msgpack"; early != want {
				t.Errorf("det.npy sized before the scan: %v, want %v\n%s", early, want, logs)
			}
		})
	}
}

// TestExternalNoRootMap mounts the same catalogs without --root-map: the resources name
// /beamline/old/root, which does not exist, so det.npy fails with EIO, logged once with the
// resource, its spec and the path; the run's other fields still read.
func TestExternalNoRootMap(t *testing.T) {
	t.Parallel()
	r := writeExternalRuns(t)
	for _, cat := range []string{"cat_msgpack", "cat_jsonl"} {
		t.Run(cat, func(t *testing.T) {
			t.Parallel()
			mnt, logs := mount(t, filepath.Join(r.dir, cat))
			primary := filepath.Join(mnt, r.DetUID, "primary")
			if _, err := os.ReadFile(filepath.Join(primary, "det.npy")); !errors.Is(err, syscall.EIO) {
				t.Errorf("det.npy without --root-map: %v, want EIO", err)
			}
			oldPath := r.OldRoot + "/a/det_1.h5"
			if lines := waitLogLines(logs, r.DetResources[0]); len(lines) != 1 {
				t.Errorf("%d log lines name resource %s, want 1:\n%s", len(lines), r.DetResources[0], logs)
			} else if !strings.Contains(lines[0], "AD_HDF5") || !strings.Contains(lines[0], oldPath) || !strings.Contains(lines[0], "root_map") {
				t.Errorf("the log line on resource %s does not name the spec AD_HDF5, the path %s and whether root_map applied:\n%s", r.DetResources[0], oldPath, lines[0])
			}
			checkScalarFields(t, primary, 5)
		})
	}
}

// TestExternalMissingFile deletes the second resource's file: its rows (3 and 4) fail with
// EIO, logged with the resource and the path, while the first resource's rows read fine.
// Rows are read with pread at their offsets in det.npy (after the header, whose length the
// .npy header gives), twice: through the page cache, where a row sharing a page with row 3
// cannot be read (the kernel reads whole pages), and with O_DIRECT, where each pread is the
// exact range and rows 0-2 must all read. Then the file comes back, and rows 3 and 4 read:
// a failure is not cached.
func TestExternalMissingFile(t *testing.T) {
	t.Parallel()
	r := writeExternalRuns(t)
	gone := r.DetFiles[1] + ".gone"
	if err := os.Rename(r.DetFiles[1], gone); err != nil {
		t.Fatal(err)
	}
	mnt, logs := mount(t, filepath.Join(r.dir, "cat_msgpack"), r.rootMap())
	det := filepath.Join(mnt, r.DetUID, "primary", "det.npy")
	n := r.rowBytes()
	page := os.Getpagesize()
	for _, direct := range []bool{false, true} {
		flags := os.O_RDONLY
		if direct {
			flags |= syscall.O_DIRECT
		}
		f, err := os.OpenFile(det, flags, 0)
		if err != nil {
			t.Fatalf("open det.npy (O_DIRECT %v): %v\n%s", direct, err, logs)
		}
		h := readNPYHeader(t, f)
		if h.descr != "<u2" || h.fortran || !slices.Equal(h.shape, append([]int{5}, r.FrameShape...)) {
			t.Fatalf("det.npy header: %s fortran=%v %v, want <u2 C-order [5 %v]", h.descr, h.fortran, h.shape, r.FrameShape)
		}
		firstBadPage := (h.dataOffset + 3*n) / page
		for row := 0; row < 5; row++ {
			off := h.dataOffset + row*n
			buf := make([]byte, n)
			_, err := f.ReadAt(buf, int64(off))
			switch {
			case row >= 3:
				if !errors.Is(err, syscall.EIO) {
					t.Errorf("O_DIRECT %v: row %d (its file is missing): %v, want EIO", direct, row, err)
				}
			case !direct && (off+n-1)/page >= firstBadPage:
				t.Logf("row %d shares a page with row 3, so through the page cache it reads: %v", row, err)
			case err != nil:
				t.Errorf("O_DIRECT %v: row %d (its file is there): %v", direct, row, err)
			case !bytes.Equal(buf, r.expectedBytes[row*n:(row+1)*n]):
				t.Errorf("O_DIRECT %v: row %d differs from expected.npy", direct, row)
			}
		}
		f.Close()
	}
	if len(waitLogLines(logs, r.DetResources[1], "AD_HDF5", r.DetFiles[1], "root_map")) == 0 {
		t.Errorf("no log line names resource %s, AD_HDF5 and %s:\n%s", r.DetResources[1], r.DetFiles[1], logs)
	}
	if len(logLinesWith(logs.String(), r.DetResources[0])) != 0 {
		t.Errorf("the first resource, whose file is there, is in the log:\n%s", logs)
	}

	// A failure is remembered only briefly (handlers.DefaultNegativeTTL, where the mount
	// turns the negative cache on): with the file back, rows 3 and 4 read once that passed.
	if err := os.Rename(gone, r.DetFiles[1]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5500 * time.Millisecond) // handlers.DefaultNegativeTTL (5 s) and a margin
	f, err := os.OpenFile(det, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("open det.npy: %v", err)
	}
	defer f.Close()
	h := readNPYHeader(t, f)
	for row := 3; row < 5; row++ {
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, int64(h.dataOffset+row*n)); err != nil {
			t.Errorf("row %d, its file back: %v", row, err)
		} else if !bytes.Equal(buf, r.expectedBytes[row*n:(row+1)*n]) {
			t.Errorf("row %d, its file back, differs from expected.npy", row)
		}
	}
}

// TestExternalUnknownSpec mounts a run whose resource has spec NOPE: its field fails with
// EIO and a log line names the spec; the scalar field still reads.
func TestExternalUnknownSpec(t *testing.T) {
	t.Parallel()
	r := writeExternalRuns(t)
	mnt, logs := mount(t, filepath.Join(r.dir, "cat_nope"))
	primary := filepath.Join(mnt, r.NopeUID, "primary")
	if _, err := os.ReadFile(filepath.Join(primary, "det.npy")); !errors.Is(err, syscall.EIO) {
		t.Errorf("det.npy of spec NOPE: %v, want EIO", err)
	}
	if len(waitLogLines(logs, r.NopeResource, "NOPE")) == 0 {
		t.Errorf("no log line names resource %s and the spec NOPE:\n%s", r.NopeResource, logs)
	}
	checkScalarFields(t, primary, 3)
}

// TestExternalHandler reads a resource of spec MYSPEC through --handler with
// testdata/external_handler.py; the field must equal what that handler's Python computes.
func TestExternalHandler(t *testing.T) {
	t.Parallel()
	r := writeExternalRuns(t)
	handler, err := filepath.Abs("testdata/external_handler.py")
	if err != nil {
		t.Fatal(err)
	}
	mnt, logs := mount(t, filepath.Join(r.dir, "cat_myspec"), "--handler", "MYSPEC="+python+" -B "+handler)
	run := filepath.Join(mnt, r.MyspecUID)
	checkNPY(t, filepath.Join(r.dir, "myspec_expected.npy"), filepath.Join(run, "primary", "my.npy"), 0, 3)
	files, err := os.ReadFile(filepath.Join(run, "files.txt"))
	if err != nil {
		t.Fatalf("files.txt: %v", err)
	}
	if want := filepath.Join(r.dir, "myspec", "data.bin"); strings.TrimSpace(string(files)) != want {
		t.Errorf("files.txt = %q, want %q", files, want)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs)
	}
}

// TestExternalTIFF reads an AD_TIFF field (3 points, frame_per_point 1, uint16 TIFFs written
// by Pillow); it must equal the frames written.
func TestExternalTIFF(t *testing.T) {
	t.Parallel()
	r := writeExternalRuns(t)
	mnt, logs := mount(t, filepath.Join(r.dir, "cat_tiff"))
	checkNPY(t, filepath.Join(r.dir, "tiff_expected.npy"), filepath.Join(mnt, r.TiffUID, "primary", "img.npy"), 1)
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs)
	}
}

// TestExternalAllowedRoots mounts with --allowed-roots naming a directory that does not hold
// the data: det.npy fails with EIO and a log line says its path is outside the allowed roots.
func TestExternalAllowedRoots(t *testing.T) {
	t.Parallel()
	r := writeExternalRuns(t)
	elsewhere := t.TempDir()
	mnt, logs := mount(t, filepath.Join(r.dir, "cat_msgpack"), r.rootMap(), "--allowed-roots", elsewhere)
	primary := filepath.Join(mnt, r.DetUID, "primary")
	if _, err := os.ReadFile(filepath.Join(primary, "det.npy")); !errors.Is(err, syscall.EIO) {
		t.Errorf("det.npy outside --allowed-roots: %v, want EIO", err)
	}
	if len(waitLogLines(logs, r.DetResources[0], r.DetFiles[0], "outside the allowed roots")) == 0 {
		t.Errorf("no log line says %s (resource %s) is outside the allowed roots:\n%s", r.DetFiles[0], r.DetResources[0], logs)
	}
	checkScalarFields(t, primary, 5)
}

// TestExternalMmapOneFrame: np.load(mmap_mode='r')[3] of det.npy on a fresh mount and cache
// returns point 3 and fills that row alone: the sparse cache file's allocated blocks are its
// header page and one row's (two at most), not the field's five. Needs the mount's readahead
// at a page (root, a kernel with passthrough); with more, the kernel reads around the frame.
// TestExternalHDF5Stored: an AD_HDF5 field whose first file keeps its frames as stored bytes
// (chunked, no filters) and whose second is gzip reads as h5py reads the files, through mmap
// (rows of both files, first) and whole, twice; the stored frames are read from the source
// file, so the field has no sparse cache file.
func TestExternalHDF5Stored(t *testing.T) {
	t.Parallel()
	r := writeExternalRuns(t)
	cacheDir := t.TempDir()
	mnt, logs := mount(t, filepath.Join(r.dir, "cat_stored"), r.rootMap(), "--cache-dir", cacheDir, "--debug")
	det := filepath.Join(mnt, r.StoredUID, "primary", "det.npy")
	expected := filepath.Join(r.dir, "stored_expected.npy")
	checkNPY(t, expected, det, 1, 4, 0, 5)
	if len(logLinesWith(logs.String(), "sized before its stream's scan", "field=det")) == 0 {
		t.Errorf("det.npy not sized before the stream's scan (table.Stream.EarlyNPY)\n%s", logs)
	}
	checkNPY(t, expected, det)
	b, err := os.ReadFile(det)
	if err != nil {
		t.Fatalf("read det.npy: %v\n%s", err, logs)
	}
	exp, err := os.ReadFile(expected)
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseNPYHeader(b)
	if err != nil {
		t.Fatalf("det.npy: %v", err)
	}
	he, err := parseNPYHeader(exp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[h.dataOffset:], exp[he.dataOffset:]) {
		t.Errorf("det.npy's data (%d bytes) differs from stored_expected.npy's (%d bytes)", len(b)-h.dataOffset, len(exp)-he.dataOffset)
	}
	// Reads past the header, each one request (FOPEN_DIRECT_IO), served by splice from the
	// stored frames (points 0-2, a chunk a frame) or read (reaching the gzip points, or from
	// more pieces of the file than the reply's pipe has slots for): the bytes of the frames
	// whatever the path, across frames and points. ([row-1, +row+2) is spliced: a wrong
	// offset in the splice path fails it.)
	want := exp[he.dataOffset:]
	row := len(want) / 6
	f, err := os.Open(det)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range [][2]int{{0, 3 * row}, {5000, 20000}, {row - 1, row + 2}, {2*row + 100, 20000}, {0, len(want)}, {len(want) - 9000, 9000}} {
		got := make([]byte, r[1])
		if n, err := f.ReadAt(got, int64(h.dataOffset+r[0])); err != nil || n != r[1] {
			t.Fatalf("det.npy data [%d +%d): %d bytes, %v", r[0], r[1], n, err)
		}
		if !bytes.Equal(got, want[r[0]:r[0]+r[1]]) {
			t.Errorf("det.npy data [%d +%d) differs from stored_expected.npy's", r[0], r[1])
		}
	}
	var sparse []string
	filepath.WalkDir(filepath.Join(cacheDir, "sparse"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			sparse = append(sparse, p)
		}
		return nil
	})
	if len(sparse) != 0 {
		t.Errorf("sparse cache files %v: a field whose first file stores its frames as read needs none", sparse)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs)
	}
}

func TestExternalMmapOneFrame(t *testing.T) {
	t.Parallel()
	r := writeExternalRuns(t)
	cacheDir := t.TempDir()
	mnt, logs := mount(t, filepath.Join(r.dir, "cat_msgpack"), r.rootMap(), "--cache-dir", cacheDir)
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	major, minor := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	if ra, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)); err != nil || strings.TrimSpace(string(ra)) != "4" {
		t.Skipf("the mount's readahead is %q KiB (%v), not a page", strings.TrimSpace(string(ra)), err)
	}
	det := filepath.Join(mnt, r.DetUID, "primary", "det.npy")
	script := `import sys, numpy as np
a = np.array(np.load(sys.argv[1], mmap_mode="r")[3])
e = np.load(sys.argv[2])[3]
sys.exit(0 if a.dtype == e.dtype and np.array_equal(a, e) else "point 3 differs from h5py's")`
	if out, err := exec.Command(python, "-c", script, det, filepath.Join(r.dir, "expected.npy")).CombinedOutput(); err != nil {
		t.Fatalf("np.load(mmap_mode='r')[3]: %v\n%s\nbrokerfs:\n%s", err, out, logs)
	}
	rowBytes := int64(2)
	for _, d := range r.FrameShape {
		rowBytes *= int64(d)
	}
	var allocated int64
	var files int
	err := filepath.WalkDir(filepath.Join(cacheDir, "sparse"), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			return err
		}
		files++
		allocated += st.Blocks * 512
		return nil
	})
	if err != nil || files != 1 {
		t.Fatalf("sparse cache files: %d, %v; want 1", files, err)
	}
	if allocated > 4096+2*rowBytes {
		t.Errorf("one point read through mmap allocated %d bytes of the sparse cache file: more than its header page and two rows of %d", allocated, rowBytes)
	}
}
