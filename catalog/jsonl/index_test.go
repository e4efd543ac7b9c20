package jsonl

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog/filestore"
)

// TestIndexExtendAndRewrite: a file that grows is indexed from where the index stopped; a file
// rewritten in place is indexed again from its start.
func TestIndexExtendAndRewrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	start := `["start", {"uid": "u", "time": 1}]` + "\n"
	desc := `["descriptor", {"uid": "d", "run_start": "u", "time": 1, "data_keys": {}}]` + "\n"
	ev := `["event", {"descriptor": "d", "time": 1, "seq_num": 1, "data": {}}]` + "\n"
	write := func(s string) int64 {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return int64(len(s))
	}
	x := newIndex(path, slog.New(slog.NewTextHandler(io.Discard, nil)), int64(len(start)))
	if err := x.ensure(write(start + desc + ev)); err != nil {
		t.Fatal(err)
	}
	if x.lines != 3 || x.events["d"].rows != 1 {
		t.Fatalf("lines %d rows %d", x.lines, x.events["d"].rows)
	}
	end := x.end
	size := write(start + desc + ev + strings.Repeat(ev, 3000) + `["event", {"desc`)
	if err := x.ensure(size); err != nil {
		t.Fatal(err)
	}
	if x.lines != 3003 || x.events["d"].rows != 3001 || len(x.events["d"].cps) != 3 || x.end != size-int64(len(`["event", {"desc`)) {
		t.Fatalf("after growth: lines %d rows %d checkpoints %d end %d", x.lines, x.events["d"].rows, len(x.events["d"].cps), x.end)
	}
	if cp, _, _ := x.seek("d", 2500, size); cp.row != 2048 || cp.line != 2051 {
		t.Errorf("seek(2500) = %+v", cp)
	}
	if len(x.descriptors(end)) != 1 || len(x.descriptors(int64(len(start)))) != 0 {
		t.Error("descriptors not limited to the snapshot")
	}
	// Rewritten: same start, different body, larger. (A file that shrank gets a new index from
	// Catalog.load, which requires growth to keep one.)
	size = write(start + strings.Repeat(`["descriptor", {"uid": "d2", "run_start": "u", "time": 2, "data_keys": {}}]`+"\n", 4000))
	if err := x.ensure(size); err != nil {
		t.Fatal(err)
	}
	if x.lines != 4001 || len(x.events) != 0 || len(x.descs) != 4000 || x.descs[0].doc.UID != "d2" {
		t.Fatalf("after rewrite: lines %d events %d descs %d", x.lines, len(x.events), len(x.descs))
	}
}

// TestCheckpointsByBytes: big event lines get a checkpoint every
// filestore.CheckpointBytes of file, not only every checkpointRows rows, so a read from the
// middle of a stream of 20 KiB events walks over a bounded stretch.
func TestCheckpointsByBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.jsonl")
	start := `["start", {"uid": "u", "time": 1}]` + "\n"
	var b strings.Builder
	b.WriteString(start)
	b.WriteString(`["descriptor", {"uid": "d", "run_start": "u", "time": 1, "data_keys": {"s": {"dtype": "string", "shape": [], "source": "x"}}}]` + "\n")
	big := strings.Repeat("x", 20<<10)
	const rows = 300
	for i := range rows {
		b.WriteString(`["event", {"descriptor": "d", "time": 1, "seq_num": ` + strconv.Itoa(i+1) + `, "data": {"s": "` + big + `"}, "timestamps": {"s": 1}}]` + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	x := newIndex(path, slog.New(slog.NewTextHandler(io.Discard, nil)), int64(len(start)))
	if err := x.ensure(int64(b.Len())); err != nil {
		t.Fatal(err)
	}
	lineLen := int64(len(big)) + 100 // about
	perCheckpoint := int(filestore.CheckpointBytes/lineLen) + 1
	for _, row := range []int{0, 150, 299} {
		cp, _, ok := x.seek("d", row, int64(b.Len()))
		if !ok || cp.row > row || row-cp.row > perCheckpoint {
			t.Errorf("seek(%d) = checkpoint at row %d: more than %d rows (%d KiB) before it", row, cp.row, perCheckpoint, filestore.CheckpointBytes>>10)
		}
	}
	if n := len(x.events["d"].cps); n < rows/perCheckpoint {
		t.Errorf("%d checkpoints for %d rows of 20 KiB", n, rows)
	}
}
