package encode

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// readAll reads c sequentially in pieces of the given size, as cat would.
func readAll(t testing.TB, c *CSV, piece int) []byte {
	t.Helper()
	var out []byte
	p := make([]byte, piece)
	for {
		n, err := c.ReadAt(context.Background(), p, int64(len(out)))
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestCSVSmall(t *testing.T) {
	nan := math.NaN()
	cols := []Array{
		newMemArray(Dtype{"<i8", 8}, nil, 3, i64s(1, 2, 3)),
		newMemArray(Dtype{"<f8", 8}, nil, 3, f64s(0.1, 2, nan)),
		newMemArray(Dtype{"<f4", 4}, []int{2}, 3, f32s(0.1, 1e-7, float32(math.Inf(1)), float32(math.Copysign(0, -1)), 3, 1e20)),
		newMemArray(Dtype{"|b1", 1}, nil, 3, []byte{1, 0, 1}),
		newMemArray(Dtype{"<U4", 16}, nil, 3, slices.Concat(utf32("a,b", 4), utf32(`"q"`, 4), utf32("", 4))),
		newMemArray(Dtype{"|u1", 1}, []int{0}, 3, nil),
		newMemArray(Dtype{">i2", 2}, nil, 3, []byte{0xff, 0xfe, 0, 1, 0x80, 0}),
	}
	names := []string{"seq_num", "time", "Ion Ch 1", "ok", `say, "x"`, "empty", "big"}
	c, err := NewCSV(names, cols)
	if err != nil {
		t.Fatal(err)
	}
	want := `seq_num,time,Ion Ch 1[0],Ion Ch 1[1],ok,"say, ""x""",big
1,0.1,0.1,1e-07,True,"a,b",-2
2,2.0,inf,-0.0,False,"""q""",1
3,NaN,3.0,1e+20,True,"",-32768
`
	if got := string(readAll(t, c, 7)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if size, err := c.Size(context.Background()); err != nil || size != int64(len(want)) {
		t.Errorf("Size = %d, %v; want %d", size, err, len(want))
	}
}

func TestNewCSVErrors(t *testing.T) {
	f8 := newMemArray(Dtype{"<f8", 8}, nil, 2, f64s(1, 2))
	tests := []struct {
		name  string
		names []string
		cols  []Array
		is    error
	}{
		{"no columns", nil, nil, nil},
		{"names", []string{"a"}, []Array{f8, f8}, nil},
		{"rows", []string{"a", "b"}, []Array{f8, newMemArray(Dtype{"<f8", 8}, nil, 1, f64s(1))}, nil},
		{"2-D rows", []string{"a"}, []Array{newMemArray(Dtype{"<f8", 8}, []int{1, 1}, 2, f64s(1, 2))}, ErrUnsupported},
		{"complex", []string{"a"}, []Array{newMemArray(Dtype{"<c16", 16}, nil, 1, f64s(1, 2))}, ErrUnsupported},
		{"no values", []string{"a"}, []Array{newMemArray(Dtype{"<f8", 8}, []int{0}, 2, nil)}, ErrUnsupported},
		{"bad dtype", []string{"a"}, []Array{newMemArray(Dtype{"<f3", 3}, nil, 0, nil)}, ErrUnsupported},
	}
	for _, tt := range tests {
		_, err := NewCSV(tt.names, tt.cols)
		if err == nil || tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.is)
		}
	}
}

// csvColumnSets are column sets of every CSV value kind, with narrow and wide rows.
func csvColumnSets(rng *rand.Rand) map[string][]Array {
	const rows = 3000
	return map[string][]Array{
		"scalars": {
			randomArray(rng, Dtype{"<i8", 8}, nil, rows),
			randomArray(rng, Dtype{"<f8", 8}, nil, rows),
			randomArray(rng, Dtype{"<f4", 4}, nil, rows),
			randomArray(rng, Dtype{"|b1", 1}, nil, rows),
			randomArray(rng, Dtype{"|i1", 1}, nil, rows),
			randomArray(rng, Dtype{"<u8", 8}, nil, rows),
			randomArray(rng, Dtype{"<U9", 36}, nil, rows),
		},
		"vectors": {
			randomArray(rng, Dtype{"<u2", 2}, []int{5}, rows),
			randomArray(rng, Dtype{"<U3", 12}, []int{2}, rows),
		},
		"wide": { // blocks of 5 rows
			randomArray(rng, Dtype{"<f8", 8}, []int{500}, 60),
		},
		"strings": {
			randomArray(rng, Dtype{"<U12", 48}, nil, rows),
		},
		"norows": {
			randomArray(rng, Dtype{"<f8", 8}, nil, 0),
		},
	}
}

func csvNames(cols []Array) []string {
	names := make([]string, len(cols))
	for i := range cols {
		names[i] = fmt.Sprintf("c%d", i)
	}
	return names
}

// TestCSVParseBack parses the text with encoding/csv, an independent RFC 4180 reader, and
// checks every field against the array element it came from.
func TestCSVParseBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	for name, cols := range csvColumnSets(rng) {
		t.Run(name, func(t *testing.T) {
			c, err := NewCSV(csvNames(cols), cols)
			if err != nil {
				t.Fatal(err)
			}
			records, err := csv.NewReader(strings.NewReader(string(readAll(t, c, 1<<16)))).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(records) != 1+cols[0].Rows() {
				t.Fatalf("%d records for %d rows", len(records), cols[0].Rows())
			}
			for r, rec := range records[1:] {
				k := 0
				for _, a := range cols {
					m := a.(*memArray)
					e, _ := m.dt.elem()
					per := prod(m.rowShape)
					for v := range per {
						b := m.data[(r*per+v)*e.size:]
						if err := checkField(rec[k], b, e); err != nil {
							t.Fatalf("row %d field %d: %v", r, k, err)
						}
						k++
					}
				}
			}
		})
	}
}

// checkField checks one parsed CSV field against the element at the start of b.
func checkField(field string, b []byte, e elem) error {
	switch e.kind {
	case 'b':
		if want := map[bool]string{true: "True", false: "False"}[b[0] != 0]; field != want {
			return fmt.Errorf("%q, want %q", field, want)
		}
	case 'i', 'u':
		want := e.load(b).bits
		var got uint64
		var err error
		if e.kind == 'i' {
			var i int64
			i, err = strconv.ParseInt(field, 10, 64)
			got = uint64(i)
		} else {
			got, err = strconv.ParseUint(field, 10, 64)
		}
		if err != nil || got != want {
			return fmt.Errorf("%q, want %d", field, want)
		}
	case 'f':
		want := loadFloat(b, e.size, e.big)
		if math.IsNaN(want) {
			if field != "NaN" {
				return fmt.Errorf("%q, want NaN", field)
			}
			return nil
		}
		got, err := strconv.ParseFloat(field, 8*e.size)
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			return fmt.Errorf("%q reads as %v, want %v", field, got, want)
		}
	case 'U':
		// encoding/csv turns CRLF inside a quoted field into LF (pandas keeps it).
		want := strings.ReplaceAll(string(appendUTF32(nil, b[:e.size], false)), "\r\n", "\n")
		if field != want {
			return fmt.Errorf("%q, want %q", field, want)
		}
	}
	return nil
}

func TestCSVReadAtRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	for name, cols := range csvColumnSets(rng) {
		t.Run(name, func(t *testing.T) {
			newCSV := func() *CSV {
				c, err := NewCSV(csvNames(cols), cols)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			full := readAll(t, newCSV(), 1<<20)
			if got := readAll(t, newCSV(), 4093); string(got) != string(full) {
				t.Fatal("reads of 4093 bytes and of 1 MiB differ")
			}

			// Fresh: checkpoints are learnt in the order of the random reads. Block sizes
			// change where checkpoints fall, never the text.
			for _, block := range []int{0, 1, 7, 100} {
				lazy := newCSV()
				if block > 0 {
					lazy.block = min(block, lazy.block)
				}
				for range 60 {
					off, length := randomRange(rng, len(full))
					checkReadAt(t, lazy.ReadAt, full, off, length)
				}
				if size, err := lazy.Size(context.Background()); err != nil || size != int64(len(full)) {
					t.Fatalf("block %d: Size = %d, %v; want %d", block, size, err, len(full))
				}
			}

			// Measured: a read formats only the blocks that hold its bytes.
			measured := newCSV()
			if _, err := measured.Size(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, a := range cols {
				a.(*memArray).takeCalls()
			}
			for range 200 {
				off, length := randomRange(rng, len(full))
				checkReadAt(t, measured.ReadAt, full, off, length)
				from, to := measured.coveringRows(off, length)
				for _, a := range cols {
					for _, call := range a.(*memArray).takeCalls() {
						if call[0] < from || call[1] > to {
							t.Fatalf("read [%d, +%d): ReadRows(%d, %d) outside the covering blocks' rows [%d, %d)",
								off, length, call[0], call[1], from, to)
						}
					}
				}
			}
		})
	}
}

// coveringRows returns the rows of the blocks that hold bytes of [off, off+length), for a
// CSV whose checkpoints are all known.
func (c *CSV) coveringRows(off int64, length int) (from, to int) {
	block := func(pos int64) int {
		return max(0, lastMarkAtOrBefore(c.marks, pos))
	}
	end := min(off+int64(length), c.size) - 1
	if end < off || end < c.marks[0] {
		return 0, 0
	}
	return block(off) * c.block, min(c.rows, (block(end)+1)*c.block)
}

// lastMarkAtOrBefore returns the index of the last mark <= pos, or -1.
func lastMarkAtOrBefore(marks []int64, pos int64) int {
	i, found := slices.BinarySearch(marks, pos)
	if found {
		return i
	}
	return i - 1
}

func TestCSVBlockRows(t *testing.T) {
	tests := []struct {
		dt       Dtype
		rowShape []int
		want     int
	}{
		{Dtype{"<f8", 8}, nil, 1024},
		{Dtype{"<f8", 8}, []int{500}, 5},     // 500 * 25 bytes: 5 rows make 64 KiB
		{Dtype{"<f8", 8}, []int{10000}, 1},   // one row is more than a block
		{Dtype{"|b1", 1}, []int{100}, 109},   // 100 * 6 + 1 bytes
		{Dtype{"<U100", 400}, []int{2}, 316}, // 2 * (2+100+1) + 1 bytes
	}
	for _, tt := range tests {
		a := newMemArray(tt.dt, tt.rowShape, 0, nil)
		c, err := NewCSV([]string{"x"}, []Array{a})
		if err != nil {
			t.Fatal(err)
		}
		if c.block != tt.want {
			t.Errorf("%s %v: block of %d rows, want %d", tt.dt.Descr, tt.rowShape, c.block, tt.want)
		}
	}
}

func TestCSVConcurrentReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	cols := csvColumnSets(rng)["scalars"]
	ref, err := NewCSV(csvNames(cols), cols)
	if err != nil {
		t.Fatal(err)
	}
	full := readAll(t, ref, 1<<16)
	c, err := NewCSV(csvNames(cols), cols) // fresh: readers race to learn checkpoints
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 14))
			for range 200 {
				off, length := randomRange(rng, len(full))
				if err := readAtMismatch(c.ReadAt, full, off, length); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestCSVCanceled(t *testing.T) {
	cols := []Array{randomArray(rand.New(rand.NewPCG(1, 1)), Dtype{"<f8", 8}, nil, 5000)}
	c, err := NewCSV([]string{"x"}, cols)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Size(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Size with a canceled context: %v", err)
	}
	// The failure is not remembered.
	if _, err := c.Size(context.Background()); err != nil {
		t.Fatal(err)
	}
}
