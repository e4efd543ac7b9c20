package nodes

import (
	"context"
	"fmt"
	"sort"
	"sync"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
)

var errNoStop = fmt.Errorf("stop document: %w", catalog.ErrNotFound)

// streamDir is <uid>/<stream>/: descriptors.json, time and field files, timestamps/, config/.
type streamDir struct{ dirBase }

var (
	_ gofs.NodeLookuper  = (*streamDir)(nil)
	_ gofs.NodeReaddirer = (*streamDir)(nil)
	_ gofs.NodeGetattrer = (*streamDir)(nil)
)

func newStreamDir(st *state, uid, name string) *streamDir {
	d := &streamDir{dirBase{st: st, uid: uid, path: uid + "/" + name}}
	d.entries = func(ctx context.Context, r *runState) ([]entry, error) {
		s, err := r.stream(name)
		if err != nil {
			return nil, err
		}
		return s.entries(ctx, st, uid, d.path), nil
	}
	return d
}

// stream returns the run's stream called name.
func (r *runState) stream(name string) (*stream, error) {
	s, ok := r.streams[name]
	if !ok {
		return nil, fmt.Errorf("stream %s of run %s: %w", name, r.uid, catalog.ErrNotFound)
	}
	return s, nil
}

// in resolves a stream's file in the run's current state.
func in(name string, fn func(s *stream, ctx context.Context) (content, error)) resolver {
	return func(ctx context.Context, r *runState) (content, error) {
		s, err := r.stream(name)
		if err != nil {
			return nil, err
		}
		return fn(s, ctx)
	}
}

// entries lists the stream directory. Which fields get a .csv depends on their shapes, which
// only the scan knows; if the scan fails the listing falls back to the data keys and the
// files' reads fail with the scan's error.
func (s *stream) entries(ctx context.Context, st *state, uid, path string) []entry {
	name := s.name
	es := []entry{
		{name: "descriptors.json", file: in(name, func(s *stream, _ context.Context) (content, error) { return s.descriptorsJSON(), nil })},
		{name: "time.npy", file: in(name, (*stream).timeNPY)},
		{name: "time.csv", file: in(name, (*stream).timeCSV)},
	}
	sc, err := s.summary(ctx)
	if len(s.fields) > 0 {
		es = append(es, entry{name: "timestamps", dir: func() gofs.InodeEmbedder { return newTimestampsDir(st, uid, name) }})
	}
	if len(s.configObjects()) > 0 {
		es = append(es, entry{name: "config", dir: func() gofs.InodeEmbedder { return newConfigDir(st, uid, name) }})
	}
	for _, f := range s.fields {
		if f == "time" {
			continue // the event time wins the name
		}
		f := f
		es = append(es, entry{name: f + ".npy", file: in(name, func(s *stream, ctx context.Context) (content, error) { return s.fieldNPY(ctx, f) })})
		// External fields are images, almost always: offer a .csv only when the data key says
		// they have at most one dimension, rather than opening a file to list a directory.
		csvOK := len(s.keys[f].Shape) <= 1
		if err == nil && !sc.fields[f].external {
			csvOK = len(sc.fields[f].rowShape) <= 1
		}
		if csvOK {
			es = append(es, entry{name: f + ".csv", file: in(name, func(s *stream, ctx context.Context) (content, error) { return s.fieldCSV(ctx, f) })})
		}
	}
	return es
}

// descriptorsJSON is the stream's descriptors as a JSON array, as stored.
func (s *stream) descriptorsJSON() content {
	b := []byte("[")
	for i, d := range s.descs {
		if i > 0 {
			b = append(b, ",\n"...)
		}
		b = append(b, d.Raw...)
	}
	return bytesContent(append(b, "]\n"...))
}

// configObjects lists the objects configured in the stream's first descriptor.
func (s *stream) configObjects() []string {
	var objs []string
	for obj := range s.descs[0].Configuration {
		if validName(obj + ".json") {
			objs = append(objs, obj)
		}
	}
	sort.Strings(objs)
	return objs
}

// encoders caches a stream's file encoders, so that Size and later reads share one encoder
// (a CSV's size costs a formatting pass that also records its read checkpoints).
type encoders struct {
	mu sync.Mutex
	m  map[string]content // guarded by mu
}

func (s *stream) cached(key string, make func() (content, error)) (content, error) {
	s.enc.mu.Lock()
	defer s.enc.mu.Unlock()
	if c, ok := s.enc.m[key]; ok {
		return c, nil
	}
	c, err := make()
	if err != nil {
		return nil, err
	}
	if s.enc.m == nil {
		s.enc.m = map[string]content{}
	}
	s.enc.m[key] = c
	return c, nil
}

// npyContent adapts encode.NPY to content.
type npyContent struct{ *encode.NPY }

func (n npyContent) Size(context.Context) (int64, error) { return n.NPY.Size(), nil }

func (s *stream) timeNPY(ctx context.Context) (content, error) {
	sc, err := s.summary(ctx)
	if err != nil {
		return nil, err
	}
	return s.cached("time.npy", func() (content, error) { return npyContent{encode.NewNPY(floatArray(sc.time))}, nil })
}

func (s *stream) timeCSV(ctx context.Context) (content, error) {
	sc, err := s.summary(ctx)
	if err != nil {
		return nil, err
	}
	return s.cached("time.csv", func() (content, error) {
		return encode.NewCSV([]string{"seq_num", "time"}, []encode.Array{intArray(sc.seq), floatArray(sc.time)})
	})
}

func (s *stream) field(ctx context.Context, f string) (*scan, *fieldScan, error) {
	sc, err := s.summary(ctx)
	if err != nil {
		return nil, nil, err
	}
	fs, ok := sc.fields[f]
	if !ok {
		return nil, nil, fmt.Errorf("field %s: %w", f, catalog.ErrNotFound)
	}
	if fs.err != nil {
		return nil, nil, fs.err
	}
	if fs.external {
		if err := s.describeExternal(ctx, sc, fs); err != nil {
			return nil, nil, err
		}
	}
	return sc, fs, nil
}

func (s *stream) fieldNPY(ctx context.Context, f string) (content, error) {
	sc, fs, err := s.field(ctx, f)
	if err != nil {
		return nil, err
	}
	return s.cached(f+".npy", func() (content, error) { return npyContent{encode.NewNPY(fieldArray{s, sc, fs})}, nil })
}

func (s *stream) fieldCSV(ctx context.Context, f string) (content, error) {
	sc, fs, err := s.field(ctx, f)
	if err != nil {
		return nil, err
	}
	if len(fs.rowShape) > 1 {
		return nil, fmt.Errorf("%s.csv: a field of %d dimensions per event has no csv: %w", f, len(fs.rowShape), catalog.ErrNotFound)
	}
	return s.cached(f+".csv", func() (content, error) {
		return encode.NewCSV([]string{"seq_num", "time", f}, []encode.Array{intArray(sc.seq), floatArray(sc.time), fieldArray{s, sc, fs}})
	})
}

// timestampsNPY is a field's timestamps; they stay readable when its values cannot be encoded.
func (s *stream) timestampsNPY(ctx context.Context, f string) (content, error) {
	sc, err := s.summary(ctx)
	if err != nil {
		return nil, err
	}
	fs, ok := sc.fields[f]
	if !ok {
		return nil, fmt.Errorf("field %s: %w", f, catalog.ErrNotFound)
	}
	return s.cached("timestamps/"+f+".npy", func() (content, error) { return npyContent{encode.NewNPY(tsArray{sc, fs.ts})}, nil })
}

// newTimestampsDir is <stream>/timestamps/: one float64 .npy per field.
func newTimestampsDir(st *state, uid, name string) *subDir {
	d := &subDir{dirBase{st: st, uid: uid, path: uid + "/" + name + "/timestamps"}}
	d.entries = func(ctx context.Context, r *runState) ([]entry, error) {
		s, err := r.stream(name)
		if err != nil {
			return nil, err
		}
		var es []entry
		for _, f := range s.fields {
			f := f
			es = append(es, entry{name: f + ".npy", file: in(name, func(s *stream, ctx context.Context) (content, error) { return s.timestampsNPY(ctx, f) })})
		}
		return es, nil
	}
	return d
}

// newConfigDir is <stream>/config/: each object's configuration as JSON.
func newConfigDir(st *state, uid, name string) *subDir {
	d := &subDir{dirBase{st: st, uid: uid, path: uid + "/" + name + "/config"}}
	d.entries = func(ctx context.Context, r *runState) ([]entry, error) {
		s, err := r.stream(name)
		if err != nil {
			return nil, err
		}
		var es []entry
		for _, obj := range s.configObjects() {
			obj := obj
			es = append(es, entry{name: obj + ".json", file: in(name, func(s *stream, _ context.Context) (content, error) {
				return bytesContent(append(catalog.AppendJSON(nil, s.descs[0].Configuration[obj]), '\n')), nil
			})})
		}
		return es, nil
	}
	return d
}

// subDir is a directory of per-field or per-object files inside a stream.
type subDir struct{ dirBase }

var (
	_ gofs.NodeLookuper  = (*subDir)(nil)
	_ gofs.NodeReaddirer = (*subDir)(nil)
)
