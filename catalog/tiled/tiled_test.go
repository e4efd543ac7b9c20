package tiled

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
)

const apsDir = "../../testdata/apstools"

// testOpts are the options of replay tests: page[limit]=100 as recorded, fast retries.
func testOpts() Options {
	return Options{PageLimit: 100, Backoff: time.Millisecond, Timeout: 5 * time.Second}
}

func openReplay(t *testing.T, r *replay, o Options) *Catalog {
	t.Helper()
	c, err := Open(context.Background(), r.url(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fileRuns opens the apstools runs as the JSONL and msgpack backends see them.
func fileRuns(t *testing.T) map[string]catalog.Run {
	t.Helper()
	ctx := context.Background()
	jl, err := jsonl.Open([]string{filepath.Join(apsDir, "jsonl", "*.jsonl")}, jsonl.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mp, err := msgpack.Open([]string{filepath.Join(apsDir, "msgpack-pack", "documents", "*.msgpack")}, msgpack.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jl.Close(); _ = mp.Close() })
	out := map[string]catalog.Run{}
	for _, c := range []catalog.Catalog{jl, mp} {
		starts, err := c.Runs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range starts {
			r, err := c.Run(ctx, s.UID)
			if err != nil {
				t.Fatal(err)
			}
			out[s.UID] = r
		}
	}
	if len(out) != 8 {
		t.Fatalf("%d apstools runs, want 8", len(out))
	}
	return out
}

func TestReplayListing(t *testing.T) {
	r := newReplay(t, "", "003", "145")
	c := openReplay(t, r, testOpts())
	starts, err := c.Runs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range starts {
		got = append(got, fmt.Sprintf("%s %d %s", s.UID, s.ScanID, s.PlanName))
	}
	sort.Strings(got)
	files := fileRuns(t)
	want := []string{"ad5d0000-0000-4000-8000-000000000001 9001 count"}
	for uid, run := range files {
		want = append(want, fmt.Sprintf("%s %d %s", uid, run.Start().ScanID, run.Start().PlanName))
	}
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("runs:\n got %q\nwant %q", got, want)
	}
	if n := c.Requests(); n != 2 {
		t.Errorf("%d requests to open and list, want 2", n)
	}
}

// TestReplayRunsMatchFiles: every apstools run read from the replayed server equals the same
// run read from its JSONL or msgpack file: start, stop, descriptors, every event's time,
// seq_num, values and timestamps. Opening and reading a run costs 2 requests.
func TestReplayRunsMatchFiles(t *testing.T) {
	ctx := context.Background()
	files := fileRuns(t)
	r := newReplay(t, "public")
	c := openReplay(t, r, testOpts())
	for uid, want := range files {
		t.Run(uid[:8], func(t *testing.T) {
			before := c.Requests()
			got, err := c.Run(ctx, uid)
			if err != nil {
				t.Fatal(err)
			}
			compareRuns(t, got, want)
			if n := c.Requests() - before; n != 2 {
				t.Errorf("%d requests to open and read the run, want 2", n)
			}
		})
	}
}

func compareRuns(t *testing.T, got, want catalog.Run) {
	t.Helper()
	ctx := context.Background()
	if g, w := normalize(got.Start().Doc), normalize(want.Start().Doc); !reflect.DeepEqual(g, w) {
		t.Errorf("start differs:\n got %v\nwant %v", g, w)
	}
	gs, err1 := got.Stop(ctx)
	ws, err2 := want.Stop(ctx)
	if (err1 == nil) != (err2 == nil) || err1 == nil && (gs.UID != ws.UID || gs.ExitStatus != ws.ExitStatus || gs.Time != ws.Time || !reflect.DeepEqual(gs.NumEvents, ws.NumEvents)) {
		t.Errorf("stop = %+v, %v; want %+v, %v", gs, err1, ws, err2)
	}
	gd, err := got.Descriptors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wd, err := want.Descriptors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gd) != len(wd) {
		t.Fatalf("%d descriptors, want %d", len(gd), len(wd))
	}
	// The server sends descriptors in time order, the files in the order they were written
	// (run 7ab721bd wrote its primary descriptor before an earlier-timed one): compare by uid.
	for i := 1; i < len(gd); i++ {
		if gd[i].Time < gd[i-1].Time {
			t.Errorf("descriptors not in time order: %s after %s", gd[i].UID, gd[i-1].UID)
		}
	}
	byUID := func(d []*catalog.Descriptor) {
		sort.Slice(d, func(i, j int) bool { return d[i].UID < d[j].UID })
	}
	gd, wd = append([]*catalog.Descriptor(nil), gd...), append([]*catalog.Descriptor(nil), wd...)
	byUID(gd)
	byUID(wd)
	for i := range gd {
		g, w := gd[i], wd[i]
		if g.UID != w.UID || g.Name != w.Name || !reflect.DeepEqual(g.DataKeys, w.DataKeys) || !reflect.DeepEqual(g.ObjectKeys, w.ObjectKeys) {
			t.Errorf("descriptor %d: got %s %s %v, want %s %s %v", i, g.UID, g.Name, g.DataKeys, w.UID, w.Name, w.DataKeys)
		}
		if gc, wc := normalize(g.Configuration), normalize(w.Configuration); !reflect.DeepEqual(gc, wc) {
			t.Errorf("descriptor %s configuration:\n got %v\nwant %v", g.UID, gc, wc)
		}
		grows, wrows := eventRows(t, got, g.UID), eventRows(t, want, w.UID)
		if len(grows) != len(wrows) {
			t.Errorf("descriptor %s: %d events, want %d", g.UID, len(grows), len(wrows))
			continue
		}
		for j := range grows {
			if !reflect.DeepEqual(grows[j], wrows[j]) {
				t.Errorf("descriptor %s event %d:\n got %v\nwant %v", g.UID, j, grows[j], wrows[j])
				break
			}
		}
	}
}

type eventRow struct {
	Time   float64
	SeqNum int64
	Data   map[string]any
	TS     map[string]float64
}

func eventRows(t *testing.T, run catalog.Run, desc string) []eventRow {
	t.Helper()
	var out []eventRow
	err := run.EventPages(context.Background(), desc, 0, -1, nil, func(p *catalog.EventPage) error {
		for i := 0; i < p.Len(); i++ {
			r := eventRow{Time: p.Time[i], SeqNum: p.SeqNum[i], Data: map[string]any{}, TS: map[string]float64{}}
			for k, c := range p.Data {
				r.Data[k] = normalize(c.At(i))
			}
			for k, ts := range p.Timestamps {
				r.TS[k] = ts[i]
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// normalize turns decoder-specific forms into one: arrays into nested lists, NaN into a
// string (NaN != NaN).
func normalize(v any) any {
	switch x := v.(type) {
	case *catalog.NDArray:
		return normalize(x.List())
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case float64:
		if math.IsNaN(x) {
			return "NaN"
		}
	}
	return v
}

const adUID = "ad5d0000-0000-4000-8000-000000000001"

// adFrame is the synthetic AD_HDF5 run's frame i as the fixtures' README defines it:
// value = 1000*i + 10*row + col, uint16, 4 rows of 6.
func adFrame(i int) []byte {
	var b []byte
	for row := 0; row < 4; row++ {
		for col := 0; col < 6; col++ {
			b = binary.LittleEndian.AppendUint16(b, uint16(1000*i+10*row+col))
		}
	}
	return b
}

// TestReplayExternalField: the AD_HDF5 run's external field is served by row range, filled
// by the server: one frame costs one request of one frame's bytes (slice=2); the whole
// array one request without a slice. A small array is fetched whole once, then kept.
func TestReplayExternalField(t *testing.T) {
	ctx := context.Background()
	r := newReplay(t, "public")
	o := testOpts()
	o.WholeArrayBytes = -1
	c := openReplay(t, r, o)
	run, err := c.Run(ctx, adUID)
	if err != nil {
		t.Fatal(err)
	}
	descs, err := run.Descriptors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ar := run.(catalog.ArrayReader)
	d := descs[0].UID
	if _, _, ok, err := ar.ArrayField(ctx, d, "cam_stats_total"); ok || err != nil {
		t.Errorf("ArrayField(cam_stats_total) = %v, %v; want a field read through events", ok, err)
	}
	r.take()
	descr, shape, ok, err := ar.ArrayField(ctx, d, "cam_image")
	if err != nil || !ok || descr != "<u2" || !reflect.DeepEqual(shape, []int{1, 4, 6}) {
		t.Fatalf("ArrayField(cam_image) = %q %v %v %v, want <u2 [1 4 6]", descr, shape, ok, err)
	}
	frame := make([]byte, 48)
	if err := ar.ReadArray(ctx, d, "cam_image", 2, 3, frame); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(frame, adFrame(2)) {
		t.Errorf("frame 2 = %v, want %v", frame, adFrame(2))
	}
	all := make([]byte, 5*48)
	if err := ar.ReadArray(ctx, d, "cam_image", 0, 5, all); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if !bytes.Equal(all[i*48:(i+1)*48], adFrame(i)) {
			t.Errorf("frame %d of the whole array differs", i)
		}
	}
	if got, want := r.take(), []string{"107_field_metadata_ad_cam_image.json", "111_array_full_ad_cam_image_slice_octet.json", "108_array_full_ad_cam_image_octet.json"}; !reflect.DeepEqual(got, want) {
		t.Errorf("served %v, want %v", got, want)
	}

	// By default the 240-byte array is fetched whole on the first row read, and kept.
	c2 := openReplay(t, r, testOpts())
	run2, err := c2.Run(ctx, adUID)
	if err != nil {
		t.Fatal(err)
	}
	ar2 := run2.(catalog.ArrayReader)
	if _, _, ok, err := ar2.ArrayField(ctx, d, "cam_image"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	r.take()
	for _, i := range []int{3, 0, 4, 1, 2} {
		if err := ar2.ReadArray(ctx, d, "cam_image", i, i+1, frame); err != nil || !bytes.Equal(frame, adFrame(i)) {
			t.Errorf("row %d: %v %v", i, frame, err)
		}
	}
	if got, want := r.take(), []string{"108_array_full_ad_cam_image_octet.json"}; !reflect.DeepEqual(got, want) {
		t.Errorf("row by row: served %v, want %v", got, want)
	}

	// The in-event field and the datum ids still come through the documents.
	rows := eventRows(t, run, d)
	if len(rows) != 5 {
		t.Fatalf("%d events, want 5", len(rows))
	}
	for i, row := range rows {
		if id, _ := row.Data["cam_image"].(string); !strings.HasSuffix(id, fmt.Sprintf("/%d", i)) {
			t.Errorf("event %d cam_image = %v, want a datum id ending /%d", i, row.Data["cam_image"], i)
		}
	}
	// The server fills the external field: the run shows it as a plain field, without
	// resources (no files.txt); the documents keep it as stored, for copies.
	if dk := descs[0].DataKeys["cam_image"]; dk.External || dk.DtypeNumpy != "<u2" {
		t.Errorf("cam_image data key %+v: want it plain", dk)
	}
	if res, err := run.Resources(ctx); len(res) != 0 || err != nil {
		t.Errorf("Resources = %v, %v; want none", res, err)
	}
	var kinds []string
	if err := run.(catalog.DocumentReader).Documents(ctx, func(d catalog.Document) error {
		kinds = append(kinds, d.Name)
		if d.Name == "descriptor" {
			dks, _ := d.Doc["data_keys"].(map[string]any)
			if img, _ := dks["cam_image"].(map[string]any); img["external"] != "FILESTORE:" {
				t.Errorf("descriptor document changed: %v", img)
			}
		}
		return nil
	}); err != nil || strings.Join(kinds, " ") != "start descriptor resource"+strings.Repeat(" datum_page event_page", 5)+" stop" {
		t.Errorf("documents %v, %v", kinds, err)
	}
	if v, _ := run.(catalog.Versioner).Version(ctx); !strings.Contains(v, adUID) {
		t.Errorf("Version = %q", v)
	}
}

// TestReplayAuth: without a key, or with a wrong one, opening fails at once (one request, no
// retry) saying how to pass a key, and never shows the key; with the key, the header opens.
func TestReplayAuth(t *testing.T) {
	ctx := context.Background()
	r := newReplay(t, "apikey")
	for _, tc := range []struct {
		key  string
		want string
	}{{"", "set TILED_API_KEY or pass --api-key-file"}, {"wrong", "refused the API key"}} {
		o := testOpts()
		o.APIKey = tc.key
		before := r.requests
		_, err := Open(ctx, r.url(), o)
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "401") {
			t.Errorf("key %q: err = %v, want ErrUnauthorized saying %q", tc.key, err, tc.want)
		}
		if tc.key != "" && strings.Contains(err.Error(), tc.key) {
			t.Errorf("the error shows the key: %v", err)
		}
		if n := r.requests - before; n != 1 {
			t.Errorf("key %q: %d requests, want 1 (no retry of a 401)", tc.key, n)
		}
	}
	o := testOpts()
	o.APIKey = "secret"
	c, err := Open(ctx, r.url(), o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.String(), "secret") {
		t.Errorf("String() = %q shows the key", c.String())
	}
	r.take()
}

// TestReplayServerErrors: a field the server fails on (500) fails with an error naming the
// URL and the status, after retries on fresh connections; a run whose arrays fail in tiled's
// array routes (hklpy's shape-[0] fields, a 0-event stream) still reads in full through its
// documents.
func TestReplayServerErrors(t *testing.T) {
	ctx := context.Background()
	r := newReplay(t, "public")
	c := openReplay(t, r, testOpts())
	u := c.c.route("array/full", []string{"7ab721bd-5fcf-4010-a7d3-142298d773b6", "primary", "data", "sim4c_reflections"}, nil)
	before := r.requests
	_, err := c.c.get(ctx, u, "application/octet-stream", 1<<20)
	var he *HTTPError
	if !errors.As(err, &he) || he.Status != 500 || !strings.Contains(err.Error(), u) || !strings.Contains(err.Error(), "500") {
		t.Errorf("err = %v, want a 500 naming %s", err, u)
	}
	if n := r.requests - before; n != 1+c.opts.Retries {
		t.Errorf("%d requests, want %d (retries of a 500)", n, 1+c.opts.Retries)
	}
	for _, uid := range []string{"7ab721bd-5fcf-4010-a7d3-142298d773b6", "b31e8698-f842-4397-b2ef-acd4cb74fdd4"} {
		run, err := c.Run(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		descs, err := run.Descriptors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range descs {
			eventRows(t, run, d.UID)
		}
	}
	if _, err := c.Run(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, catalog.ErrNotFound) {
		t.Errorf("missing run: err = %v, want ErrNotFound", err)
	}
}

// TestFiltersAsRecorded: --query clauses become exactly the filter parameters that the
// real server answered in the fixtures.
func TestFiltersAsRecorded(t *testing.T) {
	all := loadFixtures(t)
	for _, tc := range []struct {
		fixture string
		query   map[string]any
	}{
		{"020", map[string]any{"scan_id": int64(10042)}},
		{"022", map[string]any{"plan_name": "count"}},
		{"024", map[string]any{"plan_name": map[string]any{"$ne": "count"}}},
		{"025", map[string]any{"plan_name": map[string]any{"$in": []any{"count", "scan"}}}},
		{"026", map[string]any{"time": map[string]any{"$gt": int64(1748000000)}}},
		{"027", map[string]any{"time": map[string]any{"$gt": int64(1748000000), "$lt": int64(1748500000)}}},
		{"028", map[string]any{"scan_id": map[string]any{"$lte": int64(100)}}},
	} {
		got, rest := Filters(tc.query)
		want := urlQuery(t, all[tc.fixture].RawQuery)
		want.Del("fields")
		if !reflect.DeepEqual(got, want) || len(rest) != 0 {
			t.Errorf("%s: Filters(%v) = %v %v, want %v", tc.fixture, tc.query, got, rest, want)
		}
	}
	got, rest := Filters(map[string]any{"plan_name": map[string]any{"$regex": "^s"}, "$or": []any{}, "num_points": int64(5)})
	if !reflect.DeepEqual(rest, []string{"$or", "plan_name.$regex"}) || len(got) != 2 {
		t.Errorf("Filters = %v, rest %v", got, rest)
	}
}

// TestEncodingsAsRecorded: every compressed body the server sent decodes to what the
// recorder decoded with Python's own codecs.
func TestEncodingsAsRecorded(t *testing.T) {
	all := loadFixtures(t)
	n := 0
	for _, f := range all {
		enc := f.header("content-encoding")
		if enc == "" {
			continue
		}
		n++
		got, err := decodeBody(enc, f.body(), 1<<30)
		if err != nil {
			t.Errorf("%s (%s): %v", f.File, enc, err)
			continue
		}
		if want := f.decoded(); !bytes.Equal(got, want) && !jsonEqual(got, want) {
			t.Errorf("%s (%s): decoded %d bytes, want %d", f.File, enc, len(got), len(want))
		}
		// Bounded: a limit one byte short refuses the body.
		if _, err := decodeBody(enc, f.body(), int64(len(got))-1); !errors.Is(err, errTooBig) {
			t.Errorf("%s (%s): limit %d: err = %v, want errTooBig", f.File, enc, len(got)-1, err)
		}
	}
	if n < 7 {
		t.Errorf("%d compressed fixtures, want gzip, zstd, lz4, blosc ones", n)
	}
}

func jsonEqual(a, b []byte) bool {
	va, err1 := parseJSON(a)
	vb, err2 := parseJSON(b)
	return err1 == nil && err2 == nil && reflect.DeepEqual(normalize(va), normalize(vb))
}
