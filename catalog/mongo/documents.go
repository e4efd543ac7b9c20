package mongo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/brokerfs/brokerfs/catalog"
)

// Replaying a run's documents (catalog.DocumentReader), for brokerfs copy. Neither layout
// keeps the order in which documents were emitted, so the replay rebuilds it: the start;
// events of all descriptors merged by time, each descriptor just before the first event
// later than it (or its own first event); resources and their datums before the first
// event; the stop last. Consecutive events of one descriptor become event_page documents,
// datums datum_page documents. The replay holds the run's events in memory, as a copy does.
// Documents share maps with the Run's own (its start, descriptors, resources): fn must not
// modify them.

// noUIDPrefix marks the uids InsertRun makes up for events written without one (an
// event_page with an empty uid list); the replay leaves them out again.
const noUIDPrefix = "brokerfs-no-uid-"

var (
	_ catalog.DocumentReader = (*normRun)(nil)
	_ catalog.DocumentReader = (*embRun)(nil)
)

// Documents implements catalog.DocumentReader.
func (r *normRun) Documents(ctx context.Context, fn func(catalog.Document) error) (err error) {
	defer r.c.scrub(&err)
	descs, err := r.Descriptors(ctx)
	if err != nil {
		return err
	}
	res, err := r.Resources(ctx)
	if err != nil {
		return err
	}
	if _, err := r.Stop(ctx); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		return err
	}
	uids := make([]string, len(descs))
	for i, d := range descs {
		uids[i] = d.UID
	}
	var rows []map[string]any
	cur, err := r.col.events.Find(ctx, bson.D{{Key: "descriptor", Value: bson.D{{Key: "$in", Value: uids}}}},
		options.Find().SetSort(bson.D{{Key: "time", Value: 1}}).SetProjection(noID).SetBatchSize(int32(r.c.opts.PageSize)))
	if err != nil {
		return fmt.Errorf("read events of run %s in %s: %w", r.start.UID, r.c.name, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		m, err := decodeDoc(cur.Current)
		if err != nil {
			return &catalog.DocError{Source: "event of run " + r.start.UID, Name: "event", Err: err}
		}
		rows = append(rows, m)
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("read events of run %s in %s: %w", r.start.UID, r.c.name, err)
	}
	r.mu.Lock()
	stopDoc, resDocs := r.stopDoc, r.resDocs
	r.mu.Unlock()
	rp := replay{run: r, fn: fn, pageSize: r.c.opts.PageSize}
	return rp.do(ctx, r.start.Doc, descs, res, resDocs, rows, stopDoc)
}

// Documents implements catalog.DocumentReader.
func (r *embRun) Documents(ctx context.Context, fn func(catalog.Document) error) (err error) {
	defer r.c.scrub(&err)
	var rows []map[string]any
	for _, d := range r.descs {
		cur, err := r.store.eventPages(ctx, d.UID, 0, -1, noID)
		if err != nil {
			return fmt.Errorf("read events of run %s in %s: %w", r.start.UID, r.c.name, err)
		}
		for cur.Next(ctx) {
			page, err := decodeDoc(cur.Current())
			if err == nil {
				rows, err = appendRows(rows, page)
			}
			if err != nil {
				_ = cur.Close(context.WithoutCancel(ctx))
				return &catalog.DocError{Source: "event page of descriptor " + d.UID, Name: "event_page", Err: err}
			}
		}
		err = cur.Err()
		_ = cur.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("read events of run %s in %s: %w", r.start.UID, r.c.name, err)
		}
	}
	// Pages hold one descriptor each: merge them by time (stable: rows of equal times keep
	// their order).
	sort.SliceStable(rows, func(i, j int) bool { return rowTime(rows[i]) < rowTime(rows[j]) })
	var stopDoc map[string]any
	if r.stop != nil {
		stopDoc = r.stopDoc
	}
	rp := replay{run: r, fn: fn, pageSize: r.c.opts.PageSize}
	return rp.do(ctx, r.start.Doc, r.descs, r.res, r.resDocs, rows, stopDoc)
}

// appendRows splits a stored event_page into one event per row.
func appendRows(rows []map[string]any, page map[string]any) ([]map[string]any, error) {
	times, _ := page["time"].([]any)
	n := len(times)
	col := func(v any) ([]any, bool) {
		l, ok := v.([]any)
		return l, ok && len(l) == n
	}
	seqs, ok := col(page["seq_num"])
	if !ok {
		return rows, fmt.Errorf("page of %d times and %d seq_nums", n, len(seqs))
	}
	uids, hasUIDs := col(page["uid"])
	for i := range n {
		row := map[string]any{"descriptor": page["descriptor"], "time": times[i], "seq_num": seqs[i]}
		if hasUIDs {
			row["uid"] = uids[i]
		}
		for _, key := range []string{"data", "timestamps", "filled"} {
			m, _ := page[key].(map[string]any)
			out := make(map[string]any, len(m))
			for k, v := range m {
				if c, ok := col(v); ok {
					out[k] = c[i]
				}
			}
			row[key] = out
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func rowTime(row map[string]any) float64 {
	t, _ := catalog.AsFloat(row["time"])
	return t
}

// replay emits a run's documents in the order described above.
type replay struct {
	run      catalog.Run
	fn       func(catalog.Document) error
	pageSize int

	page    []map[string]any // consecutive events of one descriptor, not yet emitted
	pageSig string           // what the events of page share: descriptor, keys, uids
}

func (rp *replay) do(ctx context.Context, start map[string]any, descs []*catalog.Descriptor, res []*catalog.Resource,
	resDocs map[string]map[string]any, rows []map[string]any, stop map[string]any) error {
	if err := rp.fn(catalog.Document{Name: "start", Doc: start}); err != nil {
		return err
	}
	pending := slices.Clone(descs)
	sort.SliceStable(pending, func(i, j int) bool { return pending[i].Time < pending[j].Time })
	assetsDone := false
	emitDescs := func(upTo float64, own string) error {
		for len(pending) > 0 {
			i := slices.IndexFunc(pending, func(d *catalog.Descriptor) bool { return d.Time <= upTo || d.UID == own })
			if i < 0 {
				return nil
			}
			if err := rp.flush(); err != nil {
				return err
			}
			if err := rp.fn(catalog.Document{Name: "descriptor", Doc: pending[i].Doc}); err != nil {
				return err
			}
			pending = slices.Delete(pending, i, i+1)
		}
		return nil
	}
	emitAssets := func() error {
		assetsDone = true
		if err := rp.flush(); err != nil {
			return err
		}
		for _, x := range res {
			if err := rp.fn(catalog.Document{Name: "resource", Doc: resDocs[x.UID]}); err != nil {
				return err
			}
			err := rp.run.Datums(ctx, x.UID, func(p *catalog.DatumPage) error {
				return rp.fn(catalog.Document{Name: "datum_page", Doc: datumPageDoc(p)})
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	for _, row := range rows {
		if err := ctx.Err(); err != nil {
			return err
		}
		desc, _ := row["descriptor"].(string)
		if err := emitDescs(rowTime(row), desc); err != nil {
			return err
		}
		if !assetsDone {
			if err := emitAssets(); err != nil {
				return err
			}
		}
		if err := rp.add(row); err != nil {
			return err
		}
	}
	if err := rp.flush(); err != nil {
		return err
	}
	for _, d := range pending { // later than every event
		if err := rp.fn(catalog.Document{Name: "descriptor", Doc: d.Doc}); err != nil {
			return err
		}
	}
	if !assetsDone {
		if err := emitAssets(); err != nil {
			return err
		}
	}
	if stop != nil {
		return rp.fn(catalog.Document{Name: "stop", Doc: stop})
	}
	return nil
}

// add adds an event to the page being gathered, emitting that page first when the event
// cannot join it.
func (rp *replay) add(row map[string]any) error {
	if uid, _ := row["uid"].(string); strings.HasPrefix(uid, noUIDPrefix) {
		delete(row, "uid")
	}
	sig := signature(row)
	if len(rp.page) > 0 && (sig != rp.pageSig || len(rp.page) >= rp.pageSize) {
		if err := rp.flush(); err != nil {
			return err
		}
	}
	rp.page, rp.pageSig = append(rp.page, row), sig
	return nil
}

// signature describes what events must share to make one page: the descriptor, whether
// they have uids, and the keys of data, timestamps and filled.
func signature(row map[string]any) string {
	var b strings.Builder
	b.WriteString(fmt.Sprint(row["descriptor"]))
	_, hasUID := row["uid"]
	fmt.Fprintf(&b, "|%v", hasUID)
	for _, key := range []string{"data", "timestamps", "filled"} {
		m, _ := row[key].(map[string]any)
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range m {
				if !yield(k) {
					return
				}
			}
		})
		fmt.Fprintf(&b, "|%q", keys)
	}
	return b.String()
}

// flush emits the gathered events as one event_page.
func (rp *replay) flush() error {
	if len(rp.page) == 0 {
		return nil
	}
	rows := rp.page
	rp.page = nil
	n := len(rows)
	doc := map[string]any{"descriptor": rows[0]["descriptor"], "uid": []any{}}
	for _, key := range []string{"time", "seq_num"} {
		col := make([]any, n)
		for i, r := range rows {
			col[i] = r[key]
		}
		doc[key] = col
	}
	if _, ok := rows[0]["uid"]; ok {
		uids := make([]any, n)
		for i, r := range rows {
			uids[i] = r["uid"]
		}
		doc["uid"] = uids
	}
	for _, key := range []string{"data", "timestamps", "filled"} {
		cols := map[string]any{}
		first, _ := rows[0][key].(map[string]any)
		for k := range first {
			col := make([]any, n)
			for i, r := range rows {
				m, _ := r[key].(map[string]any)
				col[i] = m[k]
			}
			cols[k] = col
		}
		doc[key] = cols
	}
	return rp.fn(catalog.Document{Name: "event_page", Doc: doc})
}

// datumPageDoc copies a (reused) DatumPage into a datum_page document.
func datumPageDoc(p *catalog.DatumPage) map[string]any {
	ids := make([]any, len(p.DatumID))
	for i, id := range p.DatumID {
		ids[i] = id
	}
	kw := make(map[string]any, len(p.DatumKwargs))
	for k, col := range p.DatumKwargs {
		kw[k] = slices.Clone(col)
	}
	return map[string]any{"resource": p.Resource, "datum_id": ids, "datum_kwargs": kw}
}
