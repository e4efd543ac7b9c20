package encode

import (
	"bytes"
	"context"
	"flag"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenNPY are small arrays whose .npy encodings are kept in testdata/golden. They were
// checked with np.load when written; TestNumpyLoads keeps checking the encoder itself.
func goldenNPY() map[string]Array {
	return map[string]Array{
		"f8.npy":     newMemArray(Dtype{"<f8", 8}, nil, 5, f64s(0.1, math.Copysign(0, -1), 1.0/3, quietNaN, math.Inf(1))),
		"u2_2x3.npy": newMemArray(Dtype{"<u2", 2}, []int{2, 3}, 2, u16s(0, 1, 2, 65535, 256, 7, 8, 9, 10, 11, 12, 13)),
		"U5.npy":     newMemArray(Dtype{"<U5", 20}, nil, 3, slices.Concat(utf32("a", 5), utf32("日本語", 5), utf32("", 5))),
		"b1.npy":     newMemArray(Dtype{"|b1", 1}, nil, 4, []byte{1, 0, 0, 1}),
		"i8_0.npy":   newMemArray(Dtype{"<i8", 8}, []int{3}, 0, nil),
	}
}

// goldenCSV are small column sets whose CSV text is kept in testdata/golden.
func goldenCSV() map[string]struct {
	names []string
	cols  []Array
} {
	type set = struct {
		names []string
		cols  []Array
	}
	return map[string]set{
		"scan.csv": {
			[]string{"seq_num", "time", "Ion Ch 1", "ok"},
			[]Array{
				newMemArray(Dtype{"<i8", 8}, nil, 4, i64s(1, 2, 3, 4)),
				newMemArray(Dtype{"<f8", 8}, nil, 4, f64s(1.7e9, 1700000000.25, 1700000000.5, 1700000001)),
				newMemArray(Dtype{"<f4", 4}, []int{2}, 4, f32s(0.1, 1e-7, 295.5, 2, float32(math.NaN()), float32(math.Inf(-1)), 0, 1e30)),
				newMemArray(Dtype{"|b1", 1}, nil, 4, []byte{1, 0, 1, 1}),
			},
		},
		"strings.csv": {
			[]string{"seq_num", `name, "quoted"`},
			[]Array{
				newMemArray(Dtype{"<u4", 4}, nil, 6, u32s(1, 2, 3, 4, 5, 6)),
				newMemArray(Dtype{"<U9", 36}, nil, 6, slices.Concat(utf32("plain", 9), utf32("a,b", 9),
					utf32(`say "hi"`, 9), utf32("two\nlines", 9), utf32(" ünï ", 9), utf32("", 9))),
			},
		},
	}
}

func TestGolden(t *testing.T) {
	ctx := context.Background()
	outputs := map[string][]byte{}
	for name, a := range goldenNPY() {
		n := NewNPY(a)
		buf := make([]byte, n.Size())
		if _, err := n.ReadAt(ctx, buf, 0); err != nil {
			t.Fatal(err)
		}
		outputs[name] = buf
	}
	for name, s := range goldenCSV() {
		c, err := NewCSV(s.names, s.cols)
		if err != nil {
			t.Fatal(err)
		}
		outputs[name] = readAll(t, c, 1<<16)
	}
	for name, got := range outputs {
		file := filepath.Join("testdata", "golden", name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run go test -update to write it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the golden file:\ngot  %q\nwant %q", name, got, want)
		}
	}
}
