package table

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

// ErrNoTIFF wraps the reasons a column has no .tif: fewer than two dimensions per event, or a
// dtype TIFF has no sample format for (strings). It wraps catalog.ErrNotFound: such a file
// does not exist.
var ErrNoTIFF = fmt.Errorf("no tif: %w", catalog.ErrNotFound)

// TIFF is the column's multi-page TIFF (encode.TIFFLayout): a view of its .npy with a TIFF
// header block in place of the .npy header, the frames' bytes read through the .npy. No copy
// of the data is made: a stored column's .tif reads its cached .npy file, an external field's
// reads its sparse cache file and fills the rows a read covers, as its .npy does.
func (c *Column) TIFF(ctx context.Context) (File, error) {
	dt, shape, err := c.Describe(ctx)
	if err != nil {
		return nil, err
	}
	if len(shape) < 2 {
		return nil, fmt.Errorf("%s.tif: a field of %d dimensions per event: %w", c.Name, len(shape), ErrNoTIFF)
	}
	l, err := encode.NewTIFFLayout(dt, append([]int{c.Rows}, shape...))
	if err != nil {
		if errors.Is(err, encode.ErrUnsupported) {
			return nil, fmt.Errorf("%s.tif: %w: %w", c.Name, ErrNoTIFF, err)
		}
		return nil, fmt.Errorf("%s.tif: %w", c.Name, err)
	}
	npy, err := c.NPY(ctx)
	if err != nil {
		return nil, err
	}
	// The .npy's data is the TIFF's pixel data: it starts after the .npy's header.
	hdr := npy.Size() - (l.DataEnd - l.DataOffset)
	if hdr <= 0 || hdr > 1<<20 {
		return nil, fmt.Errorf("%s.tif: a .npy of %d bytes does not hold %d frames of %d bytes", c.Name, npy.Size(), l.Pages, l.FrameBytes)
	}
	return &tiffFile{l: l, npy: npy, npyHdr: hdr}, nil
}

// tiffFile is a column's .tif over its .npy.
type tiffFile struct {
	l      *encode.TIFFLayout
	npy    File
	npyHdr int64 // where the .npy's data starts
}

func (f *tiffFile) Size() int64 { return f.l.Size }

func (f *tiffFile) Open(ctx context.Context) (Handle, error) {
	h, err := f.npy.Open(ctx)
	if err != nil {
		return nil, err
	}
	return &tiffHandle{f: f, npy: h}, nil
}

// tiffHandle is one open of a .tif: one open of the .npy beneath it, so that a reader going
// through the frames in order has the next ones filled ahead as a reader of the .npy has.
type tiffHandle struct {
	f   *tiffFile
	npy Handle
}

func (h *tiffHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	l := h.f.l
	if off < 0 {
		return 0, fmt.Errorf("read tif at %d: negative offset", off)
	}
	if off >= l.Size {
		return 0, io.EOF
	}
	if rest := l.Size - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	for n := 0; n < len(p); {
		o := off + int64(n)
		if o < l.DataOffset || o >= l.DataEnd {
			n += l.ReadMetaAt(p[n:], o)
			continue
		}
		q := p[n:min(int64(len(p)), int64(n)+l.DataEnd-o)]
		k, err := h.npy.ReadAt(ctx, q, h.f.npyHdr+o-l.DataOffset)
		n += k
		if err != nil && !errors.Is(err, io.EOF) {
			return n, err
		}
		if k < len(q) {
			return n, fmt.Errorf("read tif at %d: the .npy ends early", off+int64(n))
		}
	}
	if off+int64(len(p)) == l.Size {
		return len(p), io.EOF
	}
	return len(p), nil
}

// Backing is nil: the file's header is not the cache file's.
func (h *tiffHandle) Backing() *os.File { return nil }

func (h *tiffHandle) Close() error { return h.npy.Close() }
