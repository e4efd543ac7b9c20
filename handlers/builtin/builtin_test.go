package builtin

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/handlers"
	"github.com/brokerfs/brokerfs/handlers/external"
)

func TestRegister(t *testing.T) {
	r := handlers.NewRegistry()
	if err := Register(r, Options{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"AD_EIGER", "AD_HDF5", "AD_HDF5_SWMR", "AD_TIFF", "NPY_SEQ", "TPX_HDF5", "XSP3", "npy", "npy_FRAMEWISE"}
	if got := r.Specs(); !reflect.DeepEqual(got, want) {
		t.Errorf("specs %v, want %v", got, want)
	}
	// Registering the set again is refused: Register does not overwrite.
	if err := Register(r, Options{}); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("second Register: %v", err)
	}
	_, err := r.Open(context.Background(), "NO_SUCH_SPEC", "/x", nil)
	if !errors.Is(err, handlers.ErrUnknownSpec) || !strings.Contains(err.Error(), "NO_SUCH_SPEC") {
		t.Errorf("unknown spec: %v", err)
	}
}

// TestExternalReplaces checks that an external handler for a built-in spec replaces it
// and one for a new spec is added.
func TestExternalReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.npy")
	if out, err := exec.Command("/usr/bin/python3", "-c",
		"import sys, numpy as np; np.save(sys.argv[1], np.arange(6, dtype='<i4').reshape(2, 3))", path).CombinedOutput(); err != nil {
		t.Fatalf("python3 with numpy: %v %s", err, out)
	}
	cmd := []string{"/usr/bin/python3", filepath.Join("..", "testdata", "external_handler.py")}
	r := handlers.NewRegistry()
	err := Register(r, Options{External: []External{
		{Spec: "AD_HDF5", Command: cmd},
		{Spec: "MY_SPEC", Command: cmd, Options: external.Options{Serve: true}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, spec := range []string{"AD_HDF5", "MY_SPEC"} {
		h, err := r.Open(ctx, spec, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := h.Read(ctx, map[string]any{"index": int64(1)})
		if err != nil || a.Dtype != "<i4" || !reflect.DeepEqual(a.Shape, []int{3}) || a.Data[0] != 3 {
			t.Errorf("%s: %+v %v", spec, a, err)
		}
		h.Close()
	}
	err = Register(handlers.NewRegistry(), Options{External: []External{{Spec: "A", Command: cmd}, {Spec: "A", Command: cmd}}})
	if err == nil {
		t.Error("one spec twice: no error")
	}
}
