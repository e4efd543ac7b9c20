package encode

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPandasReadCSV has pandas.read_csv read a CSV of every value kind and checks that the
// floats come back bit for bit, the integers exactly, the strings unchanged, and that each
// float's text is Python's repr of it.
func TestPandasReadCSV(t *testing.T) {
	floats := []float64{0.1, 1.0 / 3, 1e-300, 5e-324, 1e22, math.Copysign(0, -1), 0, 2, 295.5, 1e-07,
		1e16, 123456789012345678, math.MaxFloat64, 2.2250738585072014e-308, 0.30000000000000004,
		math.NaN(), math.Inf(1), math.Inf(-1), 9007199254740993, -1.5e-310}
	rng := rand.New(rand.NewPCG(20, 21))
	for len(floats) < 400 {
		if f := math.Float64frombits(rng.Uint64()); !math.IsNaN(f) {
			floats = append(floats, f)
		}
	}
	n := len(floats)
	strs := []string{"plain", "with,comma", `say "hi"`, "two\nlines", "crlf\r\nend", "ünï©ødé 日本語 😀",
		" lead", "trail ", `""`, "a,\"b\"\n,c", "="}
	ints := []int64{math.MinInt64, math.MaxInt64, 0, -1, 1<<53 + 1, -(1<<53 + 1)}

	f8, f4, i8 := make([]byte, 8*n), make([]byte, 4*n), make([]byte, 8*n)
	u8, b1, vec := make([]byte, 8*n), make([]byte, n), make([]byte, 16*n)
	width := 0
	for _, s := range strs {
		width = max(width, UnicodeLen(s))
	}
	str := make([]byte, 4*width*n)
	exp := map[string][]string{} // column -> expected values: float bits in hex, or text
	for i, f := range floats {
		mustPut(t, PutFloat(f8[8*i:], Dtype{"<f8", 8}, f))
		mustPut(t, PutFloat(f4[4*i:], Dtype{"<f4", 4}, f))
		mustPut(t, PutInt(i8[8*i:], Dtype{"<i8", 8}, ints[i%len(ints)]))
		mustPut(t, PutUint(u8[8*i:], Dtype{"<u8", 8}, math.MaxUint64-uint64(i)))
		mustPut(t, PutBool(b1[i:], Dtype{"|b1", 1}, i%2 == 0))
		mustPut(t, PutFloat(vec[16*i:], Dtype{"<f8", 8}, float64(i)))
		mustPut(t, PutFloat(vec[16*i+8:], Dtype{"<f8", 8}, floats[n-1-i]))
		PutUnicode(str[4*width*i:], strs[i%len(strs)], width)

		exp["f8"] = append(exp["f8"], strconv.FormatUint(math.Float64bits(f), 16))
		exp["f4"] = append(exp["f4"], strconv.FormatUint(uint64(math.Float32bits(float32(f))), 16))
		exp["i8"] = append(exp["i8"], strconv.FormatInt(ints[i%len(ints)], 10))
		exp["u8"] = append(exp["u8"], strconv.FormatUint(math.MaxUint64-uint64(i), 10))
		exp["b1"] = append(exp["b1"], strconv.FormatBool(i%2 == 0))
		exp["vec[0]"] = append(exp["vec[0]"], strconv.FormatUint(math.Float64bits(float64(i)), 16))
		exp["vec[1]"] = append(exp["vec[1]"], strconv.FormatUint(math.Float64bits(floats[n-1-i]), 16))
		exp[`s, "q"`] = append(exp[`s, "q"`], strs[i%len(strs)])
	}
	c, err := NewCSV([]string{"f8", "f4", "i8", "u8", "b1", "vec", `s, "q"`}, []Array{
		newMemArray(Dtype{"<f8", 8}, nil, n, f8),
		newMemArray(Dtype{"<f4", 4}, nil, n, f4),
		newMemArray(Dtype{"<i8", 8}, nil, n, i8),
		newMemArray(Dtype{"<u8", 8}, nil, n, u8),
		newMemArray(Dtype{"|b1", 1}, nil, n, b1),
		newMemArray(Dtype{"<f8", 8}, []int{2}, n, vec),
		newMemArray(Unicode(width), nil, n, str),
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(file, readAll(t, c, 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(exp)
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "expected.json")
	if err := os.WriteFile(spec, js, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(runPython(t, pandasScript, file, spec)))
}

func mustPut(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

const pandasScript = `
import csv, json, struct, sys
import numpy as np
import pandas as pd

path, exp = sys.argv[1], json.load(open(sys.argv[2]))
bad = []
def check(what, ok):
    if not ok:
        bad.append(what)

df = pd.read_csv(path, float_precision='round_trip')
want_dtypes = {'f8': 'float64', 'f4': 'float64', 'i8': 'int64', 'u8': 'uint64', 'b1': 'bool',
               'vec[0]': 'float64', 'vec[1]': 'float64', 's, "q"': 'object'}
check('columns %r' % list(df.columns), list(df.columns) == list(want_dtypes))
for col, dt in want_dtypes.items():
    check('dtype %s %s' % (col, df[col].dtype), str(df[col].dtype) == dt)

def bits64(col):
    return [int(b, 16) for b in exp[col]]
for col in ('f8', 'vec[0]', 'vec[1]'):
    got = df[col].to_numpy().view(np.uint64)
    for i, (g, w) in enumerate(zip(got, bits64(col))):
        wf = struct.unpack('<d', struct.pack('<Q', w))[0]
        check('%s row %d: %r != %r' % (col, i, float(df[col][i]), wf), int(g) == w or (np.isnan(wf) and np.isnan(df[col][i])))
f4 = df['f4'].to_numpy().astype(np.float32).view(np.uint32)
for i, (g, w) in enumerate(zip(f4, bits64('f4'))):
    check('f4 row %d: %x != %x' % (i, g, w), int(g) == w or (w & 0x7fffffff) > 0x7f800000)
check('i8', [str(v) for v in df['i8']] == exp['i8'])
check('u8', [str(v) for v in df['u8']] == exp['u8'])
check('b1', [str(v).lower() for v in df['b1']] == exp['b1'])
check('strings', list(df['s, "q"']) == exp['s, "q"'])

# The text of each float is Python's repr of it, as pandas' own to_csv writes.
rows = list(csv.reader(open(path, newline='')))
for i, row in enumerate(rows[1:]):
    w = struct.unpack('<d', struct.pack('<Q', bits64('f8')[i]))[0]
    want = 'NaN' if w != w else repr(w)
    check('text row %d: %r != %r' % (i, row[0], want), row[0] == want)

# The default parser (float_precision=None) is exact for these, not for every float.
default = pd.read_csv(path)
listed = {struct.pack('<d', v) for v in [0.1, 1/3, 1e-300, 5e-324, 1e22, -0.0, 123456789012345678.0]}
got = default['f8'].to_numpy()
seen = 0
for i, w in enumerate(bits64('f8')):
    if struct.pack('<Q', w) in listed:
        seen += 1
        check('default parser row %d: %r' % (i, got[i]), struct.pack('<d', got[i]) == struct.pack('<Q', w))
check('listed floats present', seen == len(listed))
off = int(np.sum(got.view(np.uint64) != np.array(bits64('f8'), dtype=np.uint64)) - np.sum(np.isnan(got)))

for b in bad[:20]:
    print('FAIL', b)
print(len(df), 'rows read back exactly by pandas', pd.__version__, 'with float_precision="round_trip";',
      'the default parser is off for', off, 'of', len(got), 'floats')
sys.exit(1 if bad else 0)
`
