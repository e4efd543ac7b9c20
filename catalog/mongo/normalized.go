package mongo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/brokerfs/brokerfs/catalog"
)

// normalized holds the collections of the normalized layout.
type normalized struct {
	runStart, runStop, descriptors, events *mongo.Collection // metadata database
	resources, datums                      *mongo.Collection // asset database
}

func newNormalized(mds, assets *mongo.Database) *normalized {
	return &normalized{
		runStart:    mds.Collection("run_start"),
		runStop:     mds.Collection("run_stop"),
		descriptors: mds.Collection("event_descriptor"),
		events:      mds.Collection("event"),
		resources:   assets.Collection("resource"),
		datums:      assets.Collection("datum"),
	}
}

// noID is the projection that leaves out MongoDB's _id.
var noID = bson.D{{Key: "_id", Value: 0}}

func (c *Catalog) normalizedRun(ctx context.Context, uid string) (catalog.Run, error) {
	raw, err := c.norm.runStart.FindOne(ctx, bson.D{{Key: "uid", Value: uid}}, options.FindOne().SetProjection(noID)).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, fmt.Errorf("run %s in %s: %w", uid, c.name, catalog.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read start of run %s in %s: %w", uid, c.name, err)
	}
	s, err := parseStart(raw)
	if err != nil {
		return nil, &catalog.DocError{Source: "run_start " + uid, Name: "start", Err: err}
	}
	return &normRun{c: c, col: c.norm, start: s}, nil
}

// normRun is a run of the normalized layout. Its stop document and descriptors are read on
// first use and kept: a Run is a snapshot.
type normRun struct {
	c     *Catalog
	col   *normalized
	start *catalog.Start

	mu       sync.Mutex
	stopRead bool                      // guarded by mu
	stop     *catalog.Stop             // guarded by mu; nil while the run is live
	stopDoc  map[string]any            // guarded by mu; the stop as a generic document
	descs    []*catalog.Descriptor     // guarded by mu; nil until read
	resDocs  map[string]map[string]any // guarded by mu; resource uid -> generic document
}

var _ catalog.Run = (*normRun)(nil)

// Start implements catalog.Run.
func (r *normRun) Start() *catalog.Start { return r.start }

// Stop implements catalog.Run: run_stop.find_one({run_start: uid}), once.
func (r *normRun) Stop(ctx context.Context) (_ *catalog.Stop, err error) {
	defer r.c.scrub(&err)
	r.mu.Lock()
	read, stop := r.stopRead, r.stop
	r.mu.Unlock()
	if !read {
		var doc map[string]any
		raw, err := r.col.runStop.FindOne(ctx, bson.D{{Key: "run_start", Value: r.start.UID}}, options.FindOne().SetProjection(noID)).Raw()
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
		case err != nil:
			return nil, fmt.Errorf("read stop of run %s in %s: %w", r.start.UID, r.c.name, err)
		default:
			if stop, doc, err = parseStop(raw); err != nil {
				return nil, &catalog.DocError{Source: "run_stop of " + r.start.UID, Name: "stop", Err: err}
			}
		}
		r.mu.Lock()
		r.stopRead, r.stop, r.stopDoc = true, stop, doc
		r.mu.Unlock()
	}
	if stop == nil {
		return nil, fmt.Errorf("stop of run %s: %w", r.start.UID, catalog.ErrNotFound)
	}
	return stop, nil
}

// Descriptors implements catalog.Run: event_descriptor.find({run_start: uid}) by time, once.
// A malformed descriptor is left out and logged.
func (r *normRun) Descriptors(ctx context.Context) (_ []*catalog.Descriptor, err error) {
	defer r.c.scrub(&err)
	r.mu.Lock()
	descs := r.descs
	r.mu.Unlock()
	if descs != nil {
		return descs, nil
	}
	descs = []*catalog.Descriptor{}
	err = r.each(ctx, r.col.descriptors, bson.D{{Key: "run_start", Value: r.start.UID}},
		options.Find().SetSort(bson.D{{Key: "time", Value: 1}}), func(raw bson.Raw) {
			d, err := parseDescriptor(raw)
			if err != nil {
				r.c.opts.Logger.Warn("skipping bad descriptor", "catalog", r.c.name, "run", r.start.UID, "err", err)
				return
			}
			descs = append(descs, d)
		})
	if err != nil {
		return nil, fmt.Errorf("read descriptors of run %s in %s: %w", r.start.UID, r.c.name, err)
	}
	r.mu.Lock()
	r.descs = descs
	r.mu.Unlock()
	return descs, nil
}

// each runs a find with noID added to the projection and calls fn with every document.
func (r *normRun) each(ctx context.Context, coll *mongo.Collection, filter bson.D, fo *options.FindOptionsBuilder, fn func(bson.Raw)) error {
	cur, err := coll.Find(ctx, filter, fo.SetBatchSize(int32(r.c.opts.PageSize)))
	if err != nil {
		return err
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		fn(cur.Current)
	}
	return cur.Err()
}

// eventProjection projects the keys of events (or, under the embedded layout, of event
// pages) that EventPages reads: time, seq_num and the data, timestamps and filled flags of
// the fields asked for.
func eventProjection(fields []string, extra ...string) bson.D {
	p := bson.D{{Key: "_id", Value: 0}, {Key: "time", Value: 1}, {Key: "seq_num", Value: 1}}
	for _, k := range extra {
		p = append(p, bson.E{Key: k, Value: 1})
	}
	switch {
	case fields == nil:
		return append(p, bson.E{Key: "data", Value: 1}, bson.E{Key: "timestamps", Value: 1}, bson.E{Key: "filled", Value: 1})
	case len(fields) == 0:
		return append(p, bson.E{Key: "timestamps", Value: 1})
	}
	seen := map[string]bool{}
	for _, f := range fields {
		if seen[f] {
			continue
		}
		seen[f] = true
		p = append(p, bson.E{Key: "data." + f, Value: 1}, bson.E{Key: "timestamps." + f, Value: 1}, bson.E{Key: "filled." + f, Value: 1})
	}
	return p
}

// EventPages implements catalog.Run: event.find({descriptor}) sorted by time, as databroker
// reads them, with skip and limit for [from, to) and only the asked-for fields projected.
// Each page is one batch of Options.PageSize events: one round trip.
func (r *normRun) EventPages(ctx context.Context, descriptor string, from, to int, fields []string, fn func(p *catalog.EventPage) error) (err error) {
	defer r.c.scrub(&err)
	from = max(from, 0)
	if to >= 0 && to <= from {
		return nil
	}
	batch := r.c.opts.PageSize
	fo := options.Find().SetSort(bson.D{{Key: "time", Value: 1}}).SetProjection(eventProjection(fields))
	if from > 0 {
		fo.SetSkip(int64(from))
	}
	if to >= 0 {
		fo.SetLimit(int64(to - from))
		if to-from <= batch {
			// One more than the limit: a server that keeps a cursor open after a full
			// batch (FerretDB does, even at the limit) would cost an empty getMore.
			batch = to - from + 1
		}
	}
	fo.SetBatchSize(int32(batch))
	fail := func(err error) error {
		return fmt.Errorf("read events of descriptor %s of run %s in %s: %w", descriptor, r.start.UID, r.c.name, err)
	}
	cur, err := r.col.events.Find(ctx, bson.D{{Key: "descriptor", Value: descriptor}}, fo)
	if err != nil {
		return fail(err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	b := newPageBuilder(descriptor, from, fields)
	row := from
	for cur.Next(ctx) {
		if err := b.appendEvent(cur.Current); err != nil {
			return &catalog.DocError{Source: fmt.Sprintf("event %d of descriptor %s", row, descriptor), Name: "event", Err: err}
		}
		row++
		if cur.RemainingBatchLength() == 0 {
			if err := fn(b.page()); err != nil {
				return err
			}
			b.reset(row)
		}
	}
	if err := cur.Err(); err != nil {
		return fail(err)
	}
	if b.p.Len() > 0 {
		return fn(b.page())
	}
	return nil
}

// Resources implements catalog.Run: resource.find({run_start: uid}), or, for a run whose
// resources predate that key, the resources its events' datum ids name (see the package doc).
func (r *normRun) Resources(ctx context.Context) (_ []*catalog.Resource, err error) {
	defer r.c.scrub(&err)
	res, err := r.resources(ctx, bson.D{{Key: "run_start", Value: r.start.UID}})
	if err != nil || len(res) > 0 {
		return res, err
	}
	return r.legacyResources(ctx)
}

func (r *normRun) resources(ctx context.Context, filter bson.D) ([]*catalog.Resource, error) {
	res := []*catalog.Resource{}
	docs := map[string]map[string]any{}
	err := r.each(ctx, r.col.resources, filter, options.Find().SetProjection(noID), func(raw bson.Raw) {
		x, doc, err := parseResource(raw)
		if err != nil {
			r.c.opts.Logger.Warn("skipping bad resource", "catalog", r.c.name, "run", r.start.UID, "err", err)
			return
		}
		res = append(res, x)
		docs[x.UID] = doc
	})
	if err != nil {
		return nil, fmt.Errorf("read resources of run %s in %s: %w", r.start.UID, r.c.name, err)
	}
	r.mu.Lock()
	merged := make(map[string]map[string]any, len(r.resDocs)+len(docs)) // Documents may be reading the old map
	maps.Copy(merged, r.resDocs)
	maps.Copy(merged, docs)
	r.resDocs = merged
	r.mu.Unlock()
	return res, nil
}

// legacyResources finds resources through the datum ids in the run's external fields: the
// part before '/' of "<resource uid>/<n>" ids, a datum lookup for bare (v0) ids.
func (r *normRun) legacyResources(ctx context.Context) ([]*catalog.Resource, error) {
	descs, err := r.Descriptors(ctx)
	if err != nil {
		return nil, err
	}
	uids := map[string]bool{}
	var bare []string
	for _, d := range descs {
		var ext []string
		for k, dk := range d.DataKeys {
			if dk.External {
				ext = append(ext, k)
			}
		}
		if len(ext) == 0 {
			continue
		}
		err := r.EventPages(ctx, d.UID, 0, -1, ext, func(p *catalog.EventPage) error {
			for _, c := range p.Data {
				for i := 0; i < c.Len(); i++ {
					id, ok := c.At(i).(string)
					switch {
					case !ok:
					case strings.Contains(id, "/"):
						uids[id[:strings.IndexByte(id, '/')]] = true
					default:
						bare = append(bare, id)
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for len(bare) > 0 {
		chunk := bare[:min(len(bare), 1000)]
		bare = bare[len(chunk):]
		err := r.each(ctx, r.col.datums, bson.D{{Key: "datum_id", Value: bson.D{{Key: "$in", Value: chunk}}}},
			options.Find().SetProjection(bson.D{{Key: "resource", Value: 1}, {Key: "_id", Value: 0}}), func(raw bson.Raw) {
				if v, ok := lookup(raw, "resource"); ok {
					if s, ok := v.StringValueOK(); ok {
						uids[s] = true
					}
				}
			})
		if err != nil {
			return nil, fmt.Errorf("look up datums of run %s in %s: %w", r.start.UID, r.c.name, err)
		}
	}
	if len(uids) == 0 {
		return []*catalog.Resource{}, nil
	}
	list := make([]string, 0, len(uids))
	for u := range uids {
		list = append(list, u)
	}
	sort.Strings(list)
	return r.resources(ctx, bson.D{{Key: "uid", Value: bson.D{{Key: "$in", Value: list}}}})
}

// Datums implements catalog.Run: datum.find({resource}), one page per batch.
func (r *normRun) Datums(ctx context.Context, resource string, fn func(p *catalog.DatumPage) error) (err error) {
	defer r.c.scrub(&err)
	fail := func(err error) error {
		return fmt.Errorf("read datums of resource %s in %s: %w", resource, r.c.name, err)
	}
	cur, err := r.col.datums.Find(ctx, bson.D{{Key: "resource", Value: resource}},
		options.Find().SetProjection(bson.D{{Key: "datum_id", Value: 1}, {Key: "datum_kwargs", Value: 1}, {Key: "_id", Value: 0}}).
			SetBatchSize(int32(r.c.opts.PageSize)))
	if err != nil {
		return fail(err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var d datumBuilder
	d.reset(resource)
	for cur.Next(ctx) {
		if err := d.appendDatum(cur.Current); err != nil {
			return &catalog.DocError{Source: "datum of resource " + resource, Name: "datum", Err: err}
		}
		if cur.RemainingBatchLength() == 0 {
			if err := fn(d.page()); err != nil {
				return err
			}
			d.reset(resource)
		}
	}
	if err := cur.Err(); err != nil {
		return fail(err)
	}
	if d.p.Len() > 0 {
		return fn(d.page())
	}
	return nil
}
