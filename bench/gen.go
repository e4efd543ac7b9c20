package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
)

// The generated catalogs are deterministic (fixed seeds), so that a -cache directory can hold
// them across runs; a marker file records the parameters they were made with.

const t0 = 1.7e9 // start time of the generated runs, seconds since the epoch

// uuid4 formats 16 random bytes as a version-4 UUID.
func uuid4(r *rand.Rand) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], r.Uint64())
	binary.LittleEndian.PutUint64(b[8:], r.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// cached runs make unless dir holds a marker equal to key; make writes into dir.
func cached(dir, key string, make func() error) (reused bool, err error) {
	marker := filepath.Join(dir, ".bench-params")
	if b, err := os.ReadFile(marker); err == nil && string(b) == key {
		return true, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	if err := make(); err != nil {
		return false, err
	}
	return false, os.WriteFile(marker, []byte(key), 0o644)
}

// genSmallRuns writes n small but realistic run files into dir: a start document of about 30
// keys, one descriptor with configuration, 10 events as single-row event pages (as suitcase
// writes a run fed one event at a time) and a stop document.
func genSmallRuns(dir string, n int) error {
	workers := runtime.NumCPU() * 2
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if interrupted.Load() {
					errs <- errInterrupted
					return
				}
				r := rand.New(rand.NewPCG(uint64(i), 42))
				docs, uid := smallRun(r, i)
				if err := msgpack.WriteRun(filepath.Join(dir, uid+".msgpack"), docs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func smallRun(r *rand.Rand, i int) ([]catalog.Document, string) {
	uid := uuid4(r)
	t := t0 + float64(i)*3600 + r.Float64()*60
	plans := []string{"count", "scan", "rel_scan", "grid_scan", "list_scan"}
	plan := plans[i%len(plans)]
	samples := []string{"Fe2O3", "LaB6", "Si640f", "CeO2", "Ni foil", "empty cell"}
	sample := samples[r.IntN(len(samples))]
	start := map[string]any{
		"uid":                 uid,
		"time":                t,
		"scan_id":             int64(i + 1),
		"plan_name":           plan,
		"plan_type":           "generator",
		"plan_args":           map[string]any{"detectors": []any{"det"}, "num": int64(10), "args": []any{"motor", -1.0, 1.0}, "per_step": "None"},
		"plan_pattern":        "inner_product",
		"plan_pattern_module": "bluesky.plan_patterns",
		"plan_pattern_args":   map[string]any{"num": int64(10), "args": []any{"motor", -1.0, 1.0}},
		"detectors":           []any{"det"},
		"motors":              []any{"motor"},
		"num_points":          int64(10),
		"num_intervals":       int64(9),
		"hints":               map[string]any{"dimensions": []any{[]any{[]any{"motor"}, "primary"}}},
		"versions":            map[string]any{"bluesky": "1.13.0", "ophyd": "1.9.0", "event_model": "1.22.0"},
		"beamline_id":         "BL-99ID",
		"facility":            "synthetic light source",
		"proposal_id":         fmt.Sprintf("GU-%06d", 300000+i/50),
		"cycle":               fmt.Sprintf("20%02d-%d", 24+i/3000, 1+i%3),
		"data_session":        fmt.Sprintf("pass-%06d", 300000+i/50),
		"data_groups":         []any{fmt.Sprintf("pass-%06d", 300000+i/50), "bl99id"},
		"sample":              map[string]any{"name": sample, "composition": sample, "holder": int64(r.IntN(24))},
		"owner":               "operator",
		"group":               "users",
		"login_id":            "xf99id@bl99-ws1",
		"hostname":            "bl99-ws1",
		"operator":            []string{"A. Lovelace", "C. Babbage", "G. Hopper"}[i%3],
		"purpose":             []string{"alignment", "measurement", "calibration"}[i%3],
		"temperature":         295.0 + r.Float64(),
		"energy_keV":          8.0 + r.Float64()*10,
		"comments":            "synthetic run written by brokerfs/bench",
		"project_name":        "brokerfs benchmark",
		"scan_type":           plan,
	}
	desc := uuid4(r)
	dataKeys := map[string]any{
		"det":            map[string]any{"dtype": "number", "shape": []any{}, "source": "PY:det.val", "precision": int64(3), "object_name": "det", "units": "counts"},
		"motor":          map[string]any{"dtype": "number", "shape": []any{}, "source": "PV:XF:99ID-OP{Mtr}Mtr.RBV", "precision": int64(4), "object_name": "motor", "units": "mm"},
		"motor_setpoint": map[string]any{"dtype": "number", "shape": []any{}, "source": "PV:XF:99ID-OP{Mtr}Mtr", "precision": int64(4), "object_name": "motor", "units": "mm"},
	}
	descriptor := map[string]any{
		"uid": desc, "run_start": uid, "time": t + 0.1, "name": "primary", "data_keys": dataKeys,
		"object_keys": map[string]any{"det": []any{"det"}, "motor": []any{"motor", "motor_setpoint"}},
		"configuration": map[string]any{
			"det": map[string]any{
				"data":       map[string]any{"det_Imax": 1.0, "det_sigma": 1.0, "det_noise": "uniform"},
				"timestamps": map[string]any{"det_Imax": t, "det_sigma": t, "det_noise": t},
				"data_keys": map[string]any{
					"det_Imax":  map[string]any{"dtype": "number", "shape": []any{}, "source": "SIM:det_Imax"},
					"det_sigma": map[string]any{"dtype": "number", "shape": []any{}, "source": "SIM:det_sigma"},
					"det_noise": map[string]any{"dtype": "string", "shape": []any{}, "source": "SIM:det_noise"},
				},
			},
			"motor": map[string]any{
				"data":       map[string]any{"motor_velocity": 1.0, "motor_acceleration": 0.5},
				"timestamps": map[string]any{"motor_velocity": t, "motor_acceleration": t},
				"data_keys": map[string]any{
					"motor_velocity":     map[string]any{"dtype": "number", "shape": []any{}, "source": "PV:XF:99ID-OP{Mtr}Mtr.VELO"},
					"motor_acceleration": map[string]any{"dtype": "number", "shape": []any{}, "source": "PV:XF:99ID-OP{Mtr}Mtr.ACCL"},
				},
			},
		},
		"hints": map[string]any{"det": map[string]any{"fields": []any{"det"}}, "motor": map[string]any{"fields": []any{"motor"}}},
	}
	docs := []catalog.Document{{Name: "start", Doc: start}, {Name: "descriptor", Doc: descriptor}}
	for k := range 10 {
		te := t + 1 + float64(k)
		m := -1 + float64(k)*2/9
		docs = append(docs, catalog.Document{Name: "event_page", Doc: map[string]any{
			"time": []any{te}, "uid": []any{uuid4(r)}, "seq_num": []any{int64(k + 1)}, "descriptor": desc,
			"filled": map[string]any{},
			"data":   map[string]any{"det": []any{math.Exp(-m * m / 2)}, "motor": []any{m}, "motor_setpoint": []any{m}},
			"timestamps": map[string]any{
				"det": []any{te - 0.01}, "motor": []any{te - 0.02}, "motor_setpoint": []any{te - 0.03},
			},
		}})
	}
	docs = append(docs, catalog.Document{Name: "stop", Doc: map[string]any{
		"uid": uuid4(r), "run_start": uid, "time": t + 12, "exit_status": "success", "reason": "",
		"num_events": map[string]any{"primary": int64(10)},
	}})
	return docs, uid
}

// Fixed uids of the large runs.
const (
	scalarUID = "b1000000-0000-4000-8000-000000000001"
	arrayUID  = "b2000000-0000-4000-8000-000000000002"
	rawUID    = "b3000000-0000-4000-8000-000000000003"
	gzipUID   = "b4000000-0000-4000-8000-000000000004"
)

// genScalarRun writes a run of n events with two scalar float fields x and y in event_page
// documents of page rows each (page 1: as suitcase-msgpack writes a run fed one event at a
// time). x of event i (from 0) is i/2, so that a reader can check the sum.
func genScalarRun(path string, n, page int) error {
	return writeFile(path, func(w *msgpack.Writer) error {
		desc := scalarUID + "-d1"
		if err := w.Write("start", map[string]any{"uid": scalarUID, "time": t0, "scan_id": int64(1), "plan_name": "count",
			"detectors": []any{"x", "y"}, "num_points": int64(n)}); err != nil {
			return err
		}
		if err := w.Write("descriptor", map[string]any{"uid": desc, "run_start": scalarUID, "time": t0, "name": "primary",
			"data_keys": map[string]any{
				"x": map[string]any{"dtype": "number", "shape": []any{}, "source": "SIM:x"},
				"y": map[string]any{"dtype": "number", "shape": []any{}, "source": "SIM:y"}},
			"object_keys": map[string]any{"x": []any{"x"}, "y": []any{"y"}}}); err != nil {
			return err
		}
		for i := 0; i < n; i += page {
			if interrupted.Load() {
				return errInterrupted
			}
			k := min(page, n-i)
			tl, ul, sl, xl, yl, txl, tyl := make([]any, k), make([]any, k), make([]any, k), make([]any, k), make([]any, k), make([]any, k), make([]any, k)
			for j := range k {
				e := i + j
				t := t0 + float64(e)*0.01
				tl[j], sl[j] = t, int64(e+1)
				ul[j] = fmt.Sprintf("%08x-0000-4000-8000-%012x", e, e)
				xl[j], yl[j] = float64(e)*0.5, float64(e)*-0.25+1e-3
				txl[j], tyl[j] = t-0.001, t-0.002
			}
			page := map[string]any{"time": tl, "uid": ul, "seq_num": sl, "descriptor": desc, "filled": map[string]any{},
				"data": map[string]any{"x": xl, "y": yl}, "timestamps": map[string]any{"x": txl, "y": tyl}}
			if err := w.Write("event_page", page); err != nil {
				return err
			}
		}
		return w.Write("stop", map[string]any{"uid": scalarUID + "-stop", "run_start": scalarUID, "time": t0 + float64(n)*0.01 + 1,
			"exit_status": "success", "num_events": map[string]any{"primary": int64(n)}})
	})
}

// genArrayRun writes a run of n events whose field "spectrum" is a 1-D float64 array of width
// elements stored as msgpack-numpy (an MCA spectrum, say), plus a scalar "i0", in event_page
// documents of page rows. Element 0 of event k's spectrum is k; element j>0 is j/1000.
func genArrayRun(path string, n, width, page int) error {
	return writeFile(path, func(w *msgpack.Writer) error {
		desc := arrayUID + "-d1"
		if err := w.Write("start", map[string]any{"uid": arrayUID, "time": t0, "scan_id": int64(2), "plan_name": "count",
			"detectors": []any{"mca"}, "num_points": int64(n)}); err != nil {
			return err
		}
		if err := w.Write("descriptor", map[string]any{"uid": desc, "run_start": arrayUID, "time": t0, "name": "primary",
			"data_keys": map[string]any{
				"spectrum": map[string]any{"dtype": "array", "shape": []any{int64(width)}, "source": "PV:XF:99ID-ES{MCA}Spectrum", "dtype_numpy": "<f8"},
				"i0":       map[string]any{"dtype": "number", "shape": []any{}, "source": "PV:XF:99ID-BI{I0}"}},
			"object_keys": map[string]any{"mca": []any{"spectrum"}, "i0": []any{"i0"}}}); err != nil {
			return err
		}
		for i := 0; i < n; i += page {
			if interrupted.Load() {
				return errInterrupted
			}
			k := min(page, n-i)
			tl, ul, sl, al, il, tal, til := make([]any, k), make([]any, k), make([]any, k), make([]any, k), make([]any, k), make([]any, k), make([]any, k)
			for j := range k {
				e := i + j
				data := make([]byte, 8*width)
				binary.LittleEndian.PutUint64(data, math.Float64bits(float64(e)))
				for x := 1; x < width; x++ {
					binary.LittleEndian.PutUint64(data[8*x:], math.Float64bits(float64(x)/1000))
				}
				t := t0 + float64(e)*0.1
				tl[j], sl[j] = t, int64(e+1)
				ul[j] = fmt.Sprintf("%08x-0000-4000-8000-%012x", e, e)
				al[j] = &catalog.NDArray{Dtype: "<f8", Shape: []int{width}, Data: data}
				il[j] = 1e5 + float64(e%100)
				tal[j], til[j] = t-0.001, t-0.002
			}
			page := map[string]any{"time": tl, "uid": ul, "seq_num": sl, "descriptor": desc, "filled": map[string]any{},
				"data": map[string]any{"spectrum": al, "i0": il}, "timestamps": map[string]any{"spectrum": tal, "i0": til}}
			if err := w.Write("event_page", page); err != nil {
				return err
			}
		}
		return w.Write("stop", map[string]any{"uid": arrayUID + "-stop", "run_start": arrayUID, "time": t0 + float64(n)*0.1 + 1,
			"exit_status": "success", "num_events": map[string]any{"primary": int64(n)}})
	})
}

// genDetectorRun writes a run whose field cam_image is external: n frames of an AD_HDF5 file
// (dataset /entry/data/data, one frame per point) named by a resource and a datum per event,
// as ophyd's area detector plugins write them.
func genDetectorRun(path, uid, root, rel string, n, side int) error {
	return writeFile(path, func(w *msgpack.Writer) error {
		desc, res := uid+"-d1", uid+"-r1"
		if err := w.Write("start", map[string]any{"uid": uid, "time": t0, "scan_id": int64(3), "plan_name": "count",
			"detectors": []any{"cam"}, "num_points": int64(n)}); err != nil {
			return err
		}
		if err := w.Write("descriptor", map[string]any{"uid": desc, "run_start": uid, "time": t0, "name": "primary",
			"data_keys": map[string]any{
				"cam_image": map[string]any{"dtype": "array", "shape": []any{int64(side), int64(side)}, "source": "PV:CAM:image1",
					"external": "FILESTORE:", "dtype_numpy": "<u2"},
				"cam_total": map[string]any{"dtype": "number", "shape": []any{}, "source": "PV:CAM:Stats1:Total_RBV"}},
			"object_keys": map[string]any{"cam": []any{"cam_image", "cam_total"}}}); err != nil {
			return err
		}
		if err := w.Write("resource", map[string]any{"uid": res, "spec": "AD_HDF5", "root": root, "resource_path": rel,
			"resource_kwargs": map[string]any{"frame_per_point": int64(1)}, "path_semantics": "posix", "run_start": uid}); err != nil {
			return err
		}
		ids, points := make([]any, n), make([]any, n)
		for i := range n {
			ids[i], points[i] = fmt.Sprintf("%s/%d", res, i), int64(i)
		}
		if err := w.Write("datum_page", map[string]any{"resource": res, "datum_id": ids,
			"datum_kwargs": map[string]any{"point_number": points}}); err != nil {
			return err
		}
		for i := range n {
			t := t0 + float64(i)*0.1
			if err := w.Write("event", map[string]any{"uid": fmt.Sprintf("%s-e%d", uid, i), "time": t, "seq_num": int64(i + 1),
				"descriptor": desc, "filled": map[string]any{"cam_image": false},
				"data":       map[string]any{"cam_image": ids[i], "cam_total": float64(i)},
				"timestamps": map[string]any{"cam_image": t, "cam_total": t}}); err != nil {
				return err
			}
		}
		return w.Write("stop", map[string]any{"uid": uid + "-stop", "run_start": uid, "time": t0 + float64(n)*0.1 + 1,
			"exit_status": "success", "num_events": map[string]any{"primary": int64(n)}})
	})
}

func writeFile(path string, fn func(*msgpack.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := fn(msgpack.NewWriter(bw)); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
