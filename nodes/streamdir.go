package nodes

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/table"
)

var errNoStop = fmt.Errorf("stop document: %w", catalog.ErrNotFound)

// streamDir is <uid>/<stream>/: descriptors.json, time and field files, timestamps/, config/.
type streamDir struct {
	dirBase
	name string // the stream's
}

var (
	_ gofs.NodeLookuper  = (*streamDir)(nil)
	_ gofs.NodeReaddirer = (*streamDir)(nil)
	_ gofs.NodeGetattrer = (*streamDir)(nil)
)

func newStreamDir(st *state, uid, name string) *streamDir {
	d := &streamDir{dirBase: dirBase{st: st, uid: uid, path: uid + "/" + name}, name: name}
	d.entries = func(ctx context.Context, r *runState) ([]entry, error) {
		s, err := r.stream(name)
		if err != nil {
			return nil, err
		}
		return streamEntries(ctx, st, s, uid), nil
	}
	return d
}

// Lookup finds the .npy of an external field without listing the directory, which waits for
// the stream's scan: the file may be sized before it (table.Stream.EarlyNPY).
func (d *streamDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	if r, e, ok := d.npyEntry(ctx, name); ok {
		defer d.st.observe("lookup", time.Now(), &errno)
		return d.lookupEntry(ctx, r, e, out)
	}
	return d.dirBase.Lookup(ctx, name, out)
}

// npyEntry returns the entry of name when it is the .npy of an external field of the stream.
func (d *streamDir) npyEntry(ctx context.Context, name string) (*runState, entry, bool) {
	if !strings.HasSuffix(name, ".npy") {
		return nil, entry{}, false
	}
	r, err := d.st.run(ctx, d.uid)
	if err != nil {
		return nil, entry{}, false
	}
	s, err := r.stream(d.name)
	if err != nil {
		return nil, entry{}, false
	}
	names := fileNames(s.Fields, fieldReserved)
	for _, f := range s.Fields {
		if s.Keys[f].External && names[f]+".npy" == name {
			return r, entry{name: name, file: fieldNPY(d.name, f)}, true
		}
	}
	return nil, entry{}, false
}

// fieldNPY resolves the .npy of field f of stream name: sized before the stream's scan when
// it can be (table.Stream.EarlyNPY), else the scanned table's.
func fieldNPY(name, f string) resolver {
	scanned := in(name, func(ctx context.Context, _ *table.Stream, t *table.Table) (content, error) {
		c, err := column(t, f)
		if err != nil {
			return nil, err
		}
		return c.NPY(ctx)
	})
	return func(ctx context.Context, r *runState) (content, error) {
		s, err := r.stream(name)
		if err != nil {
			return nil, err
		}
		if c := s.EarlyNPY(ctx, f); c != nil {
			return c, nil
		}
		return scanned(ctx, r)
	}
}

// stream returns the run's stream called name.
func (r *runState) stream(name string) (*table.Stream, error) {
	s, ok := r.streams[name]
	if !ok {
		return nil, fmt.Errorf("stream %s of run %s: %w", name, r.uid, catalog.ErrNotFound)
	}
	return s, nil
}

// in resolves a file of a stream's table in the run's current state.
func in(name string, fn func(ctx context.Context, s *table.Stream, t *table.Table) (content, error)) resolver {
	return func(ctx context.Context, r *runState) (content, error) {
		s, err := r.stream(name)
		if err != nil {
			return nil, err
		}
		t, err := s.Table(ctx)
		if err != nil {
			return nil, err
		}
		return fn(ctx, s, t)
	}
}

// column returns a field's column of t.
func column(t *table.Table, f string) (*table.Column, error) {
	c, ok := t.Fields[f]
	if !ok {
		return nil, fmt.Errorf("field %s: %w", f, catalog.ErrNotFound)
	}
	return c, nil
}

// streamEntries lists the stream directory. Which fields get a .csv depends on their shapes,
// which only the scan knows; if the scan fails the listing falls back to the data keys and
// the files fail with the scan's error.
func streamEntries(ctx context.Context, st *state, s *table.Stream, uid string) []entry {
	name := s.Name
	es := []entry{
		{name: "descriptors.json", file: func(_ context.Context, r *runState) (content, error) {
			s, err := r.stream(name)
			if err != nil {
				return nil, err
			}
			return descriptorsJSON(s), nil
		}},
		{name: "time.npy", file: in(name, func(ctx context.Context, _ *table.Stream, t *table.Table) (content, error) { return t.Time.NPY(ctx) })},
		{name: "time.csv", file: in(name, func(ctx context.Context, _ *table.Stream, t *table.Table) (content, error) {
			return t.CSV(ctx, "time", []string{"seq_num", "time"}, []*table.Column{t.SeqNum, t.Time})
		})},
	}
	t, err := s.Table(ctx)
	if len(s.Fields) > 0 {
		es = append(es, entry{name: "timestamps", dir: func() gofs.InodeEmbedder { return newTimestampsDir(st, uid, name) }})
	}
	if len(configObjects(s)) > 0 {
		es = append(es, entry{name: "config", dir: func() gofs.InodeEmbedder { return newConfigDir(st, uid, name) }})
	}
	names := fileNames(s.Fields, fieldReserved)
	for _, f := range s.Fields {
		f := f
		es = append(es, entry{name: names[f] + ".npy", file: fieldNPY(name, f)})
		// External fields are images, almost always: offer a .csv only when the data key says
		// they have at most one dimension, rather than opening a file to list a directory.
		csvOK := len(s.Keys[f].Shape) <= 1
		if err == nil {
			if c := t.Fields[f]; c != nil && !c.External() && c.Err == nil {
				csvOK = len(c.RowShape) <= 1
			}
		}
		if csvOK {
			es = append(es, entry{name: names[f] + ".csv", file: in(name, func(ctx context.Context, _ *table.Stream, t *table.Table) (content, error) {
				c, err := column(t, f)
				if err != nil {
					return nil, err
				}
				_, shape, err := c.Describe(ctx)
				if err != nil {
					return nil, err
				}
				if len(shape) > 1 {
					return nil, fmt.Errorf("%s.csv: a field of %d dimensions per event has no csv: %w", f, len(shape), catalog.ErrNotFound)
				}
				return t.CSV(ctx, "field\x00"+f, []string{"seq_num", "time", f}, []*table.Column{t.SeqNum, t.Time, c})
			})})
		}
		if tiffListed(s, t, err, f) {
			es = append(es, tiffEntry(name, f, names[f]))
		}
	}
	return es
}

// descriptorsJSON is the stream's descriptors as a JSON array, as stored.
func descriptorsJSON(s *table.Stream) content {
	b := []byte("[")
	for i, d := range s.Descs {
		if i > 0 {
			b = append(b, ",\n"...)
		}
		b = append(b, d.Raw...)
	}
	return table.Bytes(append(b, "]\n"...))
}

// configObjects lists the objects configured in the stream's first descriptor.
func configObjects(s *table.Stream) []string {
	var objs []string
	for obj := range s.Descs[0].Configuration {
		objs = append(objs, obj)
	}
	sort.Strings(objs)
	return objs
}

// newTimestampsDir is <stream>/timestamps/: one float64 .npy per field; they stay readable
// when a field's values cannot be encoded.
func newTimestampsDir(st *state, uid, name string) *subDir {
	d := &subDir{dirBase{st: st, uid: uid, path: uid + "/" + name + "/timestamps"}}
	d.entries = func(ctx context.Context, r *runState) ([]entry, error) {
		s, err := r.stream(name)
		if err != nil {
			return nil, err
		}
		var es []entry
		names := fileNames(s.Fields, func(string) bool { return false })
		for _, f := range s.Fields {
			f := f
			es = append(es, entry{name: names[f] + ".npy", file: in(name, func(ctx context.Context, _ *table.Stream, t *table.Table) (content, error) {
				c, ok := t.Timestamps[f]
				if !ok {
					return nil, fmt.Errorf("timestamps of %s: %w", f, catalog.ErrNotFound)
				}
				return c.NPY(ctx)
			})})
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
		objs := configObjects(s)
		names := fileNames(objs, func(string) bool { return false })
		for _, obj := range objs {
			obj := obj
			es = append(es, entry{name: names[obj] + ".json", file: func(_ context.Context, r *runState) (content, error) {
				s, err := r.stream(name)
				if err != nil {
					return nil, err
				}
				return table.Bytes(append(catalog.AppendJSON(nil, s.Descs[0].Configuration[obj]), '\n')), nil
			}})
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
