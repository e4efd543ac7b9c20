// Package transform applies databroker's transforms to the documents of a catalog: functions
// that patch start, stop, descriptor and resource documents as they are read, for metadata
// that was recorded wrong. Wrap returns a catalog.Catalog whose runs show their documents
// transformed, by a Python helper running the user's functions (Python), by declarative
// patches (Rules), or both: first the function, then the patches.
//
// What is transformed, as in databroker (whose MongoAdapter and BlueskyRun apply
// transforms to a run's metadata and documents, while searches run on the database):
//
//   - a run's Start, Stop, Descriptors and Resources: everything a run directory shows, the
//     data keys that decide a field's dtype and shape, and the resources handlers read;
//   - not the listing (Catalog.Runs): --query, scan ids, `latest` and the run directory
//     names work on the documents as stored, as databroker's catalog.search() and
//     catalog[scan_id] query the stored documents;
//   - not events and datums.
//
// A transform runs once per document: results are kept (by kind and the stored document's
// bytes), and a run's persistent cache key (catalog.Versioner) carries a digest of the
// transforms, so a change of transforms never serves documents transformed the old way.
//
// A transform that fails (raises, times out, returns something that is not a document, or
// a document that no longer parses), or that changes the document's uid, leaves that
// document as stored, with one log line naming kind, uid and error; such a run is not kept
// in the persistent cache, so that the next mount tries again.
package transform

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
)

// Document kinds a transform applies to.
const (
	KindStart      = "start"
	KindStop       = "stop"
	KindDescriptor = "descriptor"
	KindResource   = "resource"
)

func isKind(k string) bool {
	switch k {
	case KindStart, KindStop, KindDescriptor, KindResource:
		return true
	}
	return false
}

// Options configure Wrap.
type Options struct {
	// Python runs the user's functions (nil: none). Wrap's catalog owns it and closes it.
	Python *Python
	// Rules are declarative patches (nil: none).
	Rules *Rules
	// Logger gets one line per document whose transform failed.
	Logger *slog.Logger
	// MaxBytes bounds a transformed document, as JSON (default DefaultMaxBytes).
	MaxBytes int
	// MaxDocs and MaxDocBytes bound the documents kept in memory after their transforms
	// (default 8192 documents and 64 MiB of them as JSON).
	MaxDocs     int
	MaxDocBytes int
}

// Wrap returns cat with its runs' documents transformed. With neither Python nor Rules it
// returns cat itself. The result implements catalog.RunVersioner when cat does.
func Wrap(cat catalog.Catalog, o Options) catalog.Catalog {
	if o.Python == nil && o.Rules == nil {
		return cat
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxDocs <= 0 {
		o.MaxDocs = 8192
	}
	if o.MaxDocBytes <= 0 {
		o.MaxDocBytes = 64 << 20
	}
	h := sha256.New()
	fmt.Fprintf(h, "brokerfs transforms 1\n%s\nrules ", o.Python.describe())
	if o.Rules != nil {
		h.Write(o.Rules.canon)
	}
	t := &transformer{o: o, suffix: "\x00transforms=" + hex.EncodeToString(h.Sum(nil))[:32], cur: map[docKey]*result{}}
	c := &Catalog{inner: cat, t: t}
	if _, ok := cat.(catalog.RunVersioner); ok {
		return versioned{c}
	}
	return c
}

// Catalog is a catalog whose runs' documents are transformed.
type Catalog struct {
	inner catalog.Catalog
	t     *transformer
}

var _ catalog.Catalog = (*Catalog)(nil)

// Runs returns the start documents as stored: listing and queries see stored documents.
func (c *Catalog) Runs(ctx context.Context) ([]*catalog.Start, error) { return c.inner.Runs(ctx) }

// Run opens the run uid with its documents transformed.
func (c *Catalog) Run(ctx context.Context, uid string) (catalog.Run, error) {
	// An early run would be the inner run's, untransformed: the caller gets none.
	r, err := c.inner.Run(catalog.WithEarlyRun(ctx, nil), uid)
	if err != nil {
		return nil, err
	}
	return &run{inner: r, t: c.t}, nil
}

// Close closes the catalog and the Python helper.
func (c *Catalog) Close() error {
	err := c.inner.Close()
	if perr := c.t.o.Python.Close(); err == nil {
		err = perr
	}
	return err
}

// versioned is a Catalog over a catalog.RunVersioner.
type versioned struct{ *Catalog }

var _ catalog.RunVersioner = versioned{}

// RunVersion is the inner catalog's, with the transforms' digest.
func (c versioned) RunVersion(ctx context.Context, uid string) (string, error) {
	v, err := c.inner.(catalog.RunVersioner).RunVersion(ctx, uid)
	if err != nil || v == "" {
		return v, err
	}
	return v + c.t.suffix, nil
}

// run is a run with its documents transformed. It serves arrays (catalog.ArrayReader) when
// the inner run does; its version (catalog.Versioner) is the inner run's with the digest.
type run struct {
	inner  catalog.Run
	t      *transformer
	failed atomic.Bool // a document of this run failed to transform: keep it out of the cache
}

var (
	_ catalog.Run         = (*run)(nil)
	_ catalog.Versioner   = (*run)(nil)
	_ catalog.ArrayReader = (*run)(nil)
)

func (r *run) note(res *result) {
	if res.failed {
		r.failed.Store(true)
	}
}

func (r *run) Start() *catalog.Start {
	s := r.inner.Start()
	res := r.t.do(context.Background(), KindStart, s.UID, s.Raw, s.Doc, s, func(doc map[string]any, raw []byte) (any, error) {
		return catalog.ParseStart(doc, raw)
	})
	r.note(res)
	return res.doc.(*catalog.Start)
}

func (r *run) Stop(ctx context.Context) (*catalog.Stop, error) {
	s, err := r.inner.Stop(ctx)
	if err != nil || s == nil {
		return s, err
	}
	res := r.t.do(ctx, KindStop, s.UID, s.Raw, nil, s, func(doc map[string]any, raw []byte) (any, error) {
		return catalog.ParseStop(doc, raw)
	})
	r.note(res)
	return res.doc.(*catalog.Stop), nil
}

func (r *run) Descriptors(ctx context.Context) ([]*catalog.Descriptor, error) {
	ds, err := r.inner.Descriptors(ctx)
	if err != nil || !r.t.applies(KindDescriptor) {
		return ds, err
	}
	out := make([]*catalog.Descriptor, len(ds))
	for i, d := range ds {
		res := r.t.do(ctx, KindDescriptor, d.UID, d.Raw, d.Doc, d, func(doc map[string]any, raw []byte) (any, error) {
			nd, err := catalog.ParseDescriptor(doc, raw)
			if err != nil {
				return nil, err
			}
			// A data key the transform broke (one stored well) is a failed transform: the
			// stored descriptor is shown, not a field that reads EIO.
			for name, dk := range nd.DataKeys {
				if dk.Err != nil && d.DataKeys[name].Err == nil {
					return nil, dk.Err
				}
			}
			return nd, nil
		})
		r.note(res)
		out[i] = res.doc.(*catalog.Descriptor)
	}
	return out, nil
}

func (r *run) Resources(ctx context.Context) ([]*catalog.Resource, error) {
	rs, err := r.inner.Resources(ctx)
	if err != nil || !r.t.applies(KindResource) {
		return rs, err
	}
	out := make([]*catalog.Resource, len(rs))
	for i, res := range rs {
		x := r.t.do(ctx, KindResource, res.UID, res.Raw, nil, res, func(doc map[string]any, raw []byte) (any, error) {
			return catalog.ParseResource(doc, raw)
		})
		r.note(x)
		out[i] = x.doc.(*catalog.Resource)
	}
	return out, nil
}

func (r *run) EventPages(ctx context.Context, descriptor string, from, to int, fields []string, fn func(p *catalog.EventPage) error) error {
	return r.inner.EventPages(ctx, descriptor, from, to, fields, fn)
}

func (r *run) Datums(ctx context.Context, resource string, fn func(p *catalog.DatumPage) error) error {
	return r.inner.Datums(ctx, resource, fn)
}

// Version is the inner run's version with the transforms' digest; "" (not cached) when the
// inner run has none or a document of the run failed to transform. Resources are
// transformed first, when there are resource transforms: frames read through a resource
// shown as stored must not be cached as if read through the transformed one.
func (r *run) Version(ctx context.Context) (string, error) {
	v, ok := r.inner.(catalog.Versioner)
	if !ok {
		return "", nil
	}
	if r.t.applies(KindResource) {
		if _, err := r.Resources(ctx); err != nil {
			return "", err
		}
	}
	if r.failed.Load() {
		return "", nil
	}
	s, err := v.Version(ctx)
	if err != nil || s == "" {
		return s, err
	}
	return s + r.t.suffix, nil
}

// ArrayField forwards to the inner run; a run that serves no arrays serves none here.
func (r *run) ArrayField(ctx context.Context, descriptor, field string) (string, []int, bool, error) {
	if ar, ok := r.inner.(catalog.ArrayReader); ok {
		return ar.ArrayField(ctx, descriptor, field)
	}
	return "", nil, false, nil
}

func (r *run) ReadArray(ctx context.Context, descriptor, field string, from, to int, dst []byte) error {
	if ar, ok := r.inner.(catalog.ArrayReader); ok {
		return ar.ReadArray(ctx, descriptor, field, from, to, dst)
	}
	return fmt.Errorf("field %s: run serves no arrays by row range: %w", field, catalog.ErrNotFound)
}

// transformer transforms documents and keeps the results.
type transformer struct {
	o      Options
	suffix string // appended to versions
	group  singleflight.Group

	// Two generations of results: cur fills up to half of MaxDocs or MaxDocBytes, then
	// becomes old (and old is dropped); a result found in old moves to cur.
	mu       sync.Mutex
	cur, old map[docKey]*result // guarded by mu
	curBytes int                // the sizes of cur's results; guarded by mu
}

type docKey struct {
	kind string
	sum  [sha256.Size]byte // of the stored document's bytes
}

// result is a document after its transforms: a *catalog.Start, *Stop, *Descriptor or
// *Resource, the stored one when no transform applied or one failed.
type result struct {
	doc    any
	failed bool
	size   int // bytes of the document as JSON, for the bound on what is kept
}

func (t *transformer) applies(kind string) bool {
	return t.o.Python.has(kind) || t.o.Rules.has(kind)
}

// do returns the document of kind (uid, stored bytes raw, decoded doc when the backend has
// it, parsed stored) after its transforms, transforming it only the first time it is seen.
func (t *transformer) do(ctx context.Context, kind, uid string, raw []byte, doc map[string]any, stored any, parse func(map[string]any, []byte) (any, error)) *result {
	if !t.applies(kind) {
		return &result{doc: stored}
	}
	if len(raw) == 0 && doc != nil {
		raw = catalog.AppendJSON(nil, doc)
	}
	key := docKey{kind: kind, sum: sha256.Sum256(raw)}
	if res := t.lookup(key); res != nil {
		return res
	}
	v, _, _ := t.group.Do(string(key.kind)+"\x00"+string(key.sum[:]), func() (any, error) {
		if res := t.lookup(key); res != nil {
			return res, nil
		}
		res := &result{doc: stored, size: len(raw)}
		out, size, err := t.transform(context.WithoutCancel(ctx), kind, raw, doc, parse)
		switch {
		case err != nil:
			t.o.Logger.Warn("transform failed; the document is shown as stored", "kind", kind, "uid", uid, "err", err)
			res.failed = true
		case out != nil:
			res.doc, res.size = out, size
		}
		t.store(key, res)
		return res, nil
	})
	return v.(*result)
}

// transform applies the transforms of kind to one document and returns it parsed, with
// its size as JSON. It returns nil when nothing changed it.
func (t *transformer) transform(ctx context.Context, kind string, raw []byte, stored map[string]any, parse func(map[string]any, []byte) (any, error)) (any, int, error) {
	if stored == nil {
		var err error
		if stored, err = jsonl.DecodeObject(raw); err != nil {
			return nil, 0, fmt.Errorf("decode the stored document: %w", err)
		}
	}
	doc := stored
	if t.o.Python.has(kind) {
		var err error
		if doc, err = t.o.Python.transform(ctx, kind, stored); err != nil {
			return nil, 0, err
		}
	}
	doc, _ = t.o.Rules.apply(kind, stored, doc)
	if was, now := stored["uid"], doc["uid"]; !sameUID(was, now) {
		return nil, 0, fmt.Errorf("the transform changed the uid %s to %s; a transform may not change a document's uid", catalog.AppendJSON(nil, was), catalog.AppendJSON(nil, now))
	}
	out := catalog.AppendJSON(nil, doc)
	if bytes.Equal(out, catalog.AppendJSON(nil, stored)) {
		return nil, 0, nil // unchanged: keep the stored bytes
	}
	if len(out) > t.o.MaxBytes {
		return nil, 0, fmt.Errorf("transformed document of %d bytes as JSON, more than %d", len(out), t.o.MaxBytes)
	}
	parsed, err := parse(doc, out)
	if err != nil {
		return nil, 0, fmt.Errorf("the transformed document is not a valid %s document: %w", kind, err)
	}
	return parsed, len(out), nil
}

func sameUID(a, b any) bool {
	sa, ok := a.(string)
	sb, ok2 := b.(string)
	return ok && ok2 && sa == sb
}

func (t *transformer) lookup(k docKey) *result {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.cur[k]; ok {
		return r
	}
	if r, ok := t.old[k]; ok {
		delete(t.old, k)
		t.addLocked(k, r)
		return r
	}
	return nil
}

func (t *transformer) store(k docKey, r *result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(k, r)
}

func (t *transformer) addLocked(k docKey, r *result) {
	if len(t.cur) >= t.o.MaxDocs/2 || t.curBytes+r.size > t.o.MaxDocBytes/2 {
		t.old, t.cur, t.curBytes = t.cur, make(map[docKey]*result, len(t.cur)), 0
	}
	t.cur[k] = r
	t.curBytes += r.size
}
