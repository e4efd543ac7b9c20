package nodes

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
	"github.com/brokerfs/brokerfs/table"
)

// writeWideRun writes a run file of one descriptor, "primary", whose field img is a row of
// width floats, all k in row k, in pages of 4 rows (1.28 MB: big events); stop when finished.
func writeWideRun(t *testing.T, path, uid string, pages int, finished bool) {
	t.Helper()
	const width, rows = 40_000, 4
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w := msgpack.NewWriter(bw)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	type m = map[string]any
	must(w.Write("start", m{"uid": uid, "time": 1.0}))
	must(w.Write("descriptor", m{"uid": uid + "-d", "run_start": uid, "time": 1.0, "name": "primary", "data_keys": m{
		"img": m{"dtype": "array", "shape": []any{int64(width)}, "source": "s"}}}))
	row := 0
	for range pages {
		arr := &catalog.NDArray{Dtype: "<f8", Shape: []int{rows, width}, Data: make([]byte, 8*rows*width)}
		var times, seqs []any
		for k := range rows {
			for j := range width {
				binary.LittleEndian.PutUint64(arr.Data[8*(width*k+j):], math.Float64bits(float64(row)))
			}
			times, seqs = append(times, float64(row)), append(seqs, int64(row+1))
			row++
		}
		must(w.Write("event_page", m{"descriptor": uid + "-d", "time": times, "seq_num": seqs, "data": m{"img": arr},
			"timestamps": m{"img": times}}))
	}
	if finished {
		must(w.Write("stop", m{"uid": uid + "-s", "run_start": uid, "time": 2.0, "exit_status": "success"}))
	}
	must(bw.Flush())
	must(f.Close())
}

// TestPrescanBehindIndexPass: the first read of a big finished run's field decodes the
// stream behind the run's index pass (one pass over the file) and serves the entry that
// pass committed: no scan after the run is open. A live run (no stop at the file's end) gets
// no prescan, and its field reads from a scan as before. Values are k in row k.
func TestPrescanBehindIndexPass(t *testing.T) {
	if withoutCache {
		t.Skip("needs the cache")
	}
	for _, finished := range []bool{true, false} {
		t.Run(fmt.Sprint("finished=", finished), func(t *testing.T) {
			dir := t.TempDir()
			uid := "a0000000-0000-4000-8000-000000000001"
			const pages = 6
			writeWideRun(t, filepath.Join(dir, uid+".msgpack"), uid, pages, finished)
			cat, err := msgpack.Open([]string{dir}, msgpack.Options{EarlyMin: 1})
			if err != nil {
				t.Fatal(err)
			}
			stats := &table.Stats{}
			tr := newTree(t, cat, func(c *Config) { c.TableStats = stats })
			descr, shape, data := parseNPY(t, tr.mustRead(uid+"/primary/img.npy"))
			if descr != "<f8" || shape != "24, 40000" {
				t.Fatalf("img.npy: %s %s", descr, shape)
			}
			for i, v := range floats(data) {
				if v != float64(i/40_000) {
					t.Fatalf("element %d is %v, want %d", i, v, i/40_000)
				}
			}
			prescans, stored, scans := int64(1), int64(1), int64(0)
			if !finished {
				prescans, stored, scans = 0, 0, 1
			}
			if stats.Prescans.Load() != prescans || stats.PrescansStored.Load() != stored || stats.Scans.Load() != scans || stats.CacheHits.Load() != stored {
				t.Errorf("prescans %d, stored %d, scans %d, cache hits %d; want %d, %d, %d, %d\n%s", stats.Prescans.Load(),
					stats.PrescansStored.Load(), stats.Scans.Load(), stats.CacheHits.Load(), prescans, stored, scans, stored, tr.logString())
			}
		})
	}
}
