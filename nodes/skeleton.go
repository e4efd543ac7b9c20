package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
)

// skeleton is what a finished run's directories need before any data: its start, stop and
// descriptor documents as stored. It is kept in the cache under the run's version, so that a
// remount opens a run without reading its file (a million-event file costs an index pass).
// The documents are kept as bytes (base64 in the JSON), exactly as stored: a RawMessage would
// be re-indented by json.Marshal, and start.json would change its bytes on a remount.
type skeleton struct {
	Version int      `json:"version"`
	Start   []byte   `json:"start"`
	Stop    []byte   `json:"stop"`
	Descs   [][]byte `json:"descriptors"`
}

const skeletonVersion = 2

func skeletonKey(version string) string { return "run\x00" + version }

// saveSkeleton stores a finished run's documents, in the background. Documents whose stored form is not plain
// JSON (NaN, Infinity) are not stored: the run is then opened from the catalog each time.
func (st *state) saveSkeleton(version string, r *runState) {
	store := st.tables.Store
	if store == nil || version == "" || r.stop == nil {
		return
	}
	sk := skeleton{Version: skeletonVersion, Start: r.start.Raw, Stop: r.stop.Raw}
	docs := [][]byte{r.start.Raw, r.stop.Raw}
	for _, d := range r.descs {
		sk.Descs = append(sk.Descs, d.Raw)
		docs = append(docs, d.Raw)
	}
	for _, d := range docs {
		if !json.Valid(d) {
			return
		}
	}
	raw, err := json.Marshal(sk)
	if err != nil {
		return
	}
	// In the background: the first reply of a run does not wait for the index.
	store.PutLater(skeletonKey(version), raw)
}

// loadSkeleton returns the stored documents of the run at version, or nil.
func (st *state) loadSkeleton(version string) (*catalog.Start, *catalog.Stop, []*catalog.Descriptor, bool) {
	store := st.tables.Store
	if store == nil || version == "" {
		return nil, nil, nil, false
	}
	e, err := store.Lookup(skeletonKey(version))
	if err != nil {
		return nil, nil, nil, false
	}
	var sk skeleton
	if err := json.Unmarshal(e.Meta, &sk); err != nil || sk.Version != skeletonVersion {
		return nil, nil, nil, false
	}
	doc := func(raw []byte) (map[string]any, error) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
		return catalog.FromJSON(m).(map[string]any), nil
	}
	sd, err := doc(sk.Start)
	if err != nil {
		return nil, nil, nil, false
	}
	start, err := catalog.ParseStart(sd, []byte(sk.Start))
	if err != nil {
		return nil, nil, nil, false
	}
	pd, err := doc(sk.Stop)
	if err != nil {
		return nil, nil, nil, false
	}
	stop, err := catalog.ParseStop(pd, []byte(sk.Stop))
	if err != nil {
		return nil, nil, nil, false
	}
	var descs []*catalog.Descriptor
	for _, raw := range sk.Descs {
		dd, err := doc(raw)
		if err != nil {
			return nil, nil, nil, false
		}
		d, err := catalog.ParseDescriptor(dd, []byte(raw))
		if err != nil {
			return nil, nil, nil, false
		}
		descs = append(descs, d)
	}
	return start, stop, descs, true
}

// lazyRun is a run opened from its skeleton: documents from the cache, and the catalog's run
// opened only when something needs its events, resources or datums (a stream not in the
// cache, an external field). It refuses to serve a run whose version changed meanwhile.
type lazyRun struct {
	cat     catalog.Catalog
	uid     string
	version string
	start   *catalog.Start
	stop    *catalog.Stop
	descs   []*catalog.Descriptor

	mu  sync.Mutex
	run catalog.Run // guarded by mu
}

var _ catalog.Run = (*lazyRun)(nil)

func (r *lazyRun) Start() *catalog.Start                                      { return r.start }
func (r *lazyRun) Stop(context.Context) (*catalog.Stop, error)                { return r.stop, nil }
func (r *lazyRun) Descriptors(context.Context) ([]*catalog.Descriptor, error) { return r.descs, nil }

// Underlying opens the catalog's run once.
func (r *lazyRun) Underlying(ctx context.Context) (catalog.Run, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.run != nil {
		return r.run, nil
	}
	run, err := r.cat.Run(ctx, r.uid)
	if err != nil {
		return nil, err
	}
	if v, ok := run.(catalog.Versioner); ok {
		got, err := v.Version(ctx)
		if err != nil {
			return nil, err
		}
		if got != r.version {
			return nil, fmt.Errorf("run %s changed since it was cached; it is re-read on the next listing", r.uid)
		}
	}
	r.run = run
	return run, nil
}

func (r *lazyRun) EventPages(ctx context.Context, desc string, from, to int, fields []string, fn func(*catalog.EventPage) error) error {
	run, err := r.Underlying(ctx)
	if err != nil {
		return err
	}
	return run.EventPages(ctx, desc, from, to, fields, fn)
}

func (r *lazyRun) Resources(ctx context.Context) ([]*catalog.Resource, error) {
	run, err := r.Underlying(ctx)
	if err != nil {
		return nil, err
	}
	return run.Resources(ctx)
}

func (r *lazyRun) Datums(ctx context.Context, resource string, fn func(*catalog.DatumPage) error) error {
	run, err := r.Underlying(ctx)
	if err != nil {
		return err
	}
	return run.Datums(ctx, resource, fn)
}
