package npy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
)

// Specs of the handlers in this package.
const (
	// SpecSeq is ophyd.sim's NumpySeqHandler: datum {index} reads f"{path}_{index}.npy".
	SpecSeq = "NPY_SEQ"
	// SpecFile is databroker's NpyHandler: one .npy file per resource; the datum (no kwargs)
	// is the whole array.
	SpecFile = "npy"
	// SpecFramewise is databroker's NpyFrameWise: one .npy file per resource; datum
	// {frame_no} is data[frame_no].
	SpecFramewise = "npy_FRAMEWISE"
)

// OpenSeq opens an NPY_SEQ resource: path is the stem of the files; the resource kwarg root,
// when given, is joined in front of it as ophyd's NumpySeqHandler(filename, root) does.
//
// Every file is opened through the handlers.Guard of the context the handler was opened
// with: a datum index "dir/../../secret/x" reaches only files inside the allowed roots.
func OpenSeq(ctx context.Context, path string, kwargs map[string]any) (handlers.Handler, error) {
	root, err := handlers.StringKwarg(kwargs, "root", "")
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w", SpecSeq, path, err)
	}
	return &seq{stem: pyJoin(root, path), g: handlers.GuardOf(ctx)}, nil
}

type seq struct {
	stem string
	g    *handlers.Guard
}

func (s *seq) file(kw map[string]any) (string, error) {
	v, ok := kw["index"]
	if !ok {
		return "", fmt.Errorf("%s datum: missing kwarg index", SpecSeq)
	}
	idx, err := PyStr(v)
	if err != nil {
		return "", fmt.Errorf("%s datum: kwarg index: %w", SpecSeq, err)
	}
	return s.stem + "_" + idx + ".npy", nil
}

func (s *seq) Describe(_ context.Context, kw map[string]any) (string, []int, error) {
	name, err := s.file(kw)
	if err != nil {
		return "", nil, err
	}
	h, err := readHeaderFile(s.g, name)
	if err != nil {
		return "", nil, err
	}
	return h.Dtype, h.Shape, nil
}

func (s *seq) Read(ctx context.Context, kw map[string]any) (*catalog.NDArray, error) {
	name, err := s.file(kw)
	if err != nil {
		return nil, err
	}
	return readFile(ctx, s.g, name)
}

func (s *seq) ReadInto(ctx context.Context, kw map[string]any, dst []byte, descr string, shape []int) error {
	name, err := s.file(kw)
	if err != nil {
		return err
	}
	return readFileInto(ctx, s.g, name, nil, dst, descr, shape)
}

func (s *seq) Files(kws []map[string]any) ([]string, error) {
	out := make([]string, 0, len(kws))
	for _, kw := range kws {
		name, err := s.file(kw)
		if err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}

func (s *seq) Close() error { return nil }

// OpenFile opens an npy resource: the .npy file at path, which must exist (databroker's
// NpyHandler checks at construction). Its datums take no kwargs and return the whole array.
func OpenFile(ctx context.Context, path string, kwargs map[string]any) (handlers.Handler, error) {
	g := handlers.GuardOf(ctx)
	if _, err := g.Stat(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", SpecFile, err)
	}
	return &whole{path: path, g: g}, nil
}

type whole struct {
	path string
	g    *handlers.Guard
}

func (w *whole) Describe(_ context.Context, _ map[string]any) (string, []int, error) {
	h, err := readHeaderFile(w.g, w.path)
	if err != nil {
		return "", nil, err
	}
	return h.Dtype, h.Shape, nil
}

func (w *whole) Read(ctx context.Context, _ map[string]any) (*catalog.NDArray, error) {
	return readFile(ctx, w.g, w.path)
}

func (w *whole) ReadInto(ctx context.Context, _ map[string]any, dst []byte, descr string, shape []int) error {
	return readFileInto(ctx, w.g, w.path, nil, dst, descr, shape)
}

func (w *whole) Files([]map[string]any) ([]string, error) { return []string{w.path}, nil }
func (w *whole) Close() error                             { return nil }

// OpenFramewise opens an npy_FRAMEWISE resource: the .npy file at path; datum {frame_no}
// is data[frame_no] (negative counts from the end, as numpy indexing does). Only that
// frame is read from a C-order file.
func OpenFramewise(ctx context.Context, path string, kwargs map[string]any) (handlers.Handler, error) {
	g := handlers.GuardOf(ctx)
	if _, err := g.Stat(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", SpecFramewise, err)
	}
	return &framewise{path: path, g: g}, nil
}

type framewise struct {
	path string
	g    *handlers.Guard
}

func frameNo(kw map[string]any) (int, error) {
	if _, ok := kw["frame_no"]; !ok {
		return 0, fmt.Errorf("%s datum: missing kwarg frame_no", SpecFramewise)
	}
	return handlers.IntKwarg(kw, "frame_no", 0)
}

func (f *framewise) Describe(_ context.Context, kw map[string]any) (string, []int, error) {
	i, err := frameNo(kw)
	if err != nil {
		return "", nil, err
	}
	h, err := readHeaderFile(f.g, f.path)
	if err != nil {
		return "", nil, err
	}
	if len(h.Shape) == 0 || i >= h.Shape[0] || i < -h.Shape[0] {
		return "", nil, fmt.Errorf("describe %s: frame_no %d is out of range for shape %v: %w", f.path, i, h.Shape, ErrIndex)
	}
	return h.Dtype, append([]int{}, h.Shape[1:]...), nil
}

func (f *framewise) Read(ctx context.Context, kw map[string]any) (*catalog.NDArray, error) {
	i, err := frameNo(kw)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fh, err := f.g.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	h, err := ReadHeader(bufio.NewReader(fh))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	if len(h.Shape) > 0 && h.Shape[0] > 0 {
		rows := h.Shape[1:]
		if h.Fortran {
			rows = h.Shape // a Fortran-order frame is gathered from the whole array
		}
		if _, err := handlers.ArrayBytes(rows, h.ElemSize); err != nil {
			return nil, fmt.Errorf("read %s frame_no %d: %w", f.path, i, err)
		}
	}
	a, err := h.ReadIndex(fh, i)
	if err != nil {
		return nil, fmt.Errorf("read %s frame_no %d: %w", f.path, i, err)
	}
	return a, nil
}

func (f *framewise) ReadInto(ctx context.Context, kw map[string]any, dst []byte, descr string, shape []int) error {
	i, err := frameNo(kw)
	if err != nil {
		return err
	}
	return readFileInto(ctx, f.g, f.path, &i, dst, descr, shape)
}

func (f *framewise) Files([]map[string]any) ([]string, error) { return []string{f.path}, nil }
func (f *framewise) Close() error                             { return nil }

func readHeaderFile(g *handlers.Guard, name string) (*Header, error) {
	fh, err := g.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	h, err := ReadHeader(bufio.NewReaderSize(fh, 4096))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return h, nil
}

// ReadFile reads the whole .npy file name, a regular file (see handlers.Guard.Open).
func ReadFile(ctx context.Context, name string) (*catalog.NDArray, error) {
	return readFile(ctx, handlers.GuardOf(ctx), name)
}

// openData opens name, reads its header and checks that the file holds the data it claims
// and that the data is within handlers.MaxDatumBytes.
func openData(g *handlers.Guard, name string) (*os.File, *Header, *bufio.Reader, error) {
	fh, err := g.Open(name)
	if err != nil {
		return nil, nil, nil, err
	}
	br := bufio.NewReaderSize(fh, 4096)
	h, err := ReadHeader(br)
	if err == nil {
		_, err = handlers.ArrayBytes(h.Shape, h.ElemSize)
	}
	if err != nil {
		fh.Close()
		return nil, nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if st, err := fh.Stat(); err == nil && st.Size()-h.Offset < h.DataSize() {
		fh.Close()
		return nil, nil, nil, fmt.Errorf("%s: truncated: shape %v %s needs %d bytes of data, the file has %d: %w",
			name, h.Shape, h.Descr, h.DataSize(), st.Size()-h.Offset, ErrFormat)
	}
	return fh, h, br, nil
}

func readFile(ctx context.Context, g *handlers.Guard, name string) (*catalog.NDArray, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fh, h, br, err := openData(g, name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	a, err := h.ReadData(br)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return a, nil
}

// readFileInto reads the whole array (row nil) or the row *row of its first axis (numpy
// indexing: negative counts from the end) from name straight into dst, when the file's dtype
// is descr and it is in C order; otherwise it returns handlers.ErrNotDirect and leaves dst
// alone. A shape other than shape is handlers.ErrShape.
func readFileInto(ctx context.Context, g *handlers.Guard, name string, row *int, dst []byte, descr string, shape []int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fh, err := g.Open(name)
	if err != nil {
		return err
	}
	defer fh.Close()
	h, err := ReadHeader(bufio.NewReaderSize(fh, 4096))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	have, off := h.Shape, h.Offset
	if row != nil {
		if len(h.Shape) == 0 {
			return fmt.Errorf("%s: index %d of a 0-d array: %w", name, *row, ErrFormat)
		}
		n, j := h.Shape[0], *row
		if j < 0 {
			j += n
		}
		if j < 0 || j >= n {
			return fmt.Errorf("%s: frame_no %d is out of range for shape %v: %w", name, *row, h.Shape, ErrIndex)
		}
		have = h.Shape[1:]
		rowBytes, err := handlers.ArrayBytes(have, h.ElemSize)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		off += int64(j) * int64(rowBytes)
	}
	if !slices.Equal(have, shape) {
		return fmt.Errorf("%s: shape %v, want %v: %w", name, have, shape, handlers.ErrShape)
	}
	if h.Dtype != descr || (h.Fortran && len(h.Shape) > 1) {
		return fmt.Errorf("%s is %s: %w", name, h.Descr, handlers.ErrNotDirect)
	}
	if k, err := fh.ReadAt(dst, off); k < len(dst) {
		if err == nil || errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: truncated: want %d bytes at %d, have %d: %w", name, len(dst), off, k, ErrFormat)
		}
		return fmt.Errorf("read %s: %w", name, err)
	}
	if h.swapUnit > 0 {
		Swap(dst, h.swapUnit)
	}
	return nil
}

// PyStr formats a datum kwarg as Python's str() does, for file names built with
// str.format: integers in decimal, floats in repr form ("2.0"), strings as they are.
func PyStr(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case int:
		return strconv.Itoa(x), nil
	case float64:
		return pyFloat(x), nil
	case bool:
		if x {
			return "True", nil
		}
		return "False", nil
	}
	return "", fmt.Errorf("cannot format %T %v as a file name part", v, v)
}

// pyFloat is Python's repr of a float (shortest round-trip digits).
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	abs := f
	if abs < 0 {
		abs = -abs
	}
	if abs != 0 && (abs >= 1e16 || abs < 1e-4) {
		return strconv.FormatFloat(f, 'e', -1, 64) // "1e+16", "1e-05", as Python writes them
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// pyJoin is os.path.join(a, b) for two parts: an absolute b wins.
func pyJoin(a, b string) string {
	switch {
	case a == "" || filepath.IsAbs(b):
		return b
	case strings.HasSuffix(a, "/"):
		return a + b
	}
	return a + "/" + b
}
