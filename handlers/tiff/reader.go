// Package tiff reads area-detector TIFF frames: the AD_TIFF handler (one TIFF per frame,
// named by a Python %-format template) over a small strip reader.
//
// Why a reader of its own: golang.org/x/image/tiff decodes to image.Image and has no
// 32-bit integer or floating-point grayscale (it refuses SampleFormat 3 and 32-bit gray),
// which detectors write all the time (Pilatus int32, float32 from processing plugins), and
// no other maintained pure-Go library reads them; libtiff through cgo would add a build
// dependency for what is, for detector frames, a short format. This reader handles what
// areaDetector's NDFileTIFF, tifffile and Pillow write for single frames: classic and
// BigTIFF, either byte order, one page, strips, 8/16/32/64-bit unsigned, signed and float
// samples, one or more samples per pixel (chunky), uncompressed, LZW (through
// golang.org/x/image/tiff/lzw), Deflate and PackBits, with horizontal (2) or floating-point
// (3) predictors. Tiled or multi-page files and JPEG are refused with an error saying so.
package tiff

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"golang.org/x/image/tiff/lzw"
)

// ErrFormat means a file is not a TIFF this package reads.
var ErrFormat = errors.New("unsupported TIFF")

// Info is what the first (only) IFD of a TIFF says about its image.
type Info struct {
	Width, Height int
	Samples       int    // samples per pixel
	Dtype         string // numpy descr of the returned array (little-endian form)
	ElemSize      int

	order        binary.ByteOrder
	compression  int
	predictor    int
	sampleFmt    int
	rowsPerStrip int
	offsets      []uint64
	counts       []uint64
}

// Shape is the array shape tifffile gives the image: (height, width), or (height, width,
// samples) for more than one sample per pixel.
func (in *Info) Shape() []int {
	if in.Samples == 1 {
		return []int{in.Height, in.Width}
	}
	return []int{in.Height, in.Width, in.Samples}
}

// Size is the size of the image's array in bytes.
func (in *Info) Size() int { return in.Width * in.Height * in.Samples * in.ElemSize }

const (
	tagNewSubfileType = 254
	tagWidth          = 256
	tagHeight         = 257
	tagBitsPerSample  = 258
	tagCompression    = 259
	tagStripOffsets   = 273
	tagSamplesPerPix  = 277
	tagRowsPerStrip   = 278
	tagStripCounts    = 279
	tagPlanarConfig   = 284
	tagPredictor      = 317
	tagTileWidth      = 322
	tagSampleFormat   = 339
)

// maxPixels bounds the image a header may claim (64 Gi samples): a corrupt header must
// not make the reader allocate without end.
const maxPixels = 1 << 36

// ReadInfo parses the header and first IFD of the TIFF in r (of the given size).
func ReadInfo(r io.ReaderAt, size int64) (*Info, error) {
	var hdr [16]byte
	if n, _ := r.ReadAt(hdr[:], 0); n < 8 {
		return nil, fmt.Errorf("file of %d bytes: %w", size, ErrFormat)
	}
	var order binary.ByteOrder
	switch string(hdr[:2]) {
	case "II":
		order = binary.LittleEndian
	case "MM":
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("bad byte-order mark %q: %w", hdr[:2], ErrFormat)
	}
	p := &ifdParser{r: r, size: size, order: order}
	var ifd uint64
	switch v := order.Uint16(hdr[2:]); v {
	case 42:
		ifd = uint64(order.Uint32(hdr[4:]))
	case 43:
		if order.Uint16(hdr[4:]) != 8 {
			return nil, fmt.Errorf("BigTIFF offset size %d: %w", order.Uint16(hdr[4:]), ErrFormat)
		}
		p.big = true
		ifd = order.Uint64(hdr[8:])
	default:
		return nil, fmt.Errorf("version %d: not a TIFF: %w", v, ErrFormat)
	}
	tags, next, err := p.readIFD(ifd)
	if err != nil {
		return nil, err
	}
	if next != 0 {
		return nil, fmt.Errorf("more than one page (next IFD at %d): multi-page TIFFs are not supported: %w", next, ErrFormat)
	}
	one := func(tag uint16, def uint64) (uint64, error) {
		v, ok := tags[tag]
		if !ok {
			return def, nil
		}
		if len(v) == 0 {
			return 0, fmt.Errorf("tag %d is empty: %w", tag, ErrFormat)
		}
		return v[0], nil
	}
	in := &Info{order: order}
	var w, h, spp, comp, pred, planar, sfmt, rps uint64
	for _, f := range []struct {
		v   *uint64
		tag uint16
		def uint64
	}{
		{&w, tagWidth, 0}, {&h, tagHeight, 0}, {&spp, tagSamplesPerPix, 1}, {&comp, tagCompression, 1},
		{&pred, tagPredictor, 1}, {&planar, tagPlanarConfig, 1}, {&sfmt, tagSampleFormat, 1},
		{&rps, tagRowsPerStrip, math.MaxUint32},
	} {
		if *f.v, err = one(f.tag, f.def); err != nil {
			return nil, err
		}
	}
	if _, tiled := tags[tagTileWidth]; tiled {
		return nil, fmt.Errorf("tiled TIFFs are not supported: %w", ErrFormat)
	}
	if w == 0 || h == 0 || spp == 0 || w > maxPixels/h || spp > 64 || w*h*spp > maxPixels {
		return nil, fmt.Errorf("image %dx%d with %d samples per pixel: %w", w, h, spp, ErrFormat)
	}
	if spp > 1 && planar != 1 {
		return nil, fmt.Errorf("separate sample planes (PlanarConfiguration %d) are not supported: %w", planar, ErrFormat)
	}
	bps := tags[tagBitsPerSample]
	if len(bps) == 0 {
		bps = []uint64{1}
	}
	for _, b := range bps {
		if b != bps[0] {
			return nil, fmt.Errorf("BitsPerSample %v differ between samples: %w", bps, ErrFormat)
		}
	}
	var kind byte
	switch sfmt {
	case 1:
		kind = 'u'
	case 2:
		kind = 'i'
	case 3:
		kind = 'f'
	default:
		return nil, fmt.Errorf("SampleFormat %d: %w", sfmt, ErrFormat)
	}
	switch {
	case kind == 'f' && (bps[0] == 16 || bps[0] == 32 || bps[0] == 64):
	case kind != 'f' && (bps[0] == 8 || bps[0] == 16 || bps[0] == 32 || bps[0] == 64):
	default:
		return nil, fmt.Errorf("%d-bit samples of SampleFormat %d: %w", bps[0], sfmt, ErrFormat)
	}
	switch comp {
	case 1, 5, 8, 32946, 32773:
	default:
		return nil, fmt.Errorf("compression %d: only none (1), LZW (5), Deflate (8, 32946) and PackBits (32773) are supported: %w", comp, ErrFormat)
	}
	switch {
	case pred == 1:
	case pred == 2 && kind != 'f':
	case pred == 3 && kind == 'f':
	default:
		return nil, fmt.Errorf("predictor %d for SampleFormat %d: %w", pred, sfmt, ErrFormat)
	}
	in.Width, in.Height, in.Samples = int(w), int(h), int(spp)
	in.ElemSize = int(bps[0] / 8)
	if in.ElemSize == 1 {
		in.Dtype = fmt.Sprintf("|%c1", kind)
	} else {
		in.Dtype = fmt.Sprintf("<%c%d", kind, in.ElemSize)
	}
	in.compression, in.predictor, in.sampleFmt = int(comp), int(pred), int(sfmt)
	in.rowsPerStrip = int(min(rps, h))
	if in.rowsPerStrip == 0 {
		in.rowsPerStrip = int(h)
	}
	// No compression here expands more than about 1:2000 (Deflate's limit is 1:1032): a
	// header claiming more is corrupt, and must not make the reader allocate it.
	if uint64(in.Size()) > uint64(size)*4096+1<<20 {
		return nil, fmt.Errorf("image of %d bytes from a file of %d: %w", in.Size(), size, ErrFormat)
	}
	in.offsets = tags[tagStripOffsets]
	in.counts = tags[tagStripCounts]
	strips := (in.Height + in.rowsPerStrip - 1) / in.rowsPerStrip
	if len(in.offsets) != strips {
		return nil, fmt.Errorf("%d strip offsets for %d strips: %w", len(in.offsets), strips, ErrFormat)
	}
	if in.counts == nil && comp == 1 {
		// Some writers leave StripByteCounts out of uncompressed files.
		for s := 0; s < strips; s++ {
			in.counts = append(in.counts, uint64(in.stripRows(s)*in.rowBytes()))
		}
	}
	if len(in.counts) != strips {
		return nil, fmt.Errorf("%d strip byte counts for %d strips: %w", len(in.counts), strips, ErrFormat)
	}
	for s := range in.offsets {
		if in.offsets[s] > uint64(size) || in.counts[s] > uint64(size)-in.offsets[s] {
			return nil, fmt.Errorf("strip %d (%d bytes at %d) lies past the end of the %d-byte file: %w",
				s, in.counts[s], in.offsets[s], size, ErrFormat)
		}
	}
	return in, nil
}

func (in *Info) rowBytes() int { return in.Width * in.Samples * in.ElemSize }

func (in *Info) stripRows(s int) int { return min(in.rowsPerStrip, in.Height-s*in.rowsPerStrip) }

// ReadImage reads the image described by in from r into dst (len in.Size()): samples
// little-endian, rows in order.
func ReadImage(r io.ReaderAt, in *Info, dst []byte) error {
	if len(dst) != in.Size() {
		return fmt.Errorf("read tiff: buffer of %d bytes for a %d-byte image", len(dst), in.Size())
	}
	rb := in.rowBytes()
	var raw []byte
	for s := range in.offsets {
		rows := in.stripRows(s)
		want := rows * rb
		out := dst[s*in.rowsPerStrip*rb : s*in.rowsPerStrip*rb+want]
		if cap(raw) < int(in.counts[s]) {
			raw = make([]byte, in.counts[s])
		}
		raw = raw[:in.counts[s]]
		if _, err := r.ReadAt(raw, int64(in.offsets[s])); err != nil {
			return fmt.Errorf("read strip %d: %w", s, err)
		}
		if err := in.decompress(raw, out); err != nil {
			return fmt.Errorf("strip %d: %w", s, err)
		}
		for row := 0; row < rows; row++ {
			in.unpredict(out[row*rb : (row+1)*rb])
		}
	}
	return nil
}

// decompress fills out (the strip's rows) from the strip's bytes.
func (in *Info) decompress(raw, out []byte) error {
	var rd io.Reader
	switch in.compression {
	case 1:
		if len(raw) < len(out) {
			return fmt.Errorf("%d bytes for %d: %w", len(raw), len(out), ErrFormat)
		}
		copy(out, raw)
		return nil
	case 32773:
		return unpackBits(raw, out)
	case 5:
		lr := lzw.NewReader(bytes.NewReader(raw), lzw.MSB, 8)
		defer lr.Close()
		rd = lr
	case 8, 32946:
		zr, err := zlib.NewReader(bytes.NewReader(raw))
		if err != nil {
			return fmt.Errorf("deflate: %w", err)
		}
		defer zr.Close()
		rd = zr
	}
	if _, err := io.ReadFull(rd, out); err != nil {
		return fmt.Errorf("decompress (compression %d): %w", in.compression, err)
	}
	return nil
}

// unpackBits decodes PackBits into out.
func unpackBits(src, out []byte) error {
	si, di := 0, 0
	for di < len(out) {
		if si >= len(src) {
			return fmt.Errorf("packbits: %d of %d bytes: %w", di, len(out), ErrFormat)
		}
		n := int(int8(src[si]))
		si++
		switch {
		case n >= 0:
			if si+n+1 > len(src) || di+n+1 > len(out) {
				return fmt.Errorf("packbits: literal run overruns: %w", ErrFormat)
			}
			copy(out[di:], src[si:si+n+1])
			si += n + 1
			di += n + 1
		case n != -128:
			if si >= len(src) || di+1-n > len(out) {
				return fmt.Errorf("packbits: repeat run overruns: %w", ErrFormat)
			}
			for k := 0; k < 1-n; k++ {
				out[di+k] = src[si]
			}
			si++
			di += 1 - n
		}
	}
	return nil
}

// unpredict undoes the predictor on one row and leaves its samples little-endian.
func (in *Info) unpredict(row []byte) {
	e, spp := in.ElemSize, in.Samples
	switch in.predictor {
	case 3:
		// Floating-point predictor (libtiff's fpAcc): byte differences over the row with a
		// stride of one pixel, then the bytes of each sample gathered from planes ordered
		// most significant first. The result is in host (little-endian) order whatever the
		// file's byte order.
		for i := spp; i < len(row); i++ {
			row[i] += row[i-spp]
		}
		tmp := append([]byte(nil), row...)
		n := len(row) / e
		for i := 0; i < n; i++ {
			for b := 0; b < e; b++ {
				row[i*e+b] = tmp[(e-1-b)*n+i] // plane 0 holds the most significant byte
			}
		}
		return
	case 2:
		if in.order == binary.BigEndian {
			swap(row, e)
		}
		ns := len(row) / e
		switch e {
		case 1:
			for i := spp; i < ns; i++ {
				row[i] += row[i-spp]
			}
		case 2:
			for i := spp; i < ns; i++ {
				binary.LittleEndian.PutUint16(row[2*i:], binary.LittleEndian.Uint16(row[2*i:])+binary.LittleEndian.Uint16(row[2*(i-spp):]))
			}
		case 4:
			for i := spp; i < ns; i++ {
				binary.LittleEndian.PutUint32(row[4*i:], binary.LittleEndian.Uint32(row[4*i:])+binary.LittleEndian.Uint32(row[4*(i-spp):]))
			}
		case 8:
			for i := spp; i < ns; i++ {
				binary.LittleEndian.PutUint64(row[8*i:], binary.LittleEndian.Uint64(row[8*i:])+binary.LittleEndian.Uint64(row[8*(i-spp):]))
			}
		}
		return
	}
	if in.order == binary.BigEndian {
		swap(row, e)
	}
}

func swap(b []byte, unit int) {
	switch unit {
	case 2:
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	case 4:
		for i := 0; i+3 < len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], binary.BigEndian.Uint32(b[i:]))
		}
	case 8:
		for i := 0; i+7 < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], binary.BigEndian.Uint64(b[i:]))
		}
	}
}

// ifdParser reads IFD entries, classic or BigTIFF.
type ifdParser struct {
	r     io.ReaderAt
	size  int64
	order binary.ByteOrder
	big   bool
}

// typeSize is the size of one value of each TIFF field type.
var typeSize = map[uint16]int{1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}

// readIFD reads the integer-valued tags of the IFD at off (other tags are skipped) and the
// offset of the next IFD.
func (p *ifdParser) readIFD(off uint64) (map[uint16][]uint64, uint64, error) {
	countSize, entrySize, nextSize := 2, 12, 4
	if p.big {
		countSize, entrySize, nextSize = 8, 20, 8
	}
	if off < 8 || off+uint64(countSize) > uint64(p.size) {
		return nil, 0, fmt.Errorf("IFD offset %d: %w", off, ErrFormat)
	}
	cb := make([]byte, countSize)
	if _, err := p.r.ReadAt(cb, int64(off)); err != nil {
		return nil, 0, fmt.Errorf("read IFD: %w", err)
	}
	var n uint64
	if p.big {
		n = p.order.Uint64(cb)
	} else {
		n = uint64(p.order.Uint16(cb))
	}
	if n > 4096 || off+uint64(countSize)+n*uint64(entrySize)+uint64(nextSize) > uint64(p.size) {
		return nil, 0, fmt.Errorf("IFD of %d entries at %d: %w", n, off, ErrFormat)
	}
	b := make([]byte, int(n)*entrySize+nextSize)
	if _, err := p.r.ReadAt(b, int64(off)+int64(countSize)); err != nil {
		return nil, 0, fmt.Errorf("read IFD: %w", err)
	}
	tags := map[uint16][]uint64{}
	for i := 0; i < int(n); i++ {
		e := b[i*entrySize : (i+1)*entrySize]
		tag, typ := p.order.Uint16(e), p.order.Uint16(e[2:])
		var count uint64
		var val []byte
		if p.big {
			count, val = p.order.Uint64(e[4:]), e[12:20]
		} else {
			count, val = uint64(p.order.Uint32(e[4:])), e[8:12]
		}
		ts, ok := typeSize[typ]
		if !ok || !wanted(tag) {
			continue
		}
		switch typ {
		case 1, 3, 4, 16, 8, 9, 17, 6, 13, 18:
		default:
			continue // rationals, floats, strings: no tag read here has them
		}
		if count > 1<<24 {
			return nil, 0, fmt.Errorf("tag %d with %d values: %w", tag, count, ErrFormat)
		}
		total := count * uint64(ts)
		data := val[:min(total, uint64(len(val)))]
		if total > uint64(len(val)) {
			var at uint64
			if p.big {
				at = p.order.Uint64(val)
			} else {
				at = uint64(p.order.Uint32(val))
			}
			if at > uint64(p.size) || total > uint64(p.size)-at {
				return nil, 0, fmt.Errorf("tag %d values past the end of the file: %w", tag, ErrFormat)
			}
			data = make([]byte, total)
			if _, err := p.r.ReadAt(data, int64(at)); err != nil {
				return nil, 0, fmt.Errorf("read tag %d: %w", tag, err)
			}
		}
		vals := make([]uint64, count)
		for k := range vals {
			d := data[k*ts:]
			switch ts {
			case 1:
				vals[k] = uint64(d[0])
			case 2:
				vals[k] = uint64(p.order.Uint16(d))
			case 4:
				vals[k] = uint64(p.order.Uint32(d))
			case 8:
				vals[k] = p.order.Uint64(d)
			}
		}
		tags[tag] = vals
	}
	nb := b[int(n)*entrySize:]
	var next uint64
	if p.big {
		next = p.order.Uint64(nb)
	} else {
		next = uint64(p.order.Uint32(nb))
	}
	return tags, next, nil
}

func wanted(tag uint16) bool {
	switch tag {
	case tagNewSubfileType, tagWidth, tagHeight, tagBitsPerSample, tagCompression, tagStripOffsets,
		tagSamplesPerPix, tagRowsPerStrip, tagStripCounts, tagPlanarConfig, tagPredictor, tagTileWidth,
		tagSampleFormat:
		return true
	}
	return false
}
