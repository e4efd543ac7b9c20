package main

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"

	"gonum.org/v1/hdf5"

	"github.com/brokerfs/brokerfs/catalog"
)

// The demo's area-detector run: 8 points of a 64x48 uint16 camera, two frames per point
// (frame_per_point=2), written as area detector's HDF5 plugin does (/entry/data/data) into
// DIR/detector/. Its resource says the files live under demoOldRoot, where the beamline wrote
// them, so reading them needs --root-map demoOldRoot=DIR/detector — as for data copied home.

const demoOldRoot = "/nsls2/data/demo/proposals/2026-3/detector"

const (
	demoPoints = 8
	demoFPP    = 2
	demoY      = 48
	demoX      = 64
)

// demoDetector writes the HDF5 file under dir/detector and returns the run's documents.
func demoDetector(rng *rand.Rand, scanID int64, t float64, dir string) ([]catalog.Document, error) {
	st := start(rng, scanID, t, "count", m{"detectors": []any{"cam"}, "num_points": int64(demoPoints)})
	uid := st.Doc["uid"].(string)
	resUID := demoUID(rng)
	rel := "2026/11/23/" + resUID[:8] + "_000000.h5"
	if err := writeDemoFrames(filepath.Join(dir, "detector", rel), rng); err != nil {
		return nil, err
	}
	desc := descriptor(rng, uid, t+1, "primary", m{
		"cam_image": m{"dtype": "array", "shape": []any{int64(demoY), int64(demoX)}, "source": "PV:CAM:image1",
			"external": "FILESYSTEM:", "dtype_numpy": "<u2"},
		"cam_stats_total": key("number", "PV:CAM:Stats1:Total_RBV"),
	}, m{})
	docs := []catalog.Document{st, desc,
		{Name: "resource", Doc: m{"uid": resUID, "spec": "AD_HDF5", "root": demoOldRoot, "resource_path": rel,
			"resource_kwargs": m{"frame_per_point": int64(demoFPP)}, "path_semantics": "posix", "run_start": uid}},
	}
	var ids, points []any
	for i := 0; i < demoPoints; i++ {
		ids = append(ids, fmt.Sprintf("%s/%d", resUID, i))
		points = append(points, int64(i))
	}
	docs = append(docs, catalog.Document{Name: "datum_page", Doc: m{"resource": resUID, "datum_id": ids,
		"datum_kwargs": m{"point_number": points}}})
	for i := 0; i < demoPoints; i++ {
		e := event(rng, desc, i+1, t+2+float64(i), m{"cam_image": ids[i], "cam_stats_total": float64(1000 * (i + 1))})
		e.Doc["filled"] = m{"cam_image": false}
		docs = append(docs, e)
	}
	return append(docs, stop(rng, uid, t+12, "success", m{"primary": int64(demoPoints)})), nil
}

// writeDemoFrames writes (points*fpp, y, x) uint16 frames: a spot that moves across the
// camera over noise, chunked one frame per chunk and gzip-compressed as AD often is.
func writeDemoFrames(path string, rng *rand.Rand) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	n := demoPoints * demoFPP
	data := make([]uint16, n*demoY*demoX)
	for f := 0; f < n; f++ {
		cx, cy := 8+float64(f)*3, 10+float64(f)*1.5
		for y := 0; y < demoY; y++ {
			for x := 0; x < demoX; x++ {
				d2 := (float64(x)-cx)*(float64(x)-cx) + (float64(y)-cy)*(float64(y)-cy)
				data[(f*demoY+y)*demoX+x] = uint16(100 + rng.Intn(20) + int(4000*math.Exp(-d2/18)))
			}
		}
	}
	file, err := hdf5.CreateFile(path, hdf5.F_ACC_TRUNC)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer file.Close()
	entry, err := file.CreateGroup("entry")
	if err != nil {
		return err
	}
	defer entry.Close()
	grp, err := entry.CreateGroup("data")
	if err != nil {
		return err
	}
	defer grp.Close()
	space, err := hdf5.CreateSimpleDataspace([]uint{uint(n), demoY, demoX}, nil)
	if err != nil {
		return err
	}
	defer space.Close()
	dcpl, err := hdf5.NewPropList(hdf5.P_DATASET_CREATE)
	if err != nil {
		return err
	}
	defer dcpl.Close()
	if err := dcpl.SetChunk([]uint{1, demoY, demoX}); err != nil {
		return err
	}
	if err := dcpl.SetDeflate(hdf5.DefaultCompression); err != nil {
		return err
	}
	ds, err := grp.CreateDatasetWith("data", hdf5.T_NATIVE_UINT16, space, dcpl)
	if err != nil {
		return err
	}
	defer ds.Close()
	return ds.Write(&data)
}
