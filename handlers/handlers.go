package handlers

import (
	"context"
	"errors"
	"fmt"
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
	n, ok := catalog.AsInt(v)
	if !ok {
		return 0, fmt.Errorf("kwarg %s: want integer, have %T %v", key, v, v)
	}
	return int(n), nil
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
