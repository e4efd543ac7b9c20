package external

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/handlers"
)

const python = "/usr/bin/python3"

// stack writes a (4, 3, 5) uint16 stack with numpy (the handler under test reads it with
// numpy too) and returns its path and its values.
func stack(t testing.TB) (string, []byte) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "stack.npy")
	script := `import sys, numpy as np
a = (np.arange(4*3*5, dtype="<u2") * 321).reshape(4, 3, 5)
np.save(sys.argv[1], a)
sys.stdout.buffer.write(a.tobytes())`
	out, err := exec.Command(python, "-c", script, path).Output()
	if err != nil {
		t.Fatalf("python3 with numpy: %v", err)
	}
	return path, out
}

func script() []string {
	return []string{python, filepath.Join("..", "testdata", "external_handler.py")}
}

func open(t *testing.T, o Options, path string, kw map[string]any) handlers.Handler {
	t.Helper()
	o.Spec = "TESTSPEC"
	r := handlers.NewRegistry()
	if err := r.Register("TESTSPEC", New(script(), o)); err != nil {
		t.Fatal(err)
	}
	h, err := r.Open(context.Background(), "TESTSPEC", path, kw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestModes(t *testing.T) {
	path, values := stack(t)
	frame := len(values) / 4
	for _, serve := range []bool{false, true} {
		name := map[bool]string{false: "exec", true: "serve"}[serve]
		t.Run(name, func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "pids")
			h := open(t, Options{Serve: serve, Env: []string{"PIDFILE=" + pidfile}}, path, map[string]any{"frame_per_point": int64(1)})
			ctx := context.Background()
			for i := 0; i < 4; i++ {
				for _, extra := range []map[string]any{{}, {"order": "F"}, {"endian": ">"}} {
					kw := map[string]any{"index": int64(i)}
					for k, v := range extra {
						kw[k] = v
					}
					a, err := h.Read(ctx, kw)
					if err != nil {
						t.Fatal(err)
					}
					if a.Dtype != "<u2" || !reflect.DeepEqual(a.Shape, []int{3, 5}) || !bytes.Equal(a.Data, values[i*frame:(i+1)*frame]) {
						t.Fatalf("index %d %v: %s %v", i, extra, a.Dtype, a.Shape)
					}
				}
			}
			dt, shape, err := h.Describe(ctx, map[string]any{"index": int64(0)})
			if err != nil || dt != "<u2" || !reflect.DeepEqual(shape, []int{3, 5}) {
				t.Errorf("describe: %s %v %v", dt, shape, err)
			}
			// A float kwarg arrives as a float (2.0, not 2): the frame comes back scaled, float64.
			a, err := h.Read(ctx, map[string]any{"index": int64(1), "scale": 2.0})
			if err != nil || a.Dtype != "<f8" {
				t.Errorf("float kwarg: %v %v", a, err)
			}
			files, err := h.Files([]map[string]any{{"index": int64(0)}, {"index": int64(2)}})
			if err != nil || !reflect.DeepEqual(files, []string{path, path + ".0", path + ".2"}) {
				t.Errorf("files: %v %v", files, err)
			}
			pids, _ := os.ReadFile(pidfile)
			n := strings.Count(string(pids), "\n")
			if serve && n != 1 || !serve && n < 10 {
				t.Errorf("%s mode started %d processes", name, n)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	path, _ := stack(t)
	ctx := context.Background()
	for _, serve := range []bool{false, true} {
		name := map[bool]string{false: "exec", true: "serve"}[serve]
		t.Run(name, func(t *testing.T) {
			// A generous timeout for the failures that answer (a loaded machine starts Python
			// slowly), a short one for the program that never does.
			h := open(t, Options{Serve: serve, Timeout: 30 * time.Second}, path, nil)
			hShort := open(t, Options{Serve: serve, Timeout: 2 * time.Second}, path, nil)
			readWith := func(h handlers.Handler, fail string) error {
				_, err := h.Read(ctx, map[string]any{"index": int64(1), "fail": fail})
				return err
			}
			read := func(fail string) error { return readWith(h, fail) }
			err := read("exit")
			if !errors.Is(err, ErrHandler) || !strings.Contains(err.Error(), "boom") || strings.Contains(err.Error(), "noise") ||
				!strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "TESTSPEC") {
				t.Errorf("failing program: %v", err)
			}
			if err := read("json"); !errors.Is(err, ErrHandler) || !strings.Contains(err.Error(), "no such frame 1") {
				t.Errorf("error answer: %v", err)
			}
			if err := read("missing"); !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, ErrHandler) {
				t.Errorf("missing file (exit 66): %v", err)
			}
			if err := read("garbage"); !errors.Is(err, ErrHandler) {
				t.Errorf("garbage: %v", err)
			}
			start := time.Now()
			if err := readWith(hShort, "sleep"); !errors.Is(err, ErrHandler) || !strings.Contains(err.Error(), "timed out") {
				t.Errorf("sleep: %v", err)
			}
			if d := time.Since(start); d > 6*time.Second {
				t.Errorf("timeout took %v", d)
			}
			if serve {
				if err := read("crash"); !errors.Is(err, ErrHandler) || !strings.Contains(err.Error(), "exit status 3") {
					t.Errorf("crash: %v", err)
				}
			}
			// After all that, the handler still reads.
			if _, err := h.Read(ctx, map[string]any{"index": int64(2)}); err != nil {
				t.Errorf("read after failures: %v", err)
			}
		})
	}
	h := open(t, Options{}, path, map[string]any{"no_describe": true})
	dt, shape, err := h.Describe(ctx, map[string]any{"index": int64(0)})
	if err != nil || dt != "<u2" || !reflect.DeepEqual(shape, []int{3, 5}) {
		t.Errorf("describe by reading: %s %v %v", dt, shape, err)
	}
	if files, err := h.Files([]map[string]any{{"index": int64(0)}}); err != nil || !reflect.DeepEqual(files, []string{path}) {
		t.Errorf("files fallback: %v %v", files, err)
	}
	h2 := New([]string{"/nonexistent/handler"}, Options{Spec: "X"})
	hh, _ := h2(ctx, path, nil)
	if _, err := hh.Read(ctx, map[string]any{}); err == nil {
		t.Error("missing program: no error")
	}
}

// TestServeConcurrent reads from many goroutines through one serve-mode process.
func TestServeConcurrent(t *testing.T) {
	path, values := stack(t)
	frame := len(values) / 4
	h := open(t, Options{Serve: true}, path, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				k := (g + i) % 4
				a, err := h.Read(context.Background(), map[string]any{"index": int64(k)})
				if err != nil || !bytes.Equal(a.Data, values[k*frame:(k+1)*frame]) {
					t.Errorf("index %d: %v", k, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if err := h.Close(); err != nil {
		t.Error(err)
	}
	if _, err := h.Read(context.Background(), map[string]any{"index": int64(0)}); !errors.Is(err, errClosed) {
		t.Errorf("after close: %v", err)
	}
}

func TestParseFlag(t *testing.T) {
	for _, c := range []struct {
		in   string
		spec string
		cmd  []string
	}{
		{"FOO=/usr/bin/python3 /opt/h.py", "FOO", []string{"/usr/bin/python3", "/opt/h.py"}},
		{`BAR=prog 'a b' "c \"d\"" e\ f`, "BAR", []string{"prog", "a b", `c "d"`, "e f"}},
		{"X=a=b", "X", []string{"a=b"}},
	} {
		spec, cmd, err := ParseFlag(c.in)
		if err != nil || spec != c.spec || !reflect.DeepEqual(cmd, c.cmd) {
			t.Errorf("ParseFlag(%q) = %q %q %v", c.in, spec, cmd, err)
		}
	}
	for _, bad := range []string{"FOO", "=cmd", "FOO=", "FOO='a", `FOO="a`} {
		if _, _, err := ParseFlag(bad); err == nil {
			t.Errorf("ParseFlag(%q): no error", bad)
		}
	}
}

func TestWriteValue(t *testing.T) {
	var b bytes.Buffer
	v := map[string]any{"i": int64(2), "f": 2.0, "g": 1e21, "s": "x\"y", "l": []any{nil, true, 0.5}, "n": map[string]any{}}
	if err := writeValue(&b, v); err != nil {
		t.Fatal(err)
	}
	want := `{"f":2.0,"g":1e+21,"i":2,"l":[null,true,0.5],"n":{},"s":"x\"y"}`
	if b.String() != want {
		t.Errorf("got  %s\nwant %s", b.String(), want)
	}
	if err := writeValue(&b, &catalog.NDArray{}); err == nil {
		t.Error("NDArray kwarg: no error")
	}
}
