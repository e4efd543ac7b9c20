package table

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
)

// TestWideFromMsgpack: wide array fields stored msgpack-numpy style in run files, decoded into
// cache files through the paths big pages take (pieces of a MiB and more written in the
// background, the catalog's pages dropped behind the scan), read exactly as numpy reads the
// documents (testdata/widecases.py computes the expected arrays with numpy from what it
// wrote): payloads of the field's dtype and of others (float32, big-endian, int32, uint16),
// one array per row and one per page, payloads at odd offsets, page arrays whose lengths lie
// (their pages are skipped), a row array whose length lies (the field fails) and a file cut
// in the middle of its last page.
func TestWideFromMsgpack(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import numpy, msgpack").Run(); err != nil {
		t.Skipf("%s lacks numpy or msgpack: %v", py, err)
	}
	dir := t.TempDir()
	const width = 1536 // a page of 100 rows is 1.2 MB
	if out, err := exec.Command(py, "testdata/widecases.py", dir, "1536").CombinedOutput(); err != nil {
		t.Fatalf("widecases.py: %v\n%s", err, out)
	}
	for i, name := range []string{"equal", "unequal", "lying", "truncated", "lyingrow"} {
		t.Run(name, func(t *testing.T) {
			logs := &bytes.Buffer{}
			log := slog.New(slog.NewTextHandler(logs, nil))
			cat, err := msgpack.Open([]string{filepath.Join(dir, name)}, msgpack.Options{Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			run, err := cat.Run(context.Background(), "f0000000-0000-4000-8000-00000000000"+string(rune('1'+i)))
			if err != nil {
				t.Fatal(err)
			}
			st := tempStore(t)
			cfg := &Config{Logger: log, Stats: &Stats{}, Store: st}
			descs, _ := run.Descriptors(context.Background())
			s := NewStream(cfg, run, NewExternals(run, nil), "primary", descs, nil, "v1")
			tb, err := s.Table(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Stats.CacheStores.Load() != 1 {
				t.Fatalf("the table was not stored: %s", logs)
			}
			if name == "lyingrow" {
				// Row 7 of the second page cannot be read as an array: the field fails, with
				// a message that names the row and does not carry the row's bytes.
				_, err := tb.Fields["spec"].NPY(context.Background())
				if err == nil || !strings.Contains(err.Error(), "row 107") || len(err.Error()) > 300 {
					t.Errorf("field with a short row: %.500v", err)
				}
				return
			}
			sameAsNumpy(t, tb, filepath.Join(dir, name+".expect.npy"), width)
			switch name {
			case "lying":
				if n := strings.Count(logs.String(), "skipping bad document"); n != 2 {
					t.Errorf("%d documents skipped, want 2:\n%s", n, logs)
				}
			case "truncated":
				if !strings.Contains(logs.String(), "incomplete last document") {
					t.Errorf("the cut page was not logged:\n%s", logs)
				}
			}
		})
	}
}

// tempStore opens a cache store in a temporary directory, closed when the test ends.
func tempStore(t *testing.T) *cache.Store {
	t.Helper()
	st, err := cache.Open(cache.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// sameAsNumpy checks the spec field of tb, width float64 wide, against numpy's .npy at path:
// the same header, data bytes and rows.
func sameAsNumpy(t *testing.T, tb *Table, path string, width int) {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wantHdr, wantData := npyParts(t, want)
	hdr, data := npyOf(t, tb.Fields["spec"])
	if !sameHeader(hdr, wantHdr) {
		t.Errorf("header %s, numpy's %s", hdr, wantHdr)
	}
	if !bytes.Equal(data, wantData) {
		t.Errorf("%d data bytes differ from numpy's %d (first difference at byte %d)", len(data), len(wantData), firstDiff(data, wantData))
	}
	if rows := len(wantData) / (8 * width); tb.Rows != rows {
		t.Errorf("%d rows, numpy has %d", tb.Rows, rows)
	}
}

// npyParts splits a .npy written by numpy into its header dict and data.
func npyParts(t *testing.T, b []byte) (string, []byte) {
	t.Helper()
	if len(b) < 10 || string(b[:6]) != "\x93NUMPY" || b[6] != 1 {
		t.Fatalf("not a version 1 .npy")
	}
	hl := 10 + int(binary.LittleEndian.Uint16(b[8:]))
	return strings.TrimSpace(string(b[10:hl])), b[hl:]
}

// sameHeader compares two .npy header dicts but for spacing.
func sameHeader(a, b string) bool {
	norm := func(s string) string { return strings.NewReplacer(" ", "", ",}", "}").Replace(s) }
	return norm(a) == norm(b)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestSpareBudget: the spare buffers of a scan's file sinks share one budget; a sink that
// cannot have one writes the plain way (spare returns nil), and released spares go back.
func TestSpareBudget(t *testing.T) {
	budget := int64(5 << 20)
	a := &fileSink{writing: -1, spareBudget: &budget}
	b := &fileSink{writing: -1, spareBudget: &budget}
	if a.spare(sinkBuffer-1) != nil {
		t.Errorf("a spare for a small piece")
	}
	if buf := a.spare(3 << 20); len(buf) != 3<<20 {
		t.Fatalf("first spare: %d bytes", len(buf))
	}
	if b.spare(3<<20) != nil {
		t.Errorf("a spare beyond the budget")
	}
	if budget != 2<<20 {
		t.Errorf("budget %d after one spare", budget)
	}
	a.releaseSpares()
	if budget != 5<<20 {
		t.Errorf("budget %d after the release", budget)
	}
	if buf := b.spare(3 << 20); len(buf) != 3<<20 {
		t.Errorf("no spare after the release")
	}
	var none *fileSink
	if none.spare(4<<20) != nil {
		t.Errorf("a nil sink has a spare")
	}
}

// TestWideOnePass: the first read of a big run file as one pass (Stream.Prescan behind the
// index pass, catalog.EarlyRun): the stream is decoded while the run is being indexed, its
// entry committed once the finished run is found to have the same stream, and the Table of
// the finished run comes from that entry, byte for byte numpy's reading of the documents
// (testdata/widecases.py). Cases: the field's and other dtypes, lying pages skipped, a page cut
// in the middle with the stop after it (a gap the pass jumps), two descriptors of the stream
// merged in time, and a descriptor that comes after the first big page (the prescan's stream
// is then not the run's: nothing of it is committed, and the Table scans as before). A file
// cut at its end has no stop: no early run, the table as before. A row that cannot be read
// fails the field with the same message.
func TestWideOnePass(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import numpy, msgpack").Run(); err != nil {
		t.Skipf("%s lacks numpy or msgpack: %v", py, err)
	}
	dir := t.TempDir()
	const width = 1536 // a page of 100 rows is 1.2 MB: more than bigDocument
	if out, err := exec.Command(py, "testdata/widecases.py", dir, "1536").CombinedOutput(); err != nil {
		t.Fatalf("widecases.py: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name   string
		uid    int
		early  bool // the pass offers an early run (the file ends with a stop)
		stored bool // the prescan's entry is the table
	}{
		{"equal", 1, true, true}, {"unequal", 2, true, true}, {"lying", 3, true, true},
		{"truncated", 4, false, false}, {"lyingrow", 5, true, true}, {"several", 6, true, true},
		{"late", 7, true, false}, {"cutmid", 8, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &bytes.Buffer{}
			log := slog.New(slog.NewTextHandler(logs, nil))
			cat, err := msgpack.Open([]string{filepath.Join(dir, tc.name)}, msgpack.Options{Logger: log, EarlyMin: 1})
			if err != nil {
				t.Fatal(err)
			}
			st := tempStore(t)
			cfg := &Config{Logger: log, Stats: &Stats{}, Store: st}
			bg := context.Background()
			// As package nodes does: the stream as indexed so far, prescanned, gated by the
			// stream of the finished run. The file cut at its end has no stop: the pass
			// offers no early run, and the table scans after it.
			done := make(chan struct{})
			var final *Stream
			early := 0
			ctx := catalog.WithEarlyRun(bg, func(run catalog.Run, desc string) {
				early++
				v, err := run.(catalog.Versioner).Version(bg)
				if err != nil {
					t.Error(err)
					return
				}
				descs, _ := run.Descriptors(bg)
				if desc != "d1" || len(descs) == 0 {
					t.Errorf("early run at descriptor %q with %d descriptors", desc, len(descs))
				}
				NewStream(cfg, run, nil, "primary", descs, nil, v).Prescan(func() *Stream { <-done; return final })
			})
			run, err := cat.Run(ctx, fmt.Sprintf("f0000000-0000-4000-8000-%012d", tc.uid))
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1}[tc.early]; early != want {
				t.Fatalf("early run offered %d times, want %d", early, want)
			}
			v, err := run.(catalog.Versioner).Version(bg)
			if err != nil {
				t.Fatal(err)
			}
			descs, _ := run.Descriptors(bg)
			final = NewStream(cfg, run, NewExternals(run, nil), "primary", descs, nil, v)
			close(done)
			tb, err := final.Table(bg)
			if err != nil {
				t.Fatal(err)
			}
			prescans, stored := int64(0), int64(0)
			if tc.early {
				prescans = 1
			}
			if tc.stored {
				stored = 1
			}
			if s := cfg.Stats; s.Prescans.Load() != prescans || s.PrescansStored.Load() != stored || s.CacheHits.Load() != stored || s.Scans.Load() != 1-stored {
				t.Errorf("prescans %d, stored %d, cache hits %d, scans %d; want %d, %d, %d, %d\n%s", s.Prescans.Load(),
					s.PrescansStored.Load(), s.CacheHits.Load(), s.Scans.Load(), prescans, stored, stored, 1-stored, logs)
			}
			if tc.name == "lyingrow" {
				_, err := tb.Fields["spec"].NPY(bg)
				if err == nil || !strings.Contains(err.Error(), "row 107") || len(err.Error()) > 300 {
					t.Errorf("field with a short row: %.500v", err)
				}
				return
			}
			sameAsNumpy(t, tb, filepath.Join(dir, tc.name+".expect.npy"), width)
			switch tc.name {
			case "lying":
				if n := strings.Count(logs.String(), "skipping bad document"); n != 2 {
					t.Errorf("%d documents skipped, want 2:\n%s", n, logs)
				}
			case "truncated":
				if n := strings.Count(logs.String(), "incomplete last document"); n != 1 {
					t.Errorf("the cut page was logged %d times, want once:\n%s", n, logs)
				}
			case "cutmid":
				if n := strings.Count(logs.String(), "skipping bad document"); n != 1 {
					t.Errorf("the cut page was logged %d times, want once:\n%s", n, logs)
				}
			}
		})
	}
}
