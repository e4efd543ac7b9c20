package hdf5

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
)

// hostileFiles makes handlers/testdata/gen_hostile.py's files and the FIFOs it names.
func hostileFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command(python, filepath.Join("..", "testdata", "gen_hostile.py"), dir).CombinedOutput(); err != nil {
		t.Fatalf("gen_hostile.py: %v\n%s", err, out)
	}
	for _, f := range []string{"ok/fifo.h5", "ok/fifo_target.h5", "ok/fifo.raw"} {
		if err := syscall.Mkfifo(filepath.Join(dir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func adFiller(roots []string) *handlers.Filler {
	reg := handlers.NewRegistry()
	reg.Register(SpecAD, NewAD(Options{}))
	return handlers.NewFiller(handlers.FillerOptions{Registry: reg, AllowedRoots: roots, Retry: time.Millisecond,
		CallTimeout: 10 * time.Second, NegativeTTL: -1})
}

// readAD reads point 0 of an AD_HDF5 resource over path, failing the test if it takes
// longer than a few seconds (a hang).
func readAD(t *testing.T, f *handlers.Filler, path string, kw map[string]any) (*catalog.NDArray, error) {
	t.Helper()
	res := &catalog.Resource{UID: path, Spec: SpecAD, ResourcePath: path, ResourceKwargs: map[string]any{"frame_per_point": int64(1)}}
	if kw == nil {
		kw = map[string]any{"point_number": int64(0)}
	}
	start := time.Now()
	a, err := f.Read(context.Background(), res, path+"/0", kw)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%s: took %v", filepath.Base(path), d)
	}
	return a, err
}

// TestHostileHDF5 covers issue 9 item 2 for HDF5: what libhdf5 opens by itself (external
// links, external raw storage, virtual dataset sources) stays inside --allowed-roots, and
// item 3: a FIFO anywhere on the way fails at once instead of blocking.
func TestHostileHDF5(t *testing.T) {
	dir := hostileFiles(t)
	ok := filepath.Join(dir, "ok")
	t.Chdir(ok) // libhdf5 resolves relative external storage names against the working directory
	guarded := adFiller([]string{ok})
	defer guarded.Close()
	open := adFiller(nil)
	defer open.Close()

	// Allowed: the same mechanisms inside the root read what h5py reads.
	for name, want := range map[string][]byte{
		"good.h5":     {0, 1, 2, 3},
		"elink_ok.h5": {7, 7, 7, 7},
		"vds_ok.h5":   {7, 7, 7, 7},
		"ext_ok.h5":   {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
	} {
		a, err := readAD(t, guarded, filepath.Join(ok, name), nil)
		if err != nil || string(a.Data) != string(want) {
			t.Errorf("%s: %v %v, want %v", name, a, err, want)
		}
	}
	// Refused with roots; the secret is what the file serves without them, so the refusal
	// is not an accident of a broken file.
	for name, secret := range map[string]byte{
		"elink_abs.h5":   42,
		"elink_rel.h5":   42,
		"elink_group.h5": 42,
		"ext_abs.h5":     'S',
		"ext_rel.h5":     'S', // ../secret/passwd from the working directory
		"vds.h5":         42,
		"vds_nested.h5":  'S',
		"vds_self.h5":    'S',
	} {
		path := filepath.Join(ok, name)
		a, err := readAD(t, guarded, path, nil)
		if !errors.Is(err, handlers.ErrNotAllowed) {
			t.Errorf("%s with allowed roots: %v %v, want ErrNotAllowed", name, a, err)
		}
		a, err = readAD(t, open, path, nil)
		if err != nil || len(a.Data) == 0 || a.Data[0] != secret {
			t.Errorf("%s without allowed roots: %v %v, want the secret %d (the test file is broken)", name, a, err, secret)
		}
	}
	// FIFOs: the resource itself, a link target, raw storage; with or without roots.
	for _, f := range []*handlers.Filler{guarded, open} {
		for _, name := range []string{"fifo.h5", "elink_fifo.h5", "ext_fifo.h5"} {
			if a, err := readAD(t, f, filepath.Join(ok, name), nil); !errors.Is(err, handlers.ErrNotRegular) {
				t.Errorf("%s: %v %v, want ErrNotRegular", name, a, err)
			}
		}
	}
	// A resource path through a symlinked directory out of the root.
	os.Symlink(filepath.Join(dir, "secret"), filepath.Join(ok, "link"))
	if _, err := readAD(t, guarded, filepath.Join(ok, "link", "s.h5"), nil); !errors.Is(err, handlers.ErrNotAllowed) {
		t.Errorf("symlinked directory: %v", err)
	}
}

// TestPointOverflow covers issue 9 item 4: point_number * frame_per_point must not wrap
// around to frame 0.
func TestPointOverflow(t *testing.T) {
	dir := hostileFiles(t)
	reg := handlers.NewRegistry()
	reg.Register(SpecAD, NewAD(Options{}))
	f := handlers.NewFiller(handlers.FillerOptions{Registry: reg, Retry: time.Millisecond})
	defer f.Close()
	path := filepath.Join(dir, "ok", "good.h5")
	for _, tc := range []struct {
		pn, fpp int64
		ok      bool
	}{
		{0, 4, true}, {1 << 62, 4, false}, {1 << 61, 8, false}, {math.MaxInt64, 1, false}, {math.MaxInt64 / 2, 2, false},
		{-1, 1, false},
	} {
		res := &catalog.Resource{UID: "r", Spec: SpecAD, ResourcePath: path, ResourceKwargs: map[string]any{"frame_per_point": tc.fpp}}
		res.UID = path + string(rune(tc.fpp))
		a, err := f.Read(context.Background(), res, fmt.Sprint(tc.pn, tc.fpp), map[string]any{"point_number": tc.pn})
		if (err == nil) != tc.ok {
			t.Errorf("pn %d fpp %d: %v %v", tc.pn, tc.fpp, a, err)
		}
		if _, _, err := f.Describe(context.Background(), res, map[string]any{"point_number": tc.pn}); (err == nil) != tc.ok {
			t.Errorf("describe pn %d fpp %d: %v", tc.pn, tc.fpp, err)
		}
	}
}
