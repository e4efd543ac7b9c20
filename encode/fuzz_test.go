package encode

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzDtypes are the dtypes a fuzz input picks from with its first byte.
var fuzzDtypes = []Dtype{
	{"<f8", 8}, {"<f4", 4}, {"<i8", 8}, {"|i1", 1}, {"<u2", 2}, {"|b1", 1}, {"<U3", 12}, {"<U0", 0}, {"<c16", 16},
}

// fuzzRowShapes are the row shapes a fuzz input picks from with its second byte.
var fuzzRowShapes = [][]int{nil, {3}, {2, 5}, {1}, {0}, {7}}

// fuzzArray builds an array of the picked dtype and row shape from as many whole rows of
// data as there are.
func fuzzArray(dtSel, shapeSel uint8, data []byte) *memArray {
	dt := fuzzDtypes[int(dtSel)%len(fuzzDtypes)]
	rs := fuzzRowShapes[int(shapeSel)%len(fuzzRowShapes)]
	rb := dt.Size * prod(rs)
	rows := 0
	if rb > 0 {
		rows = len(data) / rb
	} else {
		rows = len(data) % 50
	}
	return newMemArray(dt, rs, rows, data[:rows*rb])
}

// goldenSeeds returns the golden files' bytes, used as fuzz data: real encodings are full of
// commas, quotes, newlines and NUL runs, and of bit patterns that are NaNs or subnormals.
func goldenSeeds(f *testing.F) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden files to seed from: %v", err)
	}
	var seeds [][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

func FuzzNPYReadAt(f *testing.F) {
	for i, seed := range goldenSeeds(f) {
		f.Add(uint8(i), uint8(i/2), seed, int64(i*37), uint16(100+i))
		f.Add(uint8(i+3), uint8(i+1), seed, int64(120), uint16(1000))
	}
	f.Fuzz(func(t *testing.T, dtSel, shapeSel uint8, data []byte, off int64, length uint16) {
		a := fuzzArray(dtSel, shapeSel, data)
		n := NewNPY(a)
		full := append(NPYHeader(a.Dtype(), append([]int{a.Rows()}, a.RowShape()...)), a.data...)
		if n.Size() != int64(len(full)) {
			t.Fatalf("Size = %d, want %d", n.Size(), len(full))
		}
		off = max(0, off) % int64(len(full)+8)
		a.takeCalls()
		checkReadAt(t, n.ReadAt, full, off, int(length))
		if rb := RowBytes(a); rb > 0 {
			checkCoveringRows(t, a.takeCalls(), off, int(length), n.HeaderLen(), rb)
		}
	})
}

func FuzzCSVReadAt(f *testing.F) {
	for i, seed := range goldenSeeds(f) {
		f.Add(uint8(i), uint8(i+1), uint8(0), seed, int64(i*13), uint16(50+i))
		f.Add(uint8(6), uint8(i), uint8(3), seed, int64(0), uint16(4000))
	}
	f.Fuzz(func(t *testing.T, dt1, dt2, shapeSel uint8, data []byte, off int64, length uint16) {
		// Two columns side by side, cut from the two halves of data, with the same rows.
		if dt1%uint8(len(fuzzDtypes)) == 8 || dt2%uint8(len(fuzzDtypes)) == 8 {
			return // complex has no CSV form
		}
		half := len(data) / 2
		a := fuzzArray(dt1, shapeSel%2, data[:half])
		b := fuzzArray(dt2, 0, data[half:])
		rows := min(a.rows, b.rows)
		a = newMemArray(a.dt, a.rowShape, rows, a.data[:rows*RowBytes(a)])
		b = newMemArray(b.dt, b.rowShape, rows, b.data[:rows*RowBytes(b)])
		cols := []Array{a, b}
		names := []string{"a", `b,"`}

		ref, err := NewCSV(names, cols)
		if err != nil {
			t.Fatal(err)
		}
		full := readAll(t, ref, 1<<20)
		if size, err := ref.Size(context.Background()); err != nil || size != int64(len(full)) {
			t.Fatalf("Size = %d, %v; want %d", size, err, len(full))
		}
		records, err := csv.NewReader(strings.NewReader(string(full))).ReadAll()
		if err != nil || len(records) != rows+1 {
			t.Fatalf("%d records for %d rows, %v", len(records), rows, err)
		}

		// Fresh, so the read must find its block on its own, and with blocks of a few rows,
		// so that small inputs cross block boundaries: the text must not depend on them.
		c, err := NewCSV(names, cols)
		if err != nil {
			t.Fatal(err)
		}
		c.block = 1 + int(shapeSel)%7
		off = max(0, off) % int64(len(full)+8)
		checkReadAt(t, c.ReadAt, full, off, int(length))
		checkReadAt(t, c.ReadAt, full, off/2, int(length)) // now behind the frontier
	})
}
