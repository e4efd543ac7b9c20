package msgpack

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// TestBigFieldMemory streams one 2 GB field (250,000 single-row pages, each holding an
// 8,000-byte msgpack-numpy array) and checks the process's peak RSS. It writes 2 GB, so it
// runs only with BROKERFS_BIG_TEST=1.
func TestBigFieldMemory(t *testing.T) {
	if os.Getenv("BROKERFS_BIG_TEST") == "" {
		t.Skip("set BROKERFS_BIG_TEST=1 to write and stream a 2 GB file")
	}
	const rows, width = 250_000, 1000
	path := filepath.Join(t.TempDir(), "big.msgpack")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w := NewWriter(bw)
	uid, desc := "big", "big-d"
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Write("start", m{"uid": uid, "time": 1.0}))
	must(w.Write("descriptor", m{"uid": desc, "run_start": uid, "time": 1.0, "data_keys": m{
		"img": m{"dtype": "array", "shape": []any{int64(width)}}}}))
	arr := &catalog.NDArray{Dtype: "<f8", Shape: []int{1, width}, Data: make([]byte, 8*width)}
	page := m{"descriptor": desc, "time": []any{0.0}, "seq_num": []any{int64(0)}, "data": m{"img": arr},
		"timestamps": m{"img": []any{0.0}}}
	for i := range rows {
		binary.LittleEndian.PutUint64(arr.Data, math.Float64bits(float64(i)))
		page["time"].([]any)[0], page["seq_num"].([]any)[0] = float64(i), int64(i+1)
		must(w.Write("event_page", page))
	}
	must(bw.Flush())
	must(f.Close())
	fi, _ := os.Stat(path)

	c, _ := openDir(t, path)
	run := mustRun(t, c, uid)
	n, sum := 0, 0.0
	err = run.EventPages(context.Background(), desc, 0, -1, []string{"img"}, func(p *catalog.EventPage) error {
		for i := 0; i < p.Len(); i++ {
			a := p.Data["img"].At(i).(*catalog.NDArray)
			sum += math.Float64frombits(binary.LittleEndian.Uint64(a.Data))
			n++
		}
		return nil
	})
	if err != nil || n != rows || sum != float64(rows)*float64(rows-1)/2 {
		t.Fatalf("%d rows, sum %v, %v", n, sum, err)
	}
	var ru syscall.Rusage
	must(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	t.Logf("streamed %d rows of a %.2f GB file; peak RSS %.1f MB", n, float64(fi.Size())/1e9, float64(ru.Maxrss)/1024)
	if ru.Maxrss > 128<<10 {
		t.Errorf("peak RSS %d MB, want well under 256 MB", ru.Maxrss>>10)
	}
}

// TestHugeValue indexes and reads a run holding an event whose one string value is 1 GB (a
// sparse file: its payload costs no disk). The document is walked without being read, skipped
// with one log line naming file, offset and size, and the other events read; the memory
// allocated stays far below the value's size (it was all read, then copied).
func TestHugeValue(t *testing.T) {
	const size = 1 << 30
	good := liveDocs("huge", 4)
	head := encode(t, good[:4])
	doc := []byte{0x92, 0xa5, 'e', 'v', 'e', 'n', 't', 0x84}
	doc = append(doc, appendStr(nil, "descriptor")...)
	doc = append(doc, appendStr(nil, "huge-d")...)
	doc = append(doc, appendStr(nil, "time")...)
	doc = appendFloat(doc, 2.5)
	doc = append(doc, appendStr(nil, "seq_num")...)
	doc = appendInt(doc, 99)
	doc = append(doc, appendStr(nil, "data")...)
	doc = append(doc, 0x81)
	doc = append(doc, appendStr(nil, "I0")...)
	doc = binary.BigEndian.AppendUint32(append(doc, 0xdb), size)
	path := filepath.Join(t.TempDir(), "huge.msgpack")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(append(head, doc...))
	f.Seek(size, 1)
	f.Write(encode(t, good[4:]))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c, lb := openDir(t, path)
	run := mustRun(t, c, "huge")
	n := 0
	err = run.EventPages(context.Background(), "huge-d", 0, -1, nil, func(p *catalog.EventPage) error { n += p.Len(); return nil })
	runtime.ReadMemStats(&after)
	if err != nil || n != 4 {
		t.Fatalf("EventPages: %d events, %v; want 4", n, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("%d MB allocated for a run with a 1 GB value", alloc>>20)
	}
	lines := lb.lines()
	if len(lines) != 1 || !strings.Contains(lines[0], "huge.msgpack") || !strings.Contains(lines[0], fmt.Sprintf("offset=%d", len(head))) ||
		!strings.Contains(lines[0], "more than the 64 MiB") {
		t.Errorf("log: %q, want one line naming the file, the offset and the size", lines)
	}
}
