package encode

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// memArray is an Array over a byte slice that records every ReadRows call.
type memArray struct {
	dt       Dtype
	rowShape []int
	rows     int
	data     []byte

	mu    sync.Mutex
	calls [][2]int // guarded by mu
}

func newMemArray(dt Dtype, rowShape []int, rows int, data []byte) *memArray {
	m := &memArray{dt: dt, rowShape: rowShape, rows: rows, data: data}
	if want := rows * RowBytes(m); len(data) != want {
		panic(fmt.Sprintf("memArray: %d bytes for %d rows of %d", len(data), rows, RowBytes(m)))
	}
	return m
}

func (m *memArray) Dtype() Dtype    { return m.dt }
func (m *memArray) RowShape() []int { return m.rowShape }
func (m *memArray) Rows() int       { return m.rows }

func (m *memArray) ReadRows(ctx context.Context, from, to int, dst []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rb := RowBytes(m)
	if from < 0 || from > to || to > m.rows || len(dst) != (to-from)*rb {
		return fmt.Errorf("memArray: bad ReadRows(%d, %d) into %d bytes (%d rows of %d)", from, to, len(dst), m.rows, rb)
	}
	m.mu.Lock()
	m.calls = append(m.calls, [2]int{from, to})
	m.mu.Unlock()
	copy(dst, m.data[from*rb:to*rb])
	return nil
}

// takeCalls returns and forgets the ReadRows calls so far.
func (m *memArray) takeCalls() [][2]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.calls
	m.calls = nil
	return c
}

func mustDtype(t testing.TB, descr string) Dtype {
	t.Helper()
	dt, err := ParseDtype(descr)
	if err != nil {
		t.Fatal(err)
	}
	return dt
}

func prod(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Little-endian byte builders, written with encoding/binary so that tests do not check the
// package's own byte code against itself.

func f64s(v ...float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}

func f32s(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func i64s(v ...int64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return b
}

func u64s(v ...uint64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], x)
	}
	return b
}

func i32s(v ...int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

func u16s(v ...uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

func i16s(v ...int16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(x))
	}
	return b
}

// u32s also builds UTF-32LE strings: u32s('a', 'b', 0).
func u32s(v ...uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}

func beF64s(v ...float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.BigEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}

// utf32 is s as a UTF-32LE <U{width} element, built independently of PutUnicode.
func utf32(s string, width int) []byte {
	var cps []uint32
	for _, r := range s {
		cps = append(cps, uint32(r))
	}
	for len(cps) < width {
		cps = append(cps, 0)
	}
	return u32s(cps[:width]...)
}

// randomStrings are the strings random arrays draw from: CSV specials, non-ASCII, spaces.
var randomStrings = []string{
	"", "a", "plain", "with,comma", `say "hi"`, "two\nlines", "cr\rlf\r\n", " lead", "trail ",
	"ünï©ødé", "日本語", "😀 emoji", `"`, ",", "x,\"y\"\nz",
}

// randomArray returns an array of random elements: any bit pattern for numbers (NaNs,
// infinities, subnormals included), 0 or 1 for bools, strings from randomStrings cut to the
// width. Rows of shape rowShape.
func randomArray(rng *rand.Rand, dt Dtype, rowShape []int, rows int) *memArray {
	e, err := dt.elem()
	if err != nil {
		panic(err)
	}
	n := rows * prod(rowShape)
	data := make([]byte, n*dt.Size)
	for i := range n {
		b := data[i*dt.Size : (i+1)*dt.Size]
		switch e.kind {
		case 'b':
			b[0] = byte(rng.IntN(2))
		case 'U':
			s := randomStrings[rng.IntN(len(randomStrings))]
			copy(b, utf32(s, dt.Size/4))
		default:
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			if e.kind == 'f' && rng.IntN(4) == 0 {
				// Also plain decimal values, the common case in real data.
				v := float64(rng.IntN(200000)-100000) / 100
				if e.size == 4 {
					copy(b, f32s(float32(v)))
				} else {
					copy(b, f64s(v))
				}
			}
		}
	}
	return newMemArray(dt, slices.Clone(rowShape), rows, data)
}
