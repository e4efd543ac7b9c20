// Package catalogtest is the contract every catalog backend passes: a set of fixture runs in
// generic document form and a suite that writes them through a backend and reads them back.
package catalogtest

import (
	"fmt"

	"github.com/brokerfs/brokerfs/catalog"
)

type m = map[string]any

// Fixture UIDs, fixed so tests can name them.
const (
	UIDScalars = "a1b2c3d4-0000-4000-8000-000000000001" // finished: scalars, event docs, baseline
	UIDPages   = "a1b2c3d4-0000-4000-8000-000000000002" // finished: event_pages, two primary descriptors, arrays
	UIDLive    = "b7e5f6a7-0000-4000-8000-000000000003" // live: no stop
	UIDAssets  = "c9d0e1f2-0000-4000-8000-000000000004" // resource and datums (external field)
)

func dk(dtype string, shape ...int) m {
	s := make([]any, len(shape))
	for i, d := range shape {
		s[i] = int64(d)
	}
	return m{"dtype": dtype, "shape": s, "source": "SIM:" + dtype}
}

// Runs returns the fixture runs, each a list of documents in the order a RunEngine emits them.
// Values are kept within what msgpack, JSON and BSON all carry: no NaN, no nested arrays in
// start documents.
func Runs() [][]catalog.Document {
	return [][]catalog.Document{scalarsRun(), pagesRun(), liveRun(), assetsRun()}
}

func scalarsRun() []catalog.Document {
	uid := UIDScalars
	t0 := 1700000000.25
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": t0, "scan_id": int64(101), "plan_name": "scan", "sample": "Si (111)",
			"detectors": []any{"det"}, "motors": []any{"motor"}, "num_points": int64(5)}},
		{Name: "descriptor", Doc: m{"uid": uid + "-d1", "run_start": uid, "time": t0 + 0.1, "name": "primary",
			"data_keys": m{"motor": dk("number"), "det": dk("integer"), "ok": dk("boolean"), "label": dk("string"),
				"Ion Ch 1": dk("number")},
			"object_keys":   m{"motor": []any{"motor"}, "det": []any{"det", "ok", "label", "Ion Ch 1"}},
			"configuration": m{"det": m{"data": m{"det_exposure": 0.5}, "timestamps": m{"det_exposure": t0}, "data_keys": m{"det_exposure": dk("number")}}},
		}},
		{Name: "descriptor", Doc: m{"uid": uid + "-d2", "run_start": uid, "time": t0 + 0.2, "name": "baseline",
			"data_keys": m{"temp": dk("number")}, "object_keys": m{"temp": []any{"temp"}}}},
		{Name: "event", Doc: m{"uid": uid + "-b1", "descriptor": uid + "-d2", "time": t0 + 0.3, "seq_num": int64(1),
			"data": m{"temp": 295.5}, "timestamps": m{"temp": t0 + 0.29}, "filled": m{}}},
	}
	labels := []string{"a", "bb", "ccc, \"q\"", "μ-ü", ""}
	for i := 0; i < 5; i++ {
		t := t0 + 1 + float64(i)
		docs = append(docs, catalog.Document{Name: "event", Doc: m{"uid": fmt.Sprintf("%s-e%d", uid, i), "descriptor": uid + "-d1",
			"time": t, "seq_num": int64(i + 1),
			"data":       m{"motor": float64(i)*0.1 - 0.2, "det": int64(i * i * 1000), "ok": i%2 == 0, "label": labels[i], "Ion Ch 1": 1e-7 * float64(i+1)},
			"timestamps": m{"motor": t - 0.01, "det": t - 0.02, "ok": t - 0.03, "label": t - 0.04, "Ion Ch 1": t - 0.05},
			"filled":     m{}}})
	}
	docs = append(docs,
		catalog.Document{Name: "event", Doc: m{"uid": uid + "-b2", "descriptor": uid + "-d2", "time": t0 + 7, "seq_num": int64(2),
			"data": m{"temp": 296.25}, "timestamps": m{"temp": t0 + 6.9}, "filled": m{}}},
		catalog.Document{Name: "stop", Doc: m{"uid": uid + "-stop", "run_start": uid, "time": t0 + 8, "exit_status": "success",
			"reason": "", "num_events": m{"primary": int64(5), "baseline": int64(2)}}})
	return docs
}

func pagesRun() []catalog.Document {
	uid := UIDPages
	t0 := 1700001000.5
	keys := m{"x": dk("number"), "spectrum": dk("array", 4), "n": dk("integer")}
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": t0, "scan_id": int64(102), "plan_name": "fly", "hints": m{"dimensions": []any{}}}},
		{Name: "descriptor", Doc: m{"uid": uid + "-d1", "run_start": uid, "time": t0 + 0.1, "name": "primary", "data_keys": keys}},
	}
	page := func(desc string, first, n int, t float64) catalog.Document {
		var ts, seq, x, spec, nn, tsx []any
		for i := first; i < first+n; i++ {
			ts = append(ts, t+float64(i))
			seq = append(seq, int64(i+1))
			x = append(x, float64(i)/3)
			spec = append(spec, []any{float64(i), 0.5, -1.25, float64(i * i)})
			nn = append(nn, int64(-i))
			tsx = append(tsx, t+float64(i)-0.5)
		}
		return catalog.Document{Name: "event_page", Doc: m{"descriptor": desc, "uid": []any{}, "time": ts, "seq_num": seq,
			"data":       m{"x": x, "spectrum": spec, "n": nn},
			"timestamps": m{"x": tsx, "spectrum": tsx, "n": tsx}, "filled": m{}}}
	}
	docs = append(docs, page(uid+"-d1", 0, 3, t0+1), page(uid+"-d1", 3, 1, t0+1))
	// The configuration changed mid-run: a second descriptor for the same stream.
	docs = append(docs, catalog.Document{Name: "descriptor", Doc: m{"uid": uid + "-d3", "run_start": uid, "time": t0 + 4.5,
		"name": "primary", "data_keys": keys}})
	docs = append(docs, page(uid+"-d3", 4, 2, t0+1))
	docs = append(docs, catalog.Document{Name: "stop", Doc: m{"uid": uid + "-stop", "run_start": uid, "time": t0 + 10,
		"exit_status": "abort", "reason": "user pressed ctrl-C", "num_events": m{"primary": int64(6)}}})
	return docs
}

func liveRun() []catalog.Document {
	uid := UIDLive
	t0 := 1700002000.0
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": t0, "scan_id": int64(103), "plan_name": "count"}},
		{Name: "descriptor", Doc: m{"uid": uid + "-d1", "run_start": uid, "time": t0 + 0.1, "data_keys": m{"I0": dk("number")}}},
	}
	for i := 0; i < 3; i++ {
		docs = append(docs, catalog.Document{Name: "event", Doc: m{"uid": fmt.Sprintf("%s-e%d", uid, i), "descriptor": uid + "-d1",
			"time": t0 + 1 + float64(i), "seq_num": int64(i + 1), "data": m{"I0": 1000.5 + float64(i)},
			"timestamps": m{"I0": t0 + float64(i)}, "filled": m{}}})
	}
	return docs
}

func assetsRun() []catalog.Document {
	uid := UIDAssets
	t0 := 1700003000.0
	res := "9f8e7d6c-0000-4000-8000-0000000000aa"
	docs := []catalog.Document{
		{Name: "start", Doc: m{"uid": uid, "time": t0, "scan_id": int64(101), "plan_name": "count"}},
		{Name: "descriptor", Doc: m{"uid": uid + "-d1", "run_start": uid, "time": t0 + 0.1, "data_keys": m{
			"img": m{"dtype": "array", "shape": []any{int64(2), int64(3)}, "source": "PV:img", "external": "FILESYSTEM:", "dtype_numpy": "<u2"}}}},
		{Name: "resource", Doc: m{"uid": res, "spec": "AD_HDF5", "root": "/old/root", "resource_path": "data/img.h5",
			"resource_kwargs": m{"frame_per_point": int64(1)}, "path_semantics": "posix", "run_start": uid}},
		{Name: "datum_page", Doc: m{"resource": res, "datum_id": []any{res + "/0", res + "/1"}, "datum_kwargs": m{"point_number": []any{int64(0), int64(1)}}}},
		{Name: "datum", Doc: m{"resource": res, "datum_id": res + "/2", "datum_kwargs": m{"point_number": int64(2)}}},
	}
	for i := 0; i < 3; i++ {
		docs = append(docs, catalog.Document{Name: "event", Doc: m{"uid": fmt.Sprintf("%s-e%d", uid, i), "descriptor": uid + "-d1",
			"time": t0 + 1 + float64(i), "seq_num": int64(i + 1), "data": m{"img": fmt.Sprintf("%s/%d", res, i)},
			"timestamps": m{"img": t0 + float64(i)}, "filled": m{"img": false}}})
	}
	docs = append(docs, catalog.Document{Name: "stop", Doc: m{"uid": uid + "-stop", "run_start": uid, "time": t0 + 5, "exit_status": "success"}})
	return docs
}
