package tiff

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
)

// Spec is the spec of area-detector-handlers' AreaDetectorTiffHandler.
const Spec = "AD_TIFF"

// Open opens an AD_TIFF resource: one TIFF per frame, named template % (path + "/",
// filename, j) with the resource kwargs template and filename (Python %-formatting); datum
// {point_number} is the frames j in [pn*fpp, (pn+1)*fpp) stacked, shape (fpp, y, x) (or
// (fpp, y, x, samples) for colour frames), fpp being the resource kwarg frame_per_point
// (default 1). All frames of a datum must have the same shape and dtype.
//
// frame_per_point is bounded by handlers.MaxFilesPerDatum and pn*fpp is checked for
// overflow; every frame file is opened through the handlers.Guard of the open's context, so
// a filename "../../secret/img" reaches only files inside the allowed roots.
func Open(ctx context.Context, path string, kw map[string]any) (handlers.Handler, error) {
	template, err := handlers.StringKwarg(kw, "template", "")
	if err != nil {
		return nil, err
	}
	filename, err := handlers.StringKwarg(kw, "filename", "")
	if err != nil {
		return nil, err
	}
	if _, ok := kw["template"]; !ok {
		return nil, errors.New("resource kwargs: missing template")
	}
	if _, ok := kw["filename"]; !ok {
		return nil, errors.New("resource kwargs: missing filename")
	}
	fpp, err := handlers.IntKwarg(kw, "frame_per_point", 1)
	if err != nil {
		return nil, err
	}
	if fpp < 1 || fpp > handlers.MaxFilesPerDatum {
		return nil, fmt.Errorf("frame_per_point %d: want 1 to %d: %w", fpp, handlers.MaxFilesPerDatum, handlers.ErrTooLarge)
	}
	dir := path
	if !strings.HasSuffix(dir, "/") {
		dir += "/" // os.path.join(fpath, "")
	}
	h := &handler{dir: dir, template: template, filename: filename, fpp: fpp, g: handlers.GuardOf(ctx)}
	// Check the template once, so a bad one fails at open rather than at every read.
	if _, err := PyFormat(template, dir, filename, int64(0)); err != nil {
		return nil, err
	}
	return h, nil
}

type handler struct {
	dir, template, filename string
	fpp                     int
	g                       *handlers.Guard
}

// names returns the files of a point.
func (h *handler) names(kw map[string]any) ([]string, error) {
	if _, ok := kw["point_number"]; !ok {
		return nil, errors.New("datum: missing kwarg point_number")
	}
	pn, err := handlers.IntKwarg(kw, "point_number", 0)
	if err != nil {
		return nil, err
	}
	if pn < 0 {
		return nil, fmt.Errorf("point_number %d: want at least 0", pn)
	}
	start, err := handlers.MulIndex(pn, h.fpp)
	if err == nil && start > math.MaxInt64-h.fpp {
		err = handlers.ErrOverflow
	}
	if err != nil {
		return nil, fmt.Errorf("point_number %d with frame_per_point %d: %w", pn, h.fpp, err)
	}
	out := make([]string, 0, h.fpp)
	for j := start; j < start+h.fpp; j++ {
		name, err := PyFormat(h.template, h.dir, h.filename, int64(j))
		if err != nil {
			return nil, err
		}
		out = append(out, name)
	}
	return out, nil
}

func (h *handler) Describe(_ context.Context, kw map[string]any) (string, []int, error) {
	names, err := h.names(kw)
	if err != nil {
		return "", nil, err
	}
	in, err := h.readInfoFile(names[0])
	if err != nil {
		return "", nil, err
	}
	return in.Dtype, append([]int{len(names)}, in.Shape()...), nil
}

func (h *handler) Read(ctx context.Context, kw map[string]any) (*catalog.NDArray, error) {
	names, err := h.names(kw)
	if err != nil {
		return nil, err
	}
	var first *Info
	var buf []byte
	for i, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := h.g.Open(name)
		if err != nil {
			return nil, err
		}
		in, err := readInfo(f, name)
		if err == nil && first != nil && (in.Dtype != first.Dtype || !reflect.DeepEqual(in.Shape(), first.Shape())) {
			err = fmt.Errorf("read tiff %s: %s %v, but %s is %s %v: %w", name, in.Dtype, in.Shape(),
				names[0], first.Dtype, first.Shape(), ErrFormat)
		}
		if err == nil && first == nil {
			first = in
			var n int
			if n, err = handlers.ArrayBytes(append([]int{len(names)}, in.Shape()...), in.ElemSize); err == nil {
				buf = make([]byte, n)
			}
		}
		if err == nil {
			if err = ReadImage(f, in, buf[i*in.Size():(i+1)*in.Size()]); err != nil {
				err = fmt.Errorf("read tiff %s: %w", name, err)
			}
		}
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return &catalog.NDArray{Dtype: first.Dtype, Shape: append([]int{len(names)}, first.Shape()...), Data: buf}, nil
}

// ReadInto reads the frames of a datum straight into dst when they are of dtype descr and
// stacked have the given shape.
func (h *handler) ReadInto(ctx context.Context, kw map[string]any, dst []byte, descr string, shape []int) error {
	names, err := h.names(kw)
	if err != nil {
		return err
	}
	for i, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		f, err := h.g.Open(name)
		if err != nil {
			return err
		}
		in, err := readInfo(f, name)
		if err == nil {
			have := append([]int{len(names)}, in.Shape()...)
			switch {
			case !slices.Equal(have, shape):
				err = fmt.Errorf("read tiff %s: frames of shape %v, want %v: %w", name, have, shape, handlers.ErrShape)
			case in.Dtype != descr && i == 0:
				err = fmt.Errorf("read tiff %s: %s: %w", name, in.Dtype, handlers.ErrNotDirect)
			case in.Dtype != descr:
				err = fmt.Errorf("read tiff %s: %s, but %s is %s: %w", name, in.Dtype, names[0], descr, ErrFormat)
			case len(dst) != len(names)*in.Size():
				err = fmt.Errorf("read tiff %s: %d bytes for %d frames of %d: %w", name, len(dst), len(names), in.Size(), handlers.ErrShape)
			default:
				if err = ReadImage(f, in, dst[i*in.Size():(i+1)*in.Size()]); err != nil {
					err = fmt.Errorf("read tiff %s: %w", name, err)
				}
			}
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *handler) Files(kws []map[string]any) ([]string, error) {
	var out []string
	for _, kw := range kws {
		names, err := h.names(kw)
		if err != nil {
			return nil, err
		}
		out = append(out, names...)
	}
	return out, nil
}

func (h *handler) Close() error { return nil }

func (h *handler) readInfoFile(name string) (*Info, error) {
	f, err := h.g.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readInfo(f, name)
}

func readInfo(f *os.File, name string) (*Info, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	in, err := ReadInfo(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("read tiff %s: %w", name, err)
	}
	return in, nil
}
