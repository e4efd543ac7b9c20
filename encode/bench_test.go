package encode

import (
	"context"
	"io"
	"math"
	"math/rand/v2"
	"testing"
)

// benchArray is an Array over a byte slice without memArray's call log, so that benchmarks
// measure the encoders and one memcpy, nothing else.
type benchArray struct {
	dt       Dtype
	rowShape []int
	rows     int
	data     []byte
}

func (a *benchArray) Dtype() Dtype    { return a.dt }
func (a *benchArray) RowShape() []int { return a.rowShape }
func (a *benchArray) Rows() int       { return a.rows }
func (a *benchArray) ReadRows(_ context.Context, from, to int, dst []byte) error {
	rb := RowBytes(a)
	copy(dst, a.data[from*rb:to*rb])
	return nil
}

// benchNPYReadAt reads the .npy of a 64 MiB array sequentially in 1 MiB pieces.
func benchNPYReadAt(b *testing.B, dt Dtype, rowShape []int) {
	const dataBytes = 64 << 20
	rows := dataBytes / (dt.Size * prod(rowShape))
	a := &benchArray{dt: dt, rowShape: rowShape, rows: rows, data: make([]byte, rows*dt.Size*prod(rowShape))}
	n := NewNPY(a)
	p := make([]byte, 1<<20)
	ctx := context.Background()
	b.SetBytes(int64(len(p)))
	b.ResetTimer()
	off := int64(0)
	for range b.N {
		if _, err := n.ReadAt(ctx, p, off); err != nil && err != io.EOF {
			b.Fatal(err)
		}
		if off += int64(len(p)); off >= n.Size() {
			off = 0
		}
	}
}

// BenchmarkNPYReadAt: float64 rows, 1 MiB reads, one ReadRows call each.
func BenchmarkNPYReadAt(b *testing.B) { benchNPYReadAt(b, Dtype{"<f8", 8}, nil) }

// BenchmarkNPYReadAtUnaligned: 12-byte rows, so every read also has two partial rows.
func BenchmarkNPYReadAtUnaligned(b *testing.B) { benchNPYReadAt(b, Dtype{"<f4", 4}, []int{3}) }

// scanColumns is a typical scan stream: seq_num, time, and two detector readings.
func scanColumns(rows int) ([]string, []Array) {
	rng := rand.New(rand.NewPCG(1, 2))
	seq, tm, det, mot := make([]byte, 8*rows), make([]byte, 8*rows), make([]byte, 8*rows), make([]byte, 8*rows)
	for i := range rows {
		copy(seq[8*i:], i64s(int64(i+1)))
		copy(tm[8*i:], f64s(1.7e9+float64(i)*0.1+rng.Float64()*1e-3))
		copy(det[8*i:], f64s(rng.NormFloat64()*1000))
		copy(mot[8*i:], f64s(math.Round(rng.Float64()*1e5)/100))
	}
	mk := func(d []byte) Array { return &benchArray{dt: Dtype{"<f8", 8}, rows: rows, data: d} }
	return []string{"seq_num", "time", "det", "motor"},
		[]Array{&benchArray{dt: Dtype{"<i8", 8}, rows: rows, data: seq}, mk(tm), mk(det), mk(mot)}
}

// BenchmarkCSVFormat measures a full formatting pass (what Size does the first time).
func BenchmarkCSVFormat(b *testing.B) {
	const rows = 100_000
	names, cols := scanColumns(rows)
	ctx := context.Background()
	var size int64
	for range b.N {
		c, err := NewCSV(names, cols)
		if err != nil {
			b.Fatal(err)
		}
		if size, err = c.Size(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(size)
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkCSVReadAt measures sequential 128 KiB reads (the kernel's usual FUSE read) of a
// CSV whose checkpoints are known: each read formats from the start of its first block.
func BenchmarkCSVReadAt(b *testing.B) {
	const rows = 100_000
	names, cols := scanColumns(rows)
	c, err := NewCSV(names, cols)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	size, err := c.Size(ctx)
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, 128<<10)
	b.SetBytes(int64(len(p)))
	b.ResetTimer()
	off := int64(0)
	for range b.N {
		if _, err := c.ReadAt(ctx, p, off); err != nil && err != io.EOF {
			b.Fatal(err)
		}
		if off += int64(len(p)); off >= size {
			off = 0
		}
	}
}
