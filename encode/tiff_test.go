package encode

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tiffHeader returns the header block of l, [0, DataOffset), through ReadMetaAt.
func tiffHeader(t testing.TB, l *TIFFLayout) []byte {
	t.Helper()
	b := make([]byte, l.DataOffset)
	if n := l.ReadMetaAt(b, 0); n != len(b) {
		t.Fatalf("ReadMetaAt(0) of %d bytes copied %d", len(b), n)
	}
	return b
}

// tiffWhole returns the whole file of l with data as its pixels (zeros when nil), the
// header and trailer through one ReadMetaAt each.
func tiffWhole(t testing.TB, l *TIFFLayout, data []byte) []byte {
	t.Helper()
	if data == nil {
		data = make([]byte, l.DataEnd-l.DataOffset)
	}
	if int64(len(data)) != l.DataEnd-l.DataOffset {
		t.Fatalf("%d bytes of pixels for a layout of %d", len(data), l.DataEnd-l.DataOffset)
	}
	trailer := make([]byte, l.Size-l.DataEnd)
	if n := l.ReadMetaAt(trailer, l.DataEnd); n != len(trailer) {
		t.Fatalf("ReadMetaAt(%d) of %d bytes copied %d", l.DataEnd, len(trailer), n)
	}
	return append(append(tiffHeader(t, l), data...), trailer...)
}

// parsedPage is one IFD as an independent reader sees it.
type parsedPage struct {
	tags map[uint16][]uint64 // tag -> values (ASCII as bytes)
	off  int64               // where the IFD is
}

// parseTIFF walks the IFD chain of a little-endian TIFF or BigTIFF written from the TIFF 6.0
// and BigTIFF specifications, not from the encoder.
func parseTIFF(b []byte) (big bool, pages []parsedPage, err error) {
	if len(b) < 8 || string(b[:2]) != "II" {
		return false, nil, errors.New("not a little-endian TIFF")
	}
	u16 := func(o int64) uint64 { return uint64(binary.LittleEndian.Uint16(b[o:])) }
	u32 := func(o int64) uint64 { return uint64(binary.LittleEndian.Uint32(b[o:])) }
	u64 := func(o int64) uint64 { return binary.LittleEndian.Uint64(b[o:]) }
	var next int64
	switch u16(2) {
	case 42:
		next = int64(u32(4))
	case 43:
		big = true
		if u16(4) != 8 || u16(6) != 0 {
			return false, nil, errors.New("bad BigTIFF header")
		}
		next = int64(u64(8))
	default:
		return false, nil, fmt.Errorf("magic %d", u16(2))
	}
	sizes := map[uint64]int64{1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 16: 8}
	for next != 0 {
		if next%2 != 0 || next >= int64(len(b)) {
			return big, nil, fmt.Errorf("IFD at %d", next)
		}
		p := parsedPage{tags: map[uint16][]uint64{}, off: next}
		var n uint64
		o := next
		if big {
			n, o = u64(o), o+8
		} else {
			n, o = u16(o), o+2
		}
		last := -1
		for range n {
			tag, typ := u16(o), u16(o+2)
			if int(tag) <= last {
				return big, nil, fmt.Errorf("IFD at %d: tag %d after %d", next, tag, last)
			}
			last = int(tag)
			var count uint64
			var val int64
			inline := int64(4)
			if big {
				count, val, inline = u64(o+4), o+12, 8
			} else {
				count, val = u32(o+4), o+8
			}
			size := sizes[typ]
			if size == 0 {
				return big, nil, fmt.Errorf("tag %d: type %d", tag, typ)
			}
			if int64(count)*size > inline {
				if big {
					val = int64(u64(val))
				} else {
					val = int64(u32(val))
				}
			}
			for i := range int64(count) {
				at := val + i*size
				switch size {
				case 1:
					p.tags[uint16(tag)] = append(p.tags[uint16(tag)], uint64(b[at]))
				case 2:
					p.tags[uint16(tag)] = append(p.tags[uint16(tag)], u16(at))
				case 4:
					p.tags[uint16(tag)] = append(p.tags[uint16(tag)], u32(at))
				case 8:
					p.tags[uint16(tag)] = append(p.tags[uint16(tag)], u64(at))
				}
			}
			if big {
				o += 20
			} else {
				o += 12
			}
		}
		if big {
			next = int64(u64(o))
		} else {
			next = int64(u32(o))
		}
		pages = append(pages, p)
		if len(pages) > 1<<20 {
			return big, nil, errors.New("IFD loop")
		}
	}
	return big, pages, nil
}

func mustTIFF(t testing.TB, descr string, shape []int, limit int64) *TIFFLayout {
	t.Helper()
	l, err := newTIFFLayout(mustDtype(t, descr), shape, limit)
	if err != nil {
		t.Fatalf("layout of %s %v: %v", descr, shape, err)
	}
	return l
}

// TestTIFFLayout checks small files of every sample format, classic and BigTIFF, with the IFD
// reader above: every page's size, sample format, bits and strip (pixels at the layout's
// fixed offsets, contiguous, after a 4096-aligned header), the ImageJ description on page 0
// for ImageJ's dtypes only, IFD 0 in the header and the others after the pixels.
func TestTIFFLayout(t *testing.T) {
	type format struct{ bits, sf uint64 }
	cases := map[string]format{
		"|u1": {8, 1}, "|b1": {8, 1}, "<u2": {16, 1}, "<u4": {32, 1}, "<u8": {64, 1},
		"|i1": {8, 2}, "<i2": {16, 2}, "<i4": {32, 2}, "<i8": {64, 2},
		"<f2": {16, 3}, "<f4": {32, 3}, "<f8": {64, 3}, "<c8": {64, 6}, "<c16": {128, 6},
	}
	imagej := map[string]bool{"|u1": true, "|b1": true, "<u2": true, "<i2": true, "<f4": true}
	for descr, f := range cases {
		for _, shape := range [][]int{{3, 2, 4, 5}, {1, 7, 3}, {2, 1, 1, 1, 1}, {300, 2, 2}} {
			for _, big := range []bool{false, true} {
				limit := int64(tiffClassicLimit)
				if big {
					limit = 0
				}
				l := mustTIFF(t, descr, shape, limit)
				name := fmt.Sprintf("%s %v big=%v", descr, shape, big)
				pages, h, w := int64(prod(shape[:len(shape)-2])), shape[len(shape)-2], shape[len(shape)-1]
				fb := int64(h*w) * int64(f.bits/8)
				if l.Pages != pages || l.Height != h || l.Width != w || l.FrameBytes != fb || l.BigTIFF != big {
					t.Fatalf("%s: layout %+v", name, l)
				}
				if l.DataOffset%4096 != 0 || l.DataEnd != l.DataOffset+pages*fb || l.Size < l.DataEnd {
					t.Fatalf("%s: data at [%d, %d), size %d", name, l.DataOffset, l.DataEnd, l.Size)
				}
				whole := tiffWhole(t, l, nil)
				gotBig, ps, err := parseTIFF(whole)
				if err != nil || gotBig != big || int64(len(ps)) != pages {
					t.Fatalf("%s: big %v, %d pages, %v", name, gotBig, len(ps), err)
				}
				for k, p := range ps {
					if (k == 0) != (p.off < l.DataOffset) || (k > 0 && p.off < l.DataEnd) {
						t.Fatalf("%s: IFD %d at %d, pixels at [%d, %d)", name, k, p.off, l.DataOffset, l.DataEnd)
					}
					want := map[uint16][]uint64{
						256: {uint64(w)}, 257: {uint64(h)}, 258: {f.bits}, 259: {1}, 262: {1},
						273: {uint64(l.DataOffset + int64(k)*fb)}, 277: {1}, 278: {uint64(h)},
						279: {uint64(fb)}, 339: {f.sf},
					}
					if k == 0 && imagej[descr] {
						var desc []uint64
						for _, c := range []byte(ImageJDescription(pages) + "\x00") {
							desc = append(desc, uint64(c))
						}
						want[270] = desc
					}
					if fmt.Sprint(p.tags) != fmt.Sprint(want) {
						t.Fatalf("%s: page %d: tags\n%v\nwant\n%v", name, k, p.tags, want)
					}
				}
				if l.ImageJ != imagej[descr] {
					t.Errorf("%s: ImageJ %v", name, l.ImageJ)
				}
			}
		}
	}
}

// TestTIFFImageJDescription: the text tifffile.imagej_description(shape, axes='TYX') gives
// (tifffile 2023.2.3).
func TestTIFFImageJDescription(t *testing.T) {
	for pages, want := range map[int64]string{
		7: "ImageJ=1.11a\nimages=7\nframes=7\nhyperstack=true\nmode=grayscale\nloop=false\n",
		1: "ImageJ=1.11a\nimages=1\nhyperstack=true\nmode=grayscale\n",
	} {
		if got := ImageJDescription(pages); got != want {
			t.Errorf("ImageJDescription(%d) = %q, want %q", pages, got, want)
		}
	}
}

// TestTIFFBigThreshold: the file is classic TIFF while its classic size is below the limit,
// BigTIFF from the limit on, decided by the exact size.
func TestTIFFBigThreshold(t *testing.T) {
	classic := mustTIFF(t, "<u2", []int{10, 64, 48}, tiffClassicLimit)
	if classic.BigTIFF {
		t.Fatal("a small file is BigTIFF")
	}
	if l := mustTIFF(t, "<u2", []int{10, 64, 48}, classic.Size+1); l.BigTIFF || l.Size != classic.Size {
		t.Errorf("limit one above the size: BigTIFF %v, size %d", l.BigTIFF, l.Size)
	}
	l := mustTIFF(t, "<u2", []int{10, 64, 48}, classic.Size)
	if !l.BigTIFF {
		t.Errorf("limit equal to the size: not BigTIFF")
	}
	if b := tiffHeader(t, l); binary.LittleEndian.Uint16(b[2:]) != 43 {
		t.Errorf("BigTIFF magic %d", binary.LittleEndian.Uint16(b[2:]))
	}

	// The real limit: a file one frame short of 4 GiB is classic, one frame more BigTIFF.
	fb := int64(2048 * 2048 * 2)
	n := int(int64(tiffClassicLimit) / fb) // 512 frames: 4 GiB of pixels plus the header
	if l := mustTIFF(t, "<u2", []int{n - 1, 2048, 2048}, tiffClassicLimit); l.BigTIFF || l.Size >= tiffClassicLimit {
		t.Errorf("%d frames of 8 MiB: BigTIFF %v, size %d", n-1, l.BigTIFF, l.Size)
	}
	if l := mustTIFF(t, "<u2", []int{n, 2048, 2048}, tiffClassicLimit); !l.BigTIFF || l.Size < tiffClassicLimit {
		t.Errorf("%d frames of 8 MiB: BigTIFF %v, size %d", n, l.BigTIFF, l.Size)
	}
	// One frame larger than 4 GiB: BigTIFF, whose strip byte count is a LONG8.
	l = mustTIFF(t, "<f8", []int{1, 1 << 15, 1 << 14}, tiffClassicLimit)
	_, ps, err := parseTIFF(tiffHeader(t, l))
	if err != nil || !l.BigTIFF || ps[0].tags[279][0] != 1<<32 {
		t.Errorf("a 4 GiB frame: BigTIFF %v, %v, %v", l.BigTIFF, ps, err)
	}
}

// TestTIFFReadMetaAt: reads at any offset and length give the bytes of the whole file up to
// the next boundary between pixels and the rest, nothing within the pixels or past the end.
func TestTIFFReadMetaAt(t *testing.T) {
	for _, shape := range [][]int{{50, 3, 3, 3}, {1, 3, 3}, {0, 3, 3}} {
		for _, big := range []bool{false, true} {
			limit := int64(tiffClassicLimit)
			if big {
				limit = 0
			}
			l := mustTIFF(t, "|u1", shape, limit) // odd frames: the trailer needs padding
			whole := tiffWhole(t, l, nil)
			rng := rand.New(rand.NewPCG(1, 2))
			for range 3000 {
				off := rng.Int64N(l.Size + 100)
				p := make([]byte, rng.IntN(600))
				for i := range p {
					p[i] = 0xAA
				}
				n := l.ReadMetaAt(p, off)
				var want int64
				switch {
				case off < l.DataOffset:
					want = min(int64(len(p)), l.DataOffset-off)
				case off >= l.DataEnd && off < l.Size:
					want = min(int64(len(p)), l.Size-off)
				}
				if int64(n) != want {
					t.Fatalf("%v big=%v ReadMetaAt(%d bytes, %d) = %d, want %d", shape, big, len(p), off, n, want)
				}
				if n > 0 && string(p[:n]) != string(whole[off:off+int64(n)]) {
					t.Fatalf("%v big=%v ReadMetaAt(%d bytes, %d) differs from the whole file", shape, big, len(p), off)
				}
				for _, c := range p[n:] {
					if c != 0xAA {
						t.Fatalf("%v big=%v ReadMetaAt(%d bytes, %d) wrote past %d", shape, big, len(p), off, n)
					}
				}
			}
		}
	}
}

// TestTIFFRefused: dtypes TIFF cannot hold and shapes without frames are refused with
// ErrUnsupported; absurd sizes with an error, never a panic or an overflowed size; no pages is
// a TIFF of no images.
func TestTIFFRefused(t *testing.T) {
	for _, c := range []struct {
		descr string
		shape []int
	}{{"<U4", []int{2, 3, 3}}, {">u2", []int{2, 3, 3}}, {"<u2", []int{5}}, {"<u2", []int{}}, {"<u2", []int{2, 1 << 33, 1}}} {
		if _, err := NewTIFFLayout(mustDtype(t, c.descr), c.shape); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s %v: %v, want ErrUnsupported", c.descr, c.shape, err)
		}
	}
	for _, shape := range [][]int{{math.MaxInt64, 2, 2}, {1 << 40, 1 << 30, 1 << 20}, {1 << 55, 1, 1}, {-1, 2, 2}, {4, 1 << 31, 1 << 31}} {
		if l, err := NewTIFFLayout(mustDtype(t, "<c16"), shape); err == nil {
			t.Errorf("%v: size %d, want an error", shape, l.Size)
		}
	}
	for _, shape := range [][]int{{0, 4, 4}, {3, 0, 4}, {3, 4, 0}} {
		l, err := NewTIFFLayout(mustDtype(t, "<u2"), shape)
		if err != nil || l.Pages != 0 || l.Size != 8 {
			t.Fatalf("%v: %+v, %v", shape, l, err)
		}
		if b := tiffWhole(t, l, nil); string(b) != "II*\x00\x00\x00\x00\x00" {
			t.Errorf("%v: %q", shape, b)
		}
	}
}

type tiffPythonCase struct {
	File    string `json:"file"`
	Raw     string `json:"raw"`
	Descr   string `json:"descr"`
	Shape   []int  `json:"shape"`
	Big     bool   `json:"big"`
	ImageJ  bool   `json:"imagej"`
	Padding int64  `json:"data_offset"`
}

// TestTIFFReaders writes small files of every dtype, classic and BigTIFF, and has tifffile
// and PIL (the dtypes it reads) read every page and compare it with the raw pixels;
// tifffile must also see the ImageJ hyperstack (is_imagej, series shape and axes) where
// there is one.
func TestTIFFReaders(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	var cases []tiffPythonCase
	for _, descr := range []string{"|u1", "|b1", "<u2", "<i2", "<f4", "|i1", "<u4", "<i4", "<u8", "<i8", "<f2", "<f8", "<c8", "<c16"} {
		for _, shape := range [][]int{{4, 2, 5, 3}, {1, 6, 7}} {
			for _, big := range []bool{false, true} {
				limit := int64(tiffClassicLimit)
				if big {
					limit = 0
				}
				dt := mustDtype(t, descr)
				l := mustTIFF(t, descr, shape, limit)
				raw := make([]byte, l.Pages*l.FrameBytes)
				for i := range raw {
					raw[i] = byte(rng.UintN(256))
					if descr == "|b1" {
						raw[i] &= 1
					}
				}
				if dt.Descr[1] == 'f' || dt.Descr[1] == 'c' {
					// Random bits make NaNs of any payload; numbers compare by value too.
					e, _ := dt.elem()
					for i := 0; i < len(raw); i += e.unit() {
						v := float64(rng.IntN(2000)-1000) / 8
						switch e.unit() {
						case 2:
							binary.LittleEndian.PutUint16(raw[i:], float16Bits(v))
						case 4:
							binary.LittleEndian.PutUint32(raw[i:], math.Float32bits(float32(v)))
						case 8:
							binary.LittleEndian.PutUint64(raw[i:], math.Float64bits(v))
						}
					}
				}
				base := fmt.Sprintf("%s_%d_%v", strings.Trim(descr, "<|"), len(shape), big)
				file := filepath.Join(dir, base+".tif")
				if err := os.WriteFile(file, tiffWhole(t, l, raw), 0o644); err != nil {
					t.Fatal(err)
				}
				rawFile := filepath.Join(dir, base+".raw")
				if err := os.WriteFile(rawFile, raw, 0o644); err != nil {
					t.Fatal(err)
				}
				cases = append(cases, tiffPythonCase{file, rawFile, descr, shape, big, l.ImageJ, l.DataOffset})
			}
		}
	}
	spec := filepath.Join(dir, "cases.json")
	js, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spec, js, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(runPython(t, tiffReadScript, spec)))
}

// float16Bits is v (a multiple of 1/8 within ±125) as IEEE half-precision bits.
func float16Bits(v float64) uint16 {
	if v == 0 {
		return 0
	}
	var sign uint16
	if v < 0 {
		sign, v = 0x8000, -v
	}
	exp := 0
	for v >= 2 {
		v, exp = v/2, exp+1
	}
	for v < 1 {
		v, exp = v*2, exp-1
	}
	return sign | uint16(exp+15)<<10 | uint16((v-1)*1024)
}

const tiffReadScript = `
import json, sys, warnings
import numpy as np
import tifffile
from PIL import Image
import PIL

# PIL modes of the dtypes it reads (int16 widened to its 32-bit mode I).
PIL_MODES = {'|u1': 'L', '<u2': 'I;16', '<i2': 'I', '<i4': 'I', '<f4': 'F'}

bad, pil_read = 0, 0
def fail(c, msg):
    global bad
    bad += 1
    print('MISMATCH', c['file'], msg)

for c in json.load(open(sys.argv[1])):
    dt = np.dtype(c['descr'])
    shape = c['shape']
    frames = np.fromfile(c['raw'], dtype=dt).reshape(-1, shape[-2], shape[-1])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        tf = tifffile.TiffFile(c['file'])
    with tf:
        if tf.is_bigtiff != c['big']:
            fail(c, f'is_bigtiff {tf.is_bigtiff}')
        if tf.is_imagej != c['imagej']:
            fail(c, f'is_imagej {tf.is_imagej}')
        if len(tf.pages) != len(frames):
            fail(c, f'{len(tf.pages)} pages, want {len(frames)}')
            continue
        for k, page in enumerate(tf.pages):
            got = page.asarray()
            want = frames[k].astype(np.uint8) if dt.kind == 'b' else frames[k]
            if got.dtype != want.dtype or got.shape != want.shape or got.tobytes() != want.tobytes():
                fail(c, f'page {k}: {got.dtype} {got.shape}, want {want.dtype} {want.shape}')
            if page.dataoffsets[0] != c['data_offset'] + k * want.nbytes:
                fail(c, f'page {k} at {page.dataoffsets[0]}')
        s = tf.series[0]
        want_shape = (len(frames), shape[-2], shape[-1]) if len(frames) > 1 else (shape[-2], shape[-1])
        if c['imagej']:
            if tf.imagej_metadata.get('images') != len(frames) or s.shape != want_shape:
                fail(c, f'ImageJ metadata {tf.imagej_metadata}, series {s.shape} {s.axes}')
            if len(frames) > 1 and s.axes != 'TYX':
                fail(c, f'series axes {s.axes}')
            all_ = s.asarray()
            if all_.tobytes() != frames.astype(np.uint8 if dt.kind == 'b' else dt).tobytes():
                fail(c, 'series data')
    mode = PIL_MODES.get(c['descr'])
    if mode is None:
        continue
    im = Image.open(c['file'])
    if getattr(im, 'n_frames', 1) != len(frames):
        fail(c, f'PIL: {im.n_frames} frames')
        continue
    for k in range(len(frames)):
        im.seek(k)
        if im.mode != mode or im.size != (shape[-1], shape[-2]):
            fail(c, f'PIL frame {k}: mode {im.mode} size {im.size}')
            break
        got = np.array(im)
        if not np.array_equal(got.astype(np.float64), frames[k].astype(np.float64)):
            fail(c, f'PIL frame {k} differs')
    pil_read += 1
print(f'tifffile {tifffile.__version__} read every page; PIL {PIL.__version__} read {pil_read} files')
sys.exit(1 if bad else 0)
`

// BenchmarkTIFFTrailer reads the IFDs of a 100000-page TIFF in the kernel's 128 KiB pieces:
// the cost of computing them on read.
func BenchmarkTIFFTrailer(b *testing.B) {
	l, err := NewTIFFLayout(Dtype{"<u2", 2}, []int{100000, 512, 512})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 128<<10)
	b.SetBytes(l.Size - l.DataEnd)
	for b.Loop() {
		for off := l.DataEnd; off < l.Size; off += int64(len(buf)) {
			l.ReadMetaAt(buf, off)
		}
	}
}

// goldenTIFF are small TIFFs kept in testdata/golden (checked with tifffile and PIL when
// written; TestTIFFReaders keeps checking the encoder itself): a classic ImageJ stack and a
// BigTIFF of float64 pages without ImageJ metadata.
func goldenTIFF(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	for name, c := range map[string]struct {
		descr string
		shape []int
		limit int64
	}{
		"u2_3x4x5.tif":     {"<u2", []int{3, 4, 5}, tiffClassicLimit},
		"f8_2x2x2x3_b.tif": {"<f8", []int{2, 2, 2, 3}, 0},
	} {
		l := mustTIFF(t, c.descr, c.shape, c.limit)
		data := make([]byte, l.Pages*l.FrameBytes)
		for i := range data {
			data[i] = byte(i * 7)
		}
		out[name] = tiffWhole(t, l, data)
	}
	return out
}

func TestTIFFGolden(t *testing.T) {
	for name, got := range goldenTIFF(t) {
		file := filepath.Join("testdata", "golden", name)
		if *update {
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run go test -update to write it)", err)
		}
		if string(got) != string(want) {
			t.Errorf("%s differs from the golden file", name)
		}
	}
}

// FuzzTIFFLayout: any dtype and shape gives an error or a layout whose size adds up and
// whose header an independent reader walks to exactly its pages, without a panic.
func FuzzTIFFLayout(f *testing.F) {
	f.Add(uint8(4), int64(3), int64(2), int64(64), int64(48), int64(0))
	f.Add(uint8(0), int64(1<<40), int64(1<<30), int64(1<<20), int64(3), int64(1<<32))
	f.Add(uint8(6), int64(0), int64(2), int64(2), int64(2), int64(0))
	f.Add(uint8(8), int64(-1), int64(2), int64(2), int64(2), int64(1))
	f.Fuzz(func(t *testing.T, dtSel uint8, a, b, h, w, limit int64) {
		dt := fuzzDtypes[int(dtSel)%len(fuzzDtypes)]
		shape := []int{int(a), int(b), int(h), int(w)}
		l, err := newTIFFLayout(dt, shape, limit)
		if err != nil {
			return
		}
		if l.DataEnd != l.DataOffset+l.Pages*l.FrameBytes || l.Size < l.DataEnd || l.Size < 8 || l.Size > tiffMaxSize {
			t.Fatalf("%v: size %d, data at [%d, %d), %d pages of %d", shape, l.Size, l.DataOffset, l.DataEnd, l.Pages, l.FrameBytes)
		}
		if l.Pages > 0 && l.DataOffset%tiffAlign != 0 {
			t.Fatalf("%v: data at %d", shape, l.DataOffset)
		}
		if !l.BigTIFF && l.Size >= limit && l.Pages > 0 {
			t.Fatalf("%v: classic TIFF of %d bytes with the limit at %d", shape, l.Size, limit)
		}
		if l.Size > 1<<20 {
			return
		}
		_, pages, err := parseTIFF(tiffWhole(t, l, nil))
		if err != nil || int64(len(pages)) != l.Pages {
			t.Fatalf("%v: %d pages parsed, want %d: %v", shape, len(pages), l.Pages, err)
		}
	})
}
