package handlers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
)

// ErrUnknownSpec means no handler is registered for a resource's spec.
var ErrUnknownSpec = errors.New("unknown handler spec")

// Handler reads the data of one resource: one file or a family of files named by its path.
// A Handler is made once per resource and reused for all its datums; implementations are safe
// for concurrent use (libhdf5 serialises calls itself).
type Handler interface {
	// Describe returns the dtype (a numpy descr, e.g. "<u2") and shape of the array that Read
	// returns for the datum, reading only metadata (dataset headers), never the data.
	Describe(ctx context.Context, datumKwargs map[string]any) (dtype string, shape []int, err error)
	// Read returns the datum's array, as databroker's handler call handler(**datum_kwargs) does.
	Read(ctx context.Context, datumKwargs map[string]any) (*catalog.NDArray, error)
	// Files lists the files the given datums read (databroker's get_file_list).
	Files(datumKwargs []map[string]any) ([]string, error)
	// Close releases open files.
	Close() error
}

// Opener makes the handler of one resource from its path (root_map applied, joined with
// resource_path) and its resource_kwargs.
type Opener func(ctx context.Context, path string, resourceKwargs map[string]any) (Handler, error)

// Registry maps resource specs to handler openers. Build one with NewRegistry and Register;
// there is no global registry.
type Registry struct {
	mu      sync.RWMutex
	openers map[string]Opener // guarded by mu
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{openers: map[string]Opener{}} }

// Register adds the opener for spec. Registering a spec twice is an error.
func (r *Registry) Register(spec string, o Opener) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.openers[spec]; dup {
		return fmt.Errorf("register handler %s: already registered", spec)
	}
	r.openers[spec] = o
	return nil
}

// Replace sets the opener for spec, replacing any registered one (--handler SPEC=COMMAND
// overrides a built-in).
func (r *Registry) Replace(spec string, o Opener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.openers[spec] = o
}

// Open makes the handler for a resource of the given spec. An unknown spec wraps
// ErrUnknownSpec.
func (r *Registry) Open(ctx context.Context, spec, path string, resourceKwargs map[string]any) (Handler, error) {
	r.mu.RLock()
	o, ok := r.openers[spec]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("handler %q: %w", spec, ErrUnknownSpec)
	}
	return o(ctx, path, resourceKwargs)
}

// Specs lists the registered specs, sorted.
func (r *Registry) Specs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.openers))
	for s := range r.openers {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Kwarg helpers for handler implementations: documents decode integers as int64, but a
// writer may have stored 2.0 for 2.

// IntKwarg returns kwargs[key] as an int, or def when absent.
func IntKwarg(kwargs map[string]any, key string, def int) (int, error) {
	v, ok := kwargs[key]
	if !ok || v == nil {
		return def, nil
	}
	if x, isFloat := v.(float64); isFloat && !(x >= -(1<<63) && x < 1<<63) {
		return 0, fmt.Errorf("kwarg %s: %v is out of the integer range", key, x)
	}
	n, ok := catalog.AsInt(v)
	if !ok {
		return 0, fmt.Errorf("kwarg %s: want integer, have %T %v", key, v, v)
	}
	return int(n), nil
}

// Limits on sizes that documents and file headers give. Every handler checks them before
// allocating, so a hostile resource cannot exhaust memory with a single number.
const (
	// MaxDatumBytes bounds the array of one datum (2 GiB): far above a detector frame stack,
	// far below what would kill the server.
	MaxDatumBytes = 1 << 31
	// MaxFilesPerDatum bounds the files one datum may read (AD_TIFF frame_per_point).
	MaxFilesPerDatum = 1 << 16
)

// ErrTooLarge means a datum's size, taken from a document or a file header, is over a limit.
var ErrTooLarge = errors.New("too large")

// ErrOverflow means index arithmetic on values from a document overflowed.
var ErrOverflow = errors.New("integer overflow")

// MulIndex returns a*b for non-negative a and b, or ErrOverflow: point_number times
// frame_per_point must not wrap around to another point's frames.
func MulIndex(a, b int) (int, error) {
	if a < 0 || b < 0 {
		return 0, fmt.Errorf("%d * %d: negative: %w", a, b, ErrOverflow)
	}
	if a != 0 && b > math.MaxInt/a {
		return 0, fmt.Errorf("%d * %d: %w", a, b, ErrOverflow)
	}
	return a * b, nil
}

// ArrayBytes returns the size of an array of the given shape and element size, or an error
// wrapping ErrTooLarge when it is over MaxDatumBytes (overflow included) or ErrOverflow for
// a negative dimension.
func ArrayBytes(shape []int, elem int) (int, error) {
	n := elem
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v: negative dimension: %w", shape, ErrOverflow)
		}
		if d != 0 && n > MaxDatumBytes/d {
			for _, d2 := range shape {
				if d2 == 0 {
					return 0, nil
				}
			}
			return 0, fmt.Errorf("shape %v of %d-byte elements: over %d bytes: %w", shape, elem, MaxDatumBytes, ErrTooLarge)
		}
		n *= d
	}
	if n > MaxDatumBytes {
		return 0, fmt.Errorf("shape %v of %d-byte elements: over %d bytes: %w", shape, elem, MaxDatumBytes, ErrTooLarge)
	}
	return n, nil
}

// StringKwarg returns kwargs[key] as a string, or def when absent.
func StringKwarg(kwargs map[string]any, key, def string) (string, error) {
	v, ok := kwargs[key]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("kwarg %s: want string, have %T", key, v)
	}
	return s, nil
}

// Alias registers spec with the opener of the registered spec target: a catalog's handler
// registry may name a built-in reader under another spec.
func (r *Registry) Alias(spec, target string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.openers[target]
	if !ok {
		return fmt.Errorf("alias %s to %s: %w", spec, target, ErrUnknownSpec)
	}
	r.openers[spec] = o
	return nil
}
