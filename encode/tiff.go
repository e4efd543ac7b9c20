package encode

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
)

// A field of two or more dimensions per event is also a multi-page TIFF: one page (image) per
// frame, the pixels in the field's own dtype, uncompressed, one strip per page. Every leading
// dimension beyond the last two becomes pages: shape (events, frames, H, W) is events × frames
// pages of H × W.
//
// The file is the array's C-order bytes between a header block and a trailer of IFDs, laid out
// at fixed offsets so that it is known, byte for byte and to its exact size, without reading
// any data:
//
//	[0, DataOffset)         file header, ImageDescription, IFD 0, zeros up to a multiple of 4096
//	[DataOffset, DataEnd)   the pixels: page k at DataOffset + k*FrameBytes
//	[DataEnd, Size)         zeros up to a multiple of 8, then IFDs 1..n-1 at a fixed stride
//
// The pixels are exactly the .npy's data after its header, which lets a reader serve the .tif
// as a view of the .npy. IFDs 1..n-1 come after the pixels, as ImageJ itself writes stacks: a
// reader walking the IFD chain (tifffile's pages[k], PIL's seek, libtiff's TIFFSetDirectory)
// reads the end of the file, where the kernel's readahead finds no pixels to pull in: walking
// the pages fills no frame. The IFDs are computed on read (ReadMetaAt), one at a time:
// a file of a million pages needs no trailer in memory.
//
// A file smaller than 4 GiB is classic TIFF, a larger one BigTIFF (64-bit offsets); which one
// is decided by the classic layout's exact size. Pages of an ImageJ-compatible dtype (uint8,
// bool as uint8, uint16, int16, float32: what tifffile writes as ImageJ) carry ImageJ
// hyperstack metadata in the first page's ImageDescription, so ImageJ and Fiji open the file as
// one stack (ImageJ itself reads classic TIFF only; Fiji's Bio-Formats reads the BigTIFF).
// Other dtypes (int8, (u)int32, (u)int64, float16, float64, complex) are plain multi-page TIFF
// with the matching SampleFormat and BitsPerSample, as tifffile writes them.

// tiffClassicLimit is the size from which a file is written as BigTIFF: classic TIFF's offsets
// are 32 bits.
const tiffClassicLimit = 1 << 32

// tiffAlign is the multiple the header block is padded to: each page's pixels then start at a
// fixed offset that is page-aligned whenever the frame size is, so that reading one frame
// through mmap touches that frame's pages only.
const tiffAlign = 4096

// tiffMaxSize bounds the file size: every offset computation stays far from overflow.
const tiffMaxSize = 1 << 60

// imagejVersion is the version tifffile writes in ImageJ descriptions.
const imagejVersion = "1.11a"

// TIFF tag numbers and field types (TIFF 6.0, BigTIFF).
const (
	tagImageWidth      = 256
	tagImageLength     = 257
	tagBitsPerSample   = 258
	tagCompression     = 259
	tagPhotometric     = 262
	tagDescription     = 270
	tagStripOffsets    = 273
	tagSamplesPerPixel = 277
	tagRowsPerStrip    = 278
	tagStripByteCounts = 279
	tagSampleFormat    = 339

	typeASCII = 2
	typeShort = 3
	typeLong  = 4
	typeLong8 = 16
)

// tiffTags is how many tags every IFD has; the first has the ImageDescription besides.
const tiffTags = 10

// TIFFLayout is the layout of the TIFF of an array: see the comment at the top of tiff.go.
type TIFFLayout struct {
	Pages      int64 // images: the product of all dimensions but the last two
	Height     int   // the second-last dimension
	Width      int   // the last dimension
	FrameBytes int64 // bytes of one page's pixels
	BigTIFF    bool
	// ImageJ: the first page's ImageDescription holds ImageJ hyperstack metadata.
	ImageJ     bool
	DataOffset int64 // page k's pixels start at DataOffset + k*FrameBytes
	DataEnd    int64 // DataOffset + Pages*FrameBytes: where the pixels end
	Size       int64 // the exact size of the file

	bits, format int    // BitsPerSample, SampleFormat
	head         []byte // [0, len(head)): file header, description, IFD 0; zeros to DataOffset
	ifd1         int64  // the offset of IFD 1; IFD k >= 1 is at ifd1 + (k-1)*stride
	stride       int64  // the size of IFDs 1..n-1
}

// NewTIFFLayout returns the layout of the TIFF of an array of dtype dt and shape (at least
// two dimensions, C order, little-endian data). Dtypes TIFF has no sample format for
// (strings, big-endian data) and shapes of a frame wider than 2^32-1 are refused with an
// error wrapping ErrUnsupported. An array with no pages (no events yet, or a dimension of 0)
// is a TIFF of no images: the 8-byte file header alone, which readers refuse as they do any
// TIFF without an image.
func NewTIFFLayout(dt Dtype, shape []int) (*TIFFLayout, error) {
	return newTIFFLayout(dt, shape, tiffClassicLimit)
}

// newTIFFLayout is NewTIFFLayout with the size from which the file is BigTIFF.
func newTIFFLayout(dt Dtype, shape []int, classicLimit int64) (*TIFFLayout, error) {
	e, err := dt.elem()
	if err != nil {
		return nil, fmt.Errorf("tiff: %w", err)
	}
	l := &TIFFLayout{bits: 8 * e.size}
	switch e.kind {
	case 'b', 'u':
		l.format = 1
	case 'i':
		l.format = 2
	case 'f':
		l.format = 3
	case 'c':
		l.format = 6 // complex IEEE floating point
	default:
		return nil, fmt.Errorf("tiff: dtype %s has no TIFF sample format: %w", dt.Descr, ErrUnsupported)
	}
	if e.big && e.size > 1 {
		return nil, fmt.Errorf("tiff: big-endian dtype %s: %w", dt.Descr, ErrUnsupported)
	}
	if len(shape) < 2 {
		return nil, fmt.Errorf("tiff: an array of %d dimensions has no images: %w", len(shape), ErrUnsupported)
	}
	h, w := shape[len(shape)-2], shape[len(shape)-1]
	if h < 0 || w < 0 || h > math.MaxUint32 || w > math.MaxUint32 {
		return nil, fmt.Errorf("tiff: frames of %d x %d pixels: %w", h, w, ErrUnsupported)
	}
	l.Height, l.Width = h, w
	// Sizes are checked against tiffMaxSize before each product, so none overflows.
	frame := int64(e.size)
	for _, d := range []int{h, w} {
		if d != 0 && frame > tiffMaxSize/int64(d) {
			return nil, fmt.Errorf("tiff: frames of %d x %d %s: too large", h, w, dt.Descr)
		}
		frame *= int64(d)
	}
	pages := int64(1)
	for _, d := range shape[:len(shape)-2] {
		if d < 0 {
			return nil, fmt.Errorf("tiff: shape %v: negative dimension", shape)
		}
		if d != 0 && pages > tiffMaxSize/int64(d) {
			return nil, fmt.Errorf("tiff: shape %v: too many pages", shape)
		}
		pages *= int64(d)
	}
	if frame == 0 {
		pages = 0
	}
	l.Pages, l.FrameBytes = pages, frame
	if pages == 0 {
		l.head = tiffFileHeader(nil, false, 0)
		l.DataOffset, l.DataEnd, l.Size, l.ifd1 = 8, 8, 8, 8
		return l, nil
	}
	if frame > tiffMaxSize/pages || pages > tiffMaxSize/256 {
		return nil, fmt.Errorf("tiff: shape %v of %s: too large", shape, dt.Descr)
	}
	l.ImageJ = imagejDtype(dt) && pages <= math.MaxInt32 // ImageJ counts images in a Java int
	if err := l.lay(false); err != nil {
		return nil, err
	}
	if l.Size >= classicLimit {
		if err := l.lay(true); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// imagejDtype reports whether ImageJ reads pages of dt as they are: the dtypes tifffile
// writes ImageJ files of ('B', 'H', 'h', 'f'), and bool, stored as uint8 zeros and ones.
func imagejDtype(dt Dtype) bool {
	switch dt.Descr {
	case "|u1", "|b1", "<u2", "<i2", "<f4":
		return true
	}
	return false
}

// ImageJDescription is the ImageDescription tifffile's imagej_description gives for a stack
// of pages grayscale images (axes TYX): ImageJ opens the file as a hyperstack of pages time
// points.
func ImageJDescription(pages int64) string {
	s := "ImageJ=" + imagejVersion + "\nimages=" + strconv.FormatInt(pages, 10) + "\n"
	if pages > 1 {
		s += "frames=" + strconv.FormatInt(pages, 10) + "\n"
	}
	s += "hyperstack=true\nmode=grayscale\n"
	if pages > 1 {
		s += "loop=false\n"
	}
	return s
}

// lay computes the offsets and the first IFD for classic TIFF or BigTIFF.
func (l *TIFFLayout) lay(big bool) error {
	l.BigTIFF = big
	var desc []byte
	if l.ImageJ {
		desc = append([]byte(ImageJDescription(l.Pages)), 0) // ASCII: NUL-terminated
	}
	hdr := int64(8)
	if big {
		hdr = 16
	}
	// IFDs start on a word boundary.
	ifd0 := hdr + int64(len(desc))
	ifd0 += ifd0 % 2
	n0 := tiffTags
	if desc != nil {
		n0++
	}
	headEnd := ifd0 + l.ifdLen(n0)
	l.DataOffset = (headEnd + tiffAlign - 1) / tiffAlign * tiffAlign
	if l.FrameBytes > (tiffMaxSize-l.DataOffset)/l.Pages {
		return fmt.Errorf("tiff: %d pages of %d bytes: too large", l.Pages, l.FrameBytes)
	}
	l.DataEnd = l.DataOffset + l.Pages*l.FrameBytes
	l.stride = l.ifdLen(tiffTags)
	l.ifd1 = (l.DataEnd + 7) / 8 * 8
	l.Size = l.DataEnd
	if l.Pages > 1 {
		l.Size = l.ifd1 + (l.Pages-1)*l.stride
	}
	if l.Size > tiffMaxSize {
		return fmt.Errorf("tiff: %d pages of %d bytes: too large", l.Pages, l.FrameBytes)
	}

	head := tiffFileHeader(make([]byte, 0, headEnd), big, ifd0)
	head = append(head, desc...)
	for int64(len(head)) < ifd0 {
		head = append(head, 0)
	}
	l.head = l.appendIFD(head, 0, hdr, len(desc))
	if int64(len(l.head)) != headEnd {
		panic(fmt.Sprintf("encode: tiff IFD 0 is %d bytes, want %d", int64(len(l.head))-ifd0, headEnd-ifd0))
	}
	return nil
}

// ifdLen is the size of an IFD of n entries.
func (l *TIFFLayout) ifdLen(n int) int64 {
	if l.BigTIFF {
		return 8 + int64(n)*20 + 8
	}
	return 2 + int64(n)*12 + 4
}

// ifdOffset is the offset of IFD k >= 1.
func (l *TIFFLayout) ifdOffset(k int64) int64 { return l.ifd1 + (k-1)*l.stride }

// tiffFileHeader appends the little-endian file header with the first IFD at ifd0 (0: none).
func tiffFileHeader(b []byte, big bool, ifd0 int64) []byte {
	if big {
		b = append(b, 'I', 'I', 43, 0, 8, 0, 0, 0)
		return binary.LittleEndian.AppendUint64(b, uint64(ifd0))
	}
	b = append(b, 'I', 'I', 42, 0)
	return binary.LittleEndian.AppendUint32(b, uint32(ifd0))
}

// appendIFD appends IFD k; for k == 0 with a description of descLen bytes at descOff.
func (l *TIFFLayout) appendIFD(b []byte, k int64, descOff int64, descLen int) []byte {
	n := tiffTags
	if k == 0 && descLen > 0 {
		n++
	}
	if l.BigTIFF {
		b = binary.LittleEndian.AppendUint64(b, uint64(n))
	} else {
		b = binary.LittleEndian.AppendUint16(b, uint16(n))
	}
	entry := func(tag, typ int, count, value int64) {
		b = binary.LittleEndian.AppendUint16(b, uint16(tag))
		b = binary.LittleEndian.AppendUint16(b, uint16(typ))
		if l.BigTIFF {
			b = binary.LittleEndian.AppendUint64(b, uint64(count))
		} else {
			b = binary.LittleEndian.AppendUint32(b, uint32(count))
		}
		// Values are left-justified in the value field: a SHORT is its first two bytes.
		var v [8]byte
		if typ == typeShort {
			binary.LittleEndian.PutUint16(v[:], uint16(value))
		} else {
			binary.LittleEndian.PutUint64(v[:], uint64(value))
		}
		if l.BigTIFF {
			b = append(b, v[:8]...)
		} else {
			b = append(b, v[:4]...)
		}
	}
	offType := typeLong
	if l.BigTIFF {
		offType = typeLong8
	}
	// In ascending tag order, as TIFF requires.
	entry(tagImageWidth, typeLong, 1, int64(l.Width))
	entry(tagImageLength, typeLong, 1, int64(l.Height))
	entry(tagBitsPerSample, typeShort, 1, int64(l.bits))
	entry(tagCompression, typeShort, 1, 1) // none
	entry(tagPhotometric, typeShort, 1, 1) // BlackIsZero
	if k == 0 && descLen > 0 {
		entry(tagDescription, typeASCII, int64(descLen), descOff)
	}
	entry(tagStripOffsets, offType, 1, l.DataOffset+k*l.FrameBytes)
	entry(tagSamplesPerPixel, typeShort, 1, 1)
	entry(tagRowsPerStrip, typeLong, 1, int64(l.Height))
	entry(tagStripByteCounts, offType, 1, l.FrameBytes)
	entry(tagSampleFormat, typeShort, 1, int64(l.format))
	var next int64
	if k+1 < l.Pages {
		next = l.ifdOffset(k + 1)
	}
	if l.BigTIFF {
		return binary.LittleEndian.AppendUint64(b, uint64(next))
	}
	return binary.LittleEndian.AppendUint32(b, uint32(next))
}

// ReadMetaAt copies the bytes at off that are not pixels into p and returns how many it
// copied: those of the header block up to DataOffset, or of the trailer up to Size; 0 at an
// offset within the pixels [DataOffset, DataEnd), past the end or negative. It reads no data:
// the IFDs it covers are computed.
func (l *TIFFLayout) ReadMetaAt(p []byte, off int64) int {
	switch {
	case off < 0 || off >= l.Size:
		return 0
	case off < l.DataOffset:
		if rest := l.DataOffset - off; int64(len(p)) > rest {
			p = p[:rest]
		}
		n := 0
		if off < int64(len(l.head)) {
			n = copy(p, l.head[off:])
		}
		clear(p[n:]) // padding to DataOffset
		return len(p)
	case off < l.DataEnd:
		return 0
	}
	if rest := l.Size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n := 0
	if off < l.ifd1 {
		n = int(min(int64(len(p)), l.ifd1-off))
		clear(p[:n]) // padding after the pixels
	}
	var buf []byte
	for n < len(p) {
		o := off + int64(n)
		k := 1 + (o-l.ifd1)/l.stride
		buf = l.appendIFD(buf[:0], k, 0, 0)
		n += copy(p[n:], buf[o-l.ifdOffset(k):])
	}
	return n
}
