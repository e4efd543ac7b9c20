package encode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
)

func TestNPYHeader(t *testing.T) {
	tests := []struct {
		descr string
		shape []int
		dict  string
	}{
		{"<f8", []int{3}, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"},
		{"<U5", []int{3, 4}, "{'descr': '<U5', 'fortran_order': False, 'shape': (3, 4), }"},
		{"|b1", []int{0, 2, 7}, "{'descr': '|b1', 'fortran_order': False, 'shape': (0, 2, 7), }"},
		{"<i8", nil, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }"},
	}
	for _, tt := range tests {
		h := NPYHeader(Dtype{Descr: tt.descr}, tt.shape)
		if len(h)%64 != 0 || len(h) < 64 {
			t.Errorf("%v: header length %d is not a multiple of 64", tt.shape, len(h))
		}
		if !bytes.HasPrefix(h, []byte("\x93NUMPY\x01\x00")) || int(h[8])|int(h[9])<<8 != len(h)-10 {
			t.Errorf("%v: bad prefix % x", tt.shape, h[:10])
		}
		body := string(h[10:])
		if !strings.HasPrefix(body, tt.dict) || !strings.HasSuffix(body, "\n") ||
			strings.TrimLeft(body[len(tt.dict):], " ") != "\n" {
			t.Errorf("%v: header %q, want %q padded", tt.shape, body, tt.dict)
		}
		// The spare room NumPy leaves for the first dimension to grow to 21 digits.
		if len(tt.shape) > 0 && len(body)-len(tt.dict)-1 < 21-len("3") {
			t.Errorf("%v: only %d spaces of padding", tt.shape, len(body)-len(tt.dict)-1)
		}
	}
	// As np.save writes it (numpy 1.24), byte for byte.
	want := "\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }" +
		strings.Repeat(" ", 60) + "\n"
	if got := string(NPYHeader(Dtype{Descr: "<f8", Size: 8}, []int{3})); got != want {
		t.Errorf("header\n%q\nwant\n%q", got, want)
	}
	// A header that does not fit 65535 bytes switches to version 2.0 and a 4-byte length.
	long := make([]int, 30000)
	for i := range long {
		long[i] = 1
	}
	h := NPYHeader(Dtype{Descr: "<f8", Size: 8}, long)
	if h[6] != 2 || h[7] != 0 || len(h)%64 != 0 ||
		int(h[8])|int(h[9])<<8|int(h[10])<<16|int(h[11])<<24 != len(h)-12 {
		t.Errorf("long header: version %d.%d, length %d, prefix % x", h[6], h[7], len(h), h[:12])
	}
}

// npyCases are arrays of every row-size class: scalar rows, rows that do not divide 64,
// strings, multi-dimensional rows, rows larger than most reads, and empty data.
func npyCases(rng *rand.Rand) map[string]*memArray {
	return map[string]*memArray{
		"f8":        randomArray(rng, Dtype{"<f8", 8}, nil, 1000),
		"f4x3":      randomArray(rng, Dtype{"<f4", 4}, []int{3}, 700),
		"U7":        randomArray(rng, Dtype{"<U7", 28}, nil, 300),
		"u2x4x5":    randomArray(rng, Dtype{"<u2", 2}, []int{4, 5}, 200),
		"bigrows":   randomArray(rng, Dtype{"|u1", 1}, []int{3000}, 40),
		"b1":        randomArray(rng, Dtype{"|b1", 1}, nil, 77),
		"norows":    randomArray(rng, Dtype{"<i8", 8}, []int{2}, 0),
		"emptyrows": randomArray(rng, Dtype{"<i8", 8}, []int{0}, 50),
		"U0":        randomArray(rng, Dtype{"<U0", 0}, nil, 5),
	}
}

func TestNPYReadAtRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for name, a := range npyCases(rng) {
		t.Run(name, func(t *testing.T) {
			n := NewNPY(a)
			full := append(NPYHeader(a.Dtype(), append([]int{a.Rows()}, a.RowShape()...)), a.data...)
			if n.Size() != int64(len(full)) {
				t.Fatalf("Size = %d, want %d", n.Size(), len(full))
			}
			a.takeCalls()
			for range 500 {
				off, length := randomRange(rng, len(full))
				checkReadAt(t, n.ReadAt, full, off, length)
				checkCoveringRows(t, a.takeCalls(), off, length, n.HeaderLen(), RowBytes(a))
			}
		})
	}
}

// randomRange picks a read: mostly small and inside the data, sometimes past either end.
func randomRange(rng *rand.Rand, size int) (off int64, length int) {
	off = int64(rng.IntN(size + 16))
	switch rng.IntN(8) {
	case 0:
		length = rng.IntN(size + 32)
	case 1:
		length = rng.IntN(128 << 10) // the kernel's usual FUSE read
	case 2, 3:
		length = rng.IntN(8)
	default:
		length = rng.IntN(512)
	}
	return off, length
}

// checkReadAt checks one ReadAt against the full encoding, with io.ReaderAt's rules.
func checkReadAt(t *testing.T, readAt func(context.Context, []byte, int64) (int, error), full []byte, off int64, length int) {
	t.Helper()
	if err := readAtMismatch(readAt, full, off, length); err != nil {
		t.Fatal(err)
	}
}

// readAtMismatch describes how ReadAt(off, length) differs from full, or returns nil.
func readAtMismatch(readAt func(context.Context, []byte, int64) (int, error), full []byte, off int64, length int) error {
	p := bytes.Repeat([]byte{0xAA}, length)
	n, err := readAt(context.Background(), p, off)
	want := []byte{}
	if off < int64(len(full)) {
		want = full[off:min(int64(len(full)), off+int64(length))]
	}
	if n != len(want) || !bytes.Equal(p[:n], want) {
		return fmt.Errorf("ReadAt(%d, len %d) = %d bytes %q..., want %d bytes %q...", off, length, n, head(p[:n]), len(want), head(want))
	}
	// At or past the end, an empty read may report io.EOF too, as bytes.Reader does.
	atEnd := off >= int64(len(full)) && err == io.EOF
	if n < length && !errors.Is(err, io.EOF) || n == length && err != nil && !atEnd {
		return fmt.Errorf("ReadAt(%d, len %d) = %d, %v", off, length, n, err)
	}
	return nil
}

func head(b []byte) []byte { return b[:min(len(b), 40)] }

// checkCoveringRows checks that the ReadRows calls of one read asked only for rows that
// hold bytes of [off, off+length), each at most once.
func checkCoveringRows(t *testing.T, calls [][2]int, off int64, length, headerLen, rowBytes int) {
	t.Helper()
	if len(calls) == 0 {
		return
	}
	lo := max(0, off-int64(headerLen)) / int64(rowBytes)
	hi := (off + int64(length) - 1 - int64(headerLen)) / int64(rowBytes) // inclusive
	seen := map[int]bool{}
	for _, c := range calls {
		if int64(c[0]) < lo || int64(c[1]) > hi+1 {
			t.Fatalf("read [%d, +%d): ReadRows(%d, %d) outside covering rows [%d, %d]", off, length, c[0], c[1], lo, hi)
		}
		for r := c[0]; r < c[1]; r++ {
			if seen[r] {
				t.Fatalf("read [%d, +%d): row %d read twice (%v)", off, length, r, calls)
			}
			seen[r] = true
		}
	}
}

func TestNPYOneCallPerAlignedRead(t *testing.T) {
	const rows = 1 << 20
	a := newMemArray(Dtype{"<f8", 8}, nil, rows, make([]byte, 8*rows))
	n := NewNPY(a)
	p := make([]byte, 1<<20)
	for k := int64(1); k < 8; k++ {
		if _, err := n.ReadAt(context.Background(), p, k<<20); err != nil {
			t.Fatal(err)
		}
		calls := a.takeCalls()
		if len(calls) != 1 || calls[0][1]-calls[0][0] != 131072 {
			t.Fatalf("1 MiB read at %d MiB: calls %v, want one of 131072 rows", k, calls)
		}
	}
}

func TestNPYEdgeCache(t *testing.T) {
	// The cache is weak; keep the collector away while counting calls.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))

	// Rows of 1 MiB read in 128 KiB pieces: each row is asked for once, not eight times.
	const rowBytes = 1 << 20
	a := newMemArray(Dtype{"|u1", 1}, []int{rowBytes}, 4, make([]byte, 4*rowBytes))
	n := NewNPY(a)
	p := make([]byte, 128<<10)
	for off := int64(0); off < n.Size(); off += int64(len(p)) {
		if _, err := n.ReadAt(context.Background(), p, off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
	}
	if calls := a.takeCalls(); len(calls) != 4 {
		t.Errorf("ReadRows calls %v, want one per row", calls)
	}

	// Once no read holds it, the collector may free the row: the NPY does not pin it.
	runtime.GC()
	if _, err := n.ReadAt(context.Background(), p, n.Size()-int64(len(p))); err != nil {
		t.Fatal(err)
	}
	if calls := a.takeCalls(); len(calls) != 1 {
		t.Errorf("after a GC: ReadRows calls %v, want the last row read again", calls)
	}
}

func TestNPYReadAtErrors(t *testing.T) {
	a := newMemArray(Dtype{"<f8", 8}, nil, 4, f64s(1, 2, 3, 4))
	n := NewNPY(a)
	if _, err := n.ReadAt(context.Background(), make([]byte, 1), -1); err == nil {
		t.Error("negative offset: no error")
	}
	if k, err := n.ReadAt(context.Background(), make([]byte, 8), n.Size()); k != 0 || err != io.EOF {
		t.Errorf("read at end = %d, %v", k, err)
	}
	if k, err := n.ReadAt(context.Background(), make([]byte, 8), n.Size()-8); k != 8 || err != nil {
		t.Errorf("read to the end = %d, %v", k, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.ReadAt(ctx, make([]byte, 8), int64(n.HeaderLen())); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled read: %v", err)
	}
}

func TestNPYConcurrentReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	a := randomArray(rng, Dtype{"<f4", 4}, []int{3}, 5000)
	n := NewNPY(a)
	full := append(NPYHeader(a.Dtype(), []int{5000, 3}), a.data...)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 300 {
				off, length := randomRange(rng, len(full))
				if err := readAtMismatch(n.ReadAt, full, off, length); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
