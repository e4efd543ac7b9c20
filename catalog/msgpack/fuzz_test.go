package msgpack

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
)

type bytesFile struct{ *bytes.Reader }

func (bytesFile) Close() error { return nil }

// FuzzScan feeds arbitrary bytes to everything that reads a file: the start reader, the
// index (with and without layouts, which must agree), EventPages (layouts against the general
// decoder), Datums, the generic value decoder and the JSON renderer. Nothing may panic or
// hang, and the fast paths must give what the general decoder gives.
func FuzzScan(f *testing.F) {
	if real, err := os.ReadFile(filepath.Join(realDir, realUID+".msgpack")); err == nil {
		f.Add(real)
		f.Add(real[:len(real)/3])
	}
	for _, docs := range append(catalogtest.Runs(), variedRun()[:120], liveDocs("fuzz", 40)) {
		b := encode(f, docs)
		f.Add(b)
		f.Add(b[:len(b)-5])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkValueDecoders(t, data)
		if _, _, err := readStartAt(bytes.NewReader(data), int64(len(data)), nil); err != nil {
			return
		}
		log := slog.New(slog.DiscardHandler)
		index := func(layouts bool) (*index, error) {
			x := newIndexer("fuzz", bytes.NewReader(data), int64(len(data)), time.Time{}, nil, log)
			x.dec.noLayouts = !layouts
			return x.build()
		}
		ix, err := index(true)
		ixSlow, errSlow := index(false)
		if (err == nil) != (errSlow == nil) {
			t.Fatalf("index with layouts: %v, without: %v", err, errSlow)
		}
		if err != nil {
			return
		}
		if got, want := describeIndex(ix), describeIndex(ixSlow); got != want {
			t.Fatalf("index with layouts:\n%s\nwithout:\n%s", got, want)
		}
		open := func() (readerAt, error) { return bytesFile{bytes.NewReader(data)}, nil }
		fast := &run{path: "fuzz", ix: ix, open: open}
		slow := &run{path: "fuzz", ix: ix, open: open, noLayouts: true}
		for desc := range ix.events {
			for _, fields := range [][]string{nil, {"x"}} {
				for _, rg := range [][2]int{{0, -1}, {3, 7}} {
					if got, want := dumpPages(t, fast, desc, rg[0], rg[1], fields), dumpPages(t, slow, desc, rg[0], rg[1], fields); got != want {
						t.Fatalf("EventPages(%s, %v, %v) with layouts:\n%.2000s\nwithout:\n%.2000s", desc, rg, fields, got, want)
					}
				}
			}
		}
		for res := range ix.datums {
			_ = fast.Datums(context.Background(), res, func(p *catalog.DatumPage) error { return nil })
		}
		_, _ = fast.Stop(context.Background())
	})
}

// describeIndex renders what an index found, for comparisons.
func describeIndex(ix *index) string {
	var b strings.Builder
	fmt.Fprintf(&b, "end %d halt %v stop %v descs %d resources %d\n", ix.end, ix.halt, ix.stop != nil, len(ix.descs), len(ix.resources))
	for _, kind := range []map[string]*stream{ix.events, ix.datums} {
		keys := make([]string, 0, len(kind))
		for k := range kind {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s := kind[k]
			fmt.Fprintf(&b, "%q rows %d end %d cps %v\n", k, s.rows, s.end, s.cps)
		}
	}
	return b.String()
}

// checkValueDecoders runs the generic decoders over data from its first byte.
func checkValueDecoders(t *testing.T, data []byte) {
	end, err := skip(data, 0)
	v, vend, verr := value(data, 0, false, 0)
	js, jend, jerr := appendJSON(nil, data, 0, 0)
	if err == nil && verr == nil && vend != end {
		t.Fatalf("value ends at %d, skip at %d", vend, end)
	}
	if err == nil && jerr == nil && jend != end {
		t.Fatalf("appendJSON ends at %d, skip at %d", jend, end)
	}
	_, _ = v, js
	if len(data) > 0 && isArray(data[0]) {
		if _, pend, perr := packList(data, 0); err == nil && perr == nil && pend != end {
			t.Fatalf("packList ends at %d, skip at %d", pend, end)
		}
	}
	_, _ = io.Discard.Write(js)
}
