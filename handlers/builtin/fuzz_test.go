package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
)

// fuzzSpecs are the built-in specs FuzzHandlers drives.
var fuzzSpecs = []string{"AD_HDF5", "AD_HDF5_SWMR", "TPX_HDF5", "AD_EIGER", "XSP3", "AD_TIFF", "NPY_SEQ", "npy", "npy_FRAMEWISE"}

// FuzzHandlers drives every built-in handler through the Filler with random resource paths
// (under the allowed root, or escaping it), resource_kwargs and datum_kwargs over small real
// files (gen_hostile_small.py) and FIFOs. Nothing may panic or hang (each call is bounded by
// the Filler's deadline, and a timeout fails the target: nothing here should block), no read
// may return the secret outside the root, and every array returned must be consistent with
// its dtype and shape (the Filler checks). Describe, Read, ReadInto and Files all run.
//
//	go test -fuzz FuzzHandlers -fuzztime 5m ./handlers/builtin
func FuzzHandlers(f *testing.F) {
	seeds := []struct {
		spec     byte
		path     string
		rkw, dkw string
	}{
		{0, "ad.h5", `{"frame_per_point": 2}`, `{"point_number": 1}`},
		{2, "tpx.h5", `{"frame_per_point": 1}`, `{"point_number": 3}`},
		{3, "eiger", `{"images_per_file": 2}`, `{"seq_id": 1, "frame_num": 1}`},
		{4, "xsp3.h5", `{}`, `{"frame": 2, "channel": 2}`},
		{5, "", `{"template": "%s%s_%6.6d.tiff", "filename": "img", "frame_per_point": 3}`, `{"point_number": 1}`},
		{5, "sub", `{"template": "%s%s_%6.6d.tiff", "filename": "../../secret/img", "frame_per_point": 1}`, `{"point_number": 0}`},
		{5, "", `{"template": "%s%s_%6.6d.tiff", "filename": "img", "frame_per_point": 1099511627776}`, `{"point_number": 0}`},
		{6, "seq", `{}`, `{"index": 1}`},
		{6, "sub/x", `{}`, `{"index": "dir/../../../secret/secret"}`},
		{7, "whole.npy", `{}`, `{}`},
		{7, "fifo.npy", `{}`, `{}`},
		{8, "big.npy", `{}`, `{"frame_no": -1}`},
		{0, "fifo.h5", `{}`, `{"point_number": 0}`},
		{0, "ad.h5", `{"frame_per_point": 4}`, `{"point_number": 4611686018427387904}`},
		{0, "../secret/secret.npy", `{}`, `{"point_number": 0}`},
	}
	for _, s := range seeds {
		f.Add(s.spec, s.path, s.rkw, s.dkw)
	}
	dir := smallFiles(f)
	ok := filepath.Join(dir, "ok")
	f.Fuzz(func(t *testing.T, spec byte, path, rkwJSON, dkwJSON string) {
		rkw, err1 := kwargs(rkwJSON)
		dkw, err2 := kwargs(dkwJSON)
		if err1 != nil || err2 != nil {
			return
		}
		fl := newFuzzFiller(t, ok)
		defer fl.Close()
		res := &catalog.Resource{UID: "r", Spec: fuzzSpecs[int(spec)%len(fuzzSpecs)], Root: ok, ResourcePath: path, ResourceKwargs: rkw}
		ctx := context.Background()
		check := func(what string, err error) {
			if errors.Is(err, handlers.ErrTimeout) {
				t.Fatalf("%s %s %q %s %s: %v", what, res.Spec, path, rkwJSON, dkwJSON, err)
			}
		}
		dtype, shape, err := fl.Describe(ctx, res, dkw)
		check("describe", err)
		a, err := fl.Read(ctx, res, "r/0", dkw)
		check("read", err)
		if err == nil && bytes.Contains(a.Data, []byte{0x92, 0x10}) {
			t.Fatalf("read %s %q %s %s: the secret outside the root", res.Spec, path, rkwJSON, dkwJSON)
		}
		if dtype != "" {
			if n, err := handlers.ArrayBytes(shape, 8); err == nil && n <= 1<<20 {
				dst := make([]byte, n)
				err = fl.ReadInto(ctx, res, "r/1", dkw, dst, "<f8", shape)
				check("read into", err)
			}
		}
		_, err = fl.Files(ctx, res, []map[string]any{dkw})
		check("files", err)
	})
}

func newFuzzFiller(t *testing.T, root string) *handlers.Filler {
	reg := handlers.NewRegistry()
	if err := Register(reg, Options{}); err != nil {
		t.Fatal(err)
	}
	return handlers.NewFiller(handlers.FillerOptions{Registry: reg, AllowedRoots: []string{root}, Retry: time.Millisecond,
		CallTimeout: 5 * time.Second, NegativeTTL: -1})
}

// kwargs decodes a JSON object as documents decode: integral numbers as int64.
func kwargs(s string) (map[string]any, error) {
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	for k, v := range m {
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				m[k] = i
			} else if f, err := n.Float64(); err == nil && !math.IsNaN(f) {
				m[k] = f
			} else {
				m[k] = n.String()
			}
		}
	}
	return m, nil
}
