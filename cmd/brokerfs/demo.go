package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
)

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("demo", stderr)
	var (
		dir     string
		noMount bool
	)
	fl.StringVar(&dir, "dir", "", "where to write the demo catalog (default: a new temporary directory)")
	fl.BoolVar(&noMount, "no-mount", false, "write the catalog and exit")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: brokerfs demo [flags] [MOUNTPOINT]\n\nWrites a small catalog (msgpack and JSONL runs: scans, a baseline stream, strings,\nbooleans, 1-D arrays, HDF5 detector frames under a moved root, an aborted and a live run) and mounts it, by default on ./brokerfs-demo.\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 1 {
		fl.Usage()
		return usageError{"want at most one MOUNTPOINT"}
	}
	// A catalog in a temporary directory lives as long as the demo's mount: it is removed
	// when the demo exits, unless --no-mount asked for the catalog itself. --dir keeps it.
	temporary := dir == ""
	if temporary {
		var err error
		if dir, err = os.MkdirTemp("", "brokerfs-demo-catalog-"); err != nil {
			return err
		}
		defer func() {
			if !noMount {
				os.RemoveAll(dir)
			}
		}()
	}
	if err := writeDemo(dir, time.Now()); err != nil {
		if temporary {
			os.RemoveAll(dir)
		}
		return err
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if temporary && !noMount {
		fmt.Fprintf(stdout, "Wrote the demo catalog to %s (removed when the demo exits; --dir DIR keeps it)\n", dir)
	} else {
		fmt.Fprintf(stdout, "Wrote the demo catalog to %s\n", dir)
	}
	if noMount {
		return nil
	}
	mnt := "brokerfs-demo"
	if fl.NArg() == 1 {
		mnt = fl.Arg(0)
	}
	if _, err := os.Stat(mnt); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return err
		}
		defer os.Remove(mnt) // made here: removed again once unmounted (if still empty)
	}
	abs, _ := filepath.Abs(mnt)
	fmt.Fprintf(stdout, `Mounting it on %[1]s; press Ctrl-C here to unmount. In another shell, try:

  ls %[1]s                       # one directory per run, by uid
  ls -l %[1]s/by-scan-id/        # runs by scan_id; %[1]s/latest is the newest
  cat %[1]s/latest/start.json
  ls -l %[1]s/-1 %[1]s/2        # catalog[-1] (the newest run) and catalog[2] (scan_id 2)
  ls %[1]s/1/primary/
  head %[1]s/by-scan-id/1/primary/det.csv
  /usr/bin/python3 -c 'import numpy as np; print(np.load("%[1]s/by-scan-id/1/primary/det.npy"))'
  /usr/bin/python3 -c 'import pandas as pd; print(pd.read_csv("%[1]s/by-scan-id/2/primary/spectrum.csv"))'
  /usr/bin/python3 -c 'import numpy as np; a = np.load("%[1]s/by-scan-id/6/primary/cam_image.npy", mmap_mode="r"); print(a.shape, a[3, 1].max())'
  cat %[1]s/by-scan-id/6/files.txt

`, abs)
	rootMap := demoOldRoot + "=" + filepath.Join(absDir, "detector")
	fmt.Fprintf(stdout, "Run 6 holds area-detector frames (cam_image.npy) in HDF5 files whose resource root\n%s has moved; the demo mounts with --root-map %s\n\n", demoOldRoot, rootMap)
	return cmdMount([]string{"--root-map", rootMap, dir, mnt}, stdout, os.Stderr)
}

type m = map[string]any

// writeDemo writes the demo runs: most as msgpack, two as JSONL, one of them live.
func writeDemo(dir string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	t0 := float64(now.Add(-2*time.Hour).Unix()) + 0.125
	rng := rand.New(rand.NewSource(1))
	runs := []struct {
		format string
		docs   []catalog.Document
	}{
		{"msgpack", demoScan(rng, 1, t0)},
		{"jsonl", demoSpectra(rng, 2, t0+600)},
		{"msgpack", demoGrid(rng, 3, t0+1200)},
		{"msgpack", demoAborted(rng, 4, t0+1800)},
		{"jsonl", demoLive(rng, 5, t0+2400)},
	}
	det, err := demoDetector(rng, 6, t0+3000, dir)
	if err != nil {
		return fmt.Errorf("write demo detector run: %w", err)
	}
	runs = append(runs, struct {
		format string
		docs   []catalog.Document
	}{"msgpack", det})
	for _, r := range runs {
		uid := r.docs[0].Doc["uid"].(string)
		var err error
		switch r.format {
		case "msgpack":
			err = msgpack.WriteRun(filepath.Join(dir, uid+".msgpack"), r.docs)
		default:
			err = jsonl.WriteRun(filepath.Join(dir, uid+".jsonl"), r.docs)
		}
		if err != nil {
			return fmt.Errorf("write demo run %s: %w", uid, err)
		}
	}
	return nil
}

func demoUID(rng *rand.Rand) string {
	b := make([]byte, 16)
	rng.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func key(dtype, source string, shape ...int) m {
	s := make([]any, len(shape))
	for i, d := range shape {
		s[i] = int64(d)
	}
	return m{"dtype": dtype, "shape": s, "source": source}
}

func start(rng *rand.Rand, scanID int64, t float64, plan string, extra m) catalog.Document {
	d := m{"uid": demoUID(rng), "time": t, "scan_id": scanID, "plan_name": plan, "beamline_id": "demo",
		"proposal_id": "DEMO-0001", "sample": "Si (111) wafer", "operator": "brokerfs demo",
		"versions": m{"bluesky": "1.14.1", "ophyd": "1.10.6"}}
	for k, v := range extra {
		d[k] = v
	}
	return catalog.Document{Name: "start", Doc: d}
}

func descriptor(rng *rand.Rand, runUID string, t float64, name string, keys m, config m) catalog.Document {
	objects := m{}
	for k := range keys {
		objects[k] = []any{k}
	}
	d := m{"uid": demoUID(rng), "run_start": runUID, "time": t, "name": name, "data_keys": keys, "object_keys": objects,
		"hints": m{}, "configuration": config}
	return catalog.Document{Name: "descriptor", Doc: d}
}

func event(rng *rand.Rand, desc catalog.Document, seq int, t float64, data m) catalog.Document {
	ts := m{}
	for k := range data {
		ts[k] = t - 0.01
	}
	return catalog.Document{Name: "event", Doc: m{"uid": demoUID(rng), "descriptor": desc.Doc["uid"], "time": t,
		"seq_num": int64(seq), "data": data, "timestamps": ts, "filled": m{}}}
}

func stop(rng *rand.Rand, runUID string, t float64, status string, counts m) catalog.Document {
	return catalog.Document{Name: "stop", Doc: m{"uid": demoUID(rng), "run_start": runUID, "time": t,
		"exit_status": status, "reason": "", "num_events": counts}}
}

func baseline(rng *rand.Rand, runUID string, t float64, docs []catalog.Document, seq int) []catalog.Document {
	if seq == 1 {
		docs = append(docs, descriptor(rng, runUID, t, "baseline",
			m{"ring_current": key("number", "PV:SR:current"), "sample_temp": key("number", "PV:TC:temp"), "shutter": key("string", "PV:SH:state")}, m{}))
	}
	var desc catalog.Document
	for _, d := range docs {
		if d.Name == "descriptor" && d.Doc["name"] == "baseline" {
			desc = d
		}
	}
	return append(docs, event(rng, desc, seq, t, m{"ring_current": 101.5 - 0.25*float64(seq), "sample_temp": 295.0 + float64(seq)/8, "shutter": "open"}))
}

func detConfig(t float64) m {
	return m{"det": m{"data": m{"det_exposure": 0.1, "det_gain": int64(4)}, "timestamps": m{"det_exposure": t, "det_gain": t},
		"data_keys": m{"det_exposure": key("number", "PV:det:exposure"), "det_gain": key("integer", "PV:det:gain")}}}
}

// demoScan is a step scan with scalars of every kind and a baseline.
func demoScan(rng *rand.Rand, scanID int64, t float64) []catalog.Document {
	st := start(rng, scanID, t, "scan", m{"motors": []any{"motor"}, "detectors": []any{"det"}, "num_points": int64(11)})
	uid := st.Doc["uid"].(string)
	docs := baseline(rng, uid, t+0.5, []catalog.Document{st}, 1)
	desc := descriptor(rng, uid, t+1, "primary", m{
		"motor": key("number", "PV:m1.RBV"), "det": key("integer", "PV:det:counts"), "I0": key("number", "PV:I0"),
		"in_range": key("boolean", "SIM:in_range"), "status": key("string", "PV:det:status")}, detConfig(t))
	docs = append(docs, desc)
	for i := 0; i < 11; i++ {
		x := -1 + 0.2*float64(i)
		counts := int64(1000*math.Exp(-x*x/0.18)) + int64(rng.Intn(20))
		status := []string{"idle", "acquiring", "done, ok"}[i%3]
		docs = append(docs, event(rng, desc, i+1, t+2+float64(i), m{"motor": math.Round(x*1e6) / 1e6, "det": counts,
			"I0": 1e5 + rng.Float64()*100, "in_range": math.Abs(x) < 0.5, "status": status}))
	}
	docs = baseline(rng, uid, t+14, docs, 2)
	return append(docs, stop(rng, uid, t+15, "success", m{"primary": int64(11), "baseline": int64(2)}))
}

// demoSpectra is a count of a 64-channel spectrum (a 1-D array per event).
func demoSpectra(rng *rand.Rand, scanID int64, t float64) []catalog.Document {
	st := start(rng, scanID, t, "count", m{"detectors": []any{"mca"}, "num_points": int64(5)})
	uid := st.Doc["uid"].(string)
	desc := descriptor(rng, uid, t+1, "primary", m{"spectrum": key("array", "PV:mca.VAL", 64), "dead_time": key("number", "PV:mca.DT")}, m{})
	docs := []catalog.Document{st, desc}
	for i := 0; i < 5; i++ {
		spec := make([]any, 64)
		for c := range spec {
			d := float64(c-20-i) / 4
			spec[c] = math.Round((500*math.Exp(-d*d)+rng.Float64()*10)*1000) / 1000
		}
		docs = append(docs, event(rng, desc, i+1, t+2+float64(i), m{"spectrum": spec, "dead_time": 0.01 * float64(i+1)}))
	}
	return append(docs, stop(rng, uid, t+8, "success", m{"primary": int64(5)}))
}

// demoGrid is a 5x5 grid scan written as event pages, as a fly scan would.
func demoGrid(rng *rand.Rand, scanID int64, t float64) []catalog.Document {
	st := start(rng, scanID, t, "grid_scan", m{"motors": []any{"sx", "sy"}, "shape": []any{int64(5), int64(5)}})
	uid := st.Doc["uid"].(string)
	desc := descriptor(rng, uid, t+1, "primary", m{"sx": key("number", "PV:sx"), "sy": key("number", "PV:sy"), "det": key("number", "PV:det")}, detConfig(t))
	docs := []catalog.Document{st, desc}
	for row := 0; row < 5; row++ {
		var times, seqs, sx, sy, det, ts []any
		for col := 0; col < 5; col++ {
			n := row*5 + col
			tt := t + 2 + float64(n)*0.5
			times, seqs, ts = append(times, tt), append(seqs, int64(n+1)), append(ts, tt-0.01)
			sx, sy = append(sx, float64(col)*0.5), append(sy, float64(row)*0.5)
			det = append(det, math.Round(rng.NormFloat64()*1e4)/1e4+float64(row*col))
		}
		docs = append(docs, catalog.Document{Name: "event_page", Doc: m{"descriptor": desc.Doc["uid"], "uid": []any{},
			"time": times, "seq_num": seqs, "data": m{"sx": sx, "sy": sy, "det": det},
			"timestamps": m{"sx": ts, "sy": ts, "det": ts}, "filled": m{}}})
	}
	return append(docs, stop(rng, uid, t+20, "success", m{"primary": int64(25)}))
}

// demoAborted is a scan the user stopped after three points.
func demoAborted(rng *rand.Rand, scanID int64, t float64) []catalog.Document {
	st := start(rng, scanID, t, "rel_scan", m{"motors": []any{"th"}})
	uid := st.Doc["uid"].(string)
	desc := descriptor(rng, uid, t+1, "primary", m{"th": key("number", "PV:th"), "det": key("integer", "PV:det")}, m{})
	docs := []catalog.Document{st, desc}
	for i := 0; i < 3; i++ {
		docs = append(docs, event(rng, desc, i+1, t+2+float64(i), m{"th": 10 + 0.01*float64(i), "det": int64(rng.Intn(500))}))
	}
	st2 := stop(rng, uid, t+6, "abort", m{"primary": int64(3)})
	st2.Doc["reason"] = "RunEngine interrupted by user"
	return append(docs, st2)
}

// demoLive is a run still being written: no stop document yet.
func demoLive(rng *rand.Rand, scanID int64, t float64) []catalog.Document {
	st := start(rng, scanID, t, "count", m{"detectors": []any{"I0"}, "num_points": int64(100)})
	uid := st.Doc["uid"].(string)
	desc := descriptor(rng, uid, t+1, "primary", m{"I0": key("number", "PV:I0")}, m{})
	docs := []catalog.Document{st, desc}
	for i := 0; i < 4; i++ {
		docs = append(docs, event(rng, desc, i+1, t+2+float64(i), m{"I0": 1e5 + float64(i)}))
	}
	return docs
}
