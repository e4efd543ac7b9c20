// Package encode writes arrays as NumPy .npy files and as CSV text, with random access: a read
// at offset X produces only the rows that cover [X, X+len). It knows nothing of Bluesky; its
// input is the small Array interface below. Standard library only.
//
// Where things are:
//   - dtype.go: Dtype parsing (ParseDtype) and the package's sentinel error;
//   - convert.go: element conversion between dtypes (Convert) and the Put* functions that
//     store one document value into a row;
//   - unicode.go: NumPy "<U{n}" strings (PutUnicode, UnicodeLen);
//   - npy.go: the .npy header (NPYHeader) and encoding (NPY), exact size without reading;
//   - csv.go, csvformat.go: the CSV encoding (CSV), its checkpoint index and value text;
//   - tiff.go: the layout of a multi-page TIFF over an array's bytes (TIFFLayout), its
//     header and IFDs computed on read.
package encode

import "context"

// Dtype is a NumPy dtype: its descr string ("<f8", "<i8", "|b1", "<u2", "<U12", ...) and the
// size in bytes of one element.
type Dtype struct {
	Descr string
	Size  int
}

// Array is a table of rows that all have one dtype and one shape, read in row ranges.
// Implementations are safe for concurrent use.
type Array interface {
	// Dtype is the element type. Multi-byte numbers are little-endian ('<'); strings are
	// NumPy unicode ("<U{n}", UTF-32LE code points, zero padded).
	Dtype() Dtype
	// RowShape is the shape of one row ([] for a scalar per row).
	RowShape() []int
	// Rows is the number of rows.
	Rows() int
	// ReadRows writes rows [from, to) as raw C-order bytes into dst, which holds exactly
	// (to-from) * RowBytes(a) bytes.
	ReadRows(ctx context.Context, from, to int, dst []byte) error
}

// RowBytes is the size in bytes of one row of a.
func RowBytes(a Array) int {
	n := a.Dtype().Size
	for _, d := range a.RowShape() {
		n *= d
	}
	return n
}
