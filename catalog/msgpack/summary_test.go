package msgpack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/catalogtest"
)

// startFiles returns run files whose start documents the summary tests read: the test
// catalogs (catalogtest), the varied and live runs of the other tests, the real APS run, and
// starts whose summary fields come in every form the value decoder accepts (bin strings,
// integral floats, big and negative integers, repeated keys, non-string keys, numpy
// scalars, timestamps, fields nested in other values).
func startFiles(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	for i, docs := range catalogtest.Runs() {
		out[fmt.Sprintf("catalogtest-%d", i)] = encode(t, docs)
	}
	out["varied"] = encode(t, variedRun()[:1])
	out["live"] = encode(t, liveDocs("live", 2))
	if b, err := os.ReadFile(filepath.Join(realDir, realUID+".msgpack")); err == nil {
		out["real"] = b
	} else {
		t.Fatalf("the real run: %v", err)
	}
	for name, doc := range startVariants() {
		out[name] = rawPair("start", doc)
	}
	return out
}

// rawPair encodes one [name, document] pair, the document given as raw msgpack.
func rawPair(name string, doc []byte) []byte {
	b := appendArrayHeader(nil, 2)
	b = append(b, 0xa0|byte(len(name)))
	b = append(b, name...)
	return append(b, doc...)
}

// mp builds raw msgpack by hand, for forms the Writer does not produce.
func mpStr(s string) []byte { return append([]byte{0xa0 | byte(len(s))}, s...) }
func mpBin(s string) []byte { return append([]byte{0xc4, byte(len(s))}, s...) }
func mpF64(f float64) []byte {
	b := []byte{0xcb, 0, 0, 0, 0, 0, 0, 0, 0}
	u := math.Float64bits(f)
	for i := range 8 {
		b[1+i] = byte(u >> (56 - 8*i))
	}
	return b
}
func mpMap(kv ...[]byte) []byte {
	b := appendMapHeader(nil, len(kv)/2)
	for _, x := range kv {
		b = append(b, x...)
	}
	return b
}
func mpArr(v ...[]byte) []byte {
	b := appendArrayHeader(nil, len(v))
	for _, x := range v {
		b = append(b, x...)
	}
	return b
}

// startVariants are start documents (raw msgpack) in unusual but valid forms, and some that
// are not valid starts.
func startVariants() map[string][]byte {
	uid, tm := mpStr("uid"), mpStr("time")
	u1 := mpStr("0f5c8a4e-1d2b-4c3a-9e8f-7a6b5c4d3e2f")
	t1 := mpF64(1700000000.25)
	npScalar := func(typ string, data []byte) []byte { // a msgpack-numpy scalar
		return mpMap(mpStr("nd"), []byte{0xc2}, mpStr("type"), mpStr(typ), mpStr("kind"), mpStr(""),
			mpStr("data"), mpBin(string(data)))
	}
	deep := []byte{}
	for range 100 {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0x01)
	tooDeep := []byte{}
	for range 600 {
		tooDeep = append(tooDeep, 0x91)
	}
	tooDeep = append(tooDeep, 0x01)
	return map[string][]byte{
		"plain":          mpMap(uid, u1, tm, t1, mpStr("scan_id"), []byte{0x07}, mpStr("plan_name"), mpStr("count")),
		"bin-values":     mpMap(uid, mpBin("u-bin"), tm, t1, mpStr("plan_name"), mpBin("scan")),
		"bin-keys":       mpMap(mpBin("uid"), u1, mpBin("time"), t1, mpBin("scan_id"), []byte{0x05}),
		"int-time":       mpMap(uid, u1, tm, []byte{0xce, 0x65, 0x53, 0xf1, 0x00}),
		"float32-time":   mpMap(uid, u1, tm, []byte{0xca, 0x4e, 0xca, 0xa7, 0xe2}),
		"float-scan":     mpMap(uid, u1, tm, t1, mpStr("scan_id"), mpF64(42)),
		"frac-scan":      mpMap(uid, u1, tm, t1, mpStr("scan_id"), mpF64(42.5)),
		"huge-scan":      mpMap(uid, u1, tm, t1, mpStr("scan_id"), []byte{0xcf, 0xff, 0, 0, 0, 0, 0, 0, 1}),
		"neg-scan":       mpMap(uid, u1, tm, t1, mpStr("scan_id"), []byte{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 1}),
		"nil-scan":       mpMap(uid, u1, tm, t1, mpStr("scan_id"), []byte{0xc0}),
		"str-scan":       mpMap(uid, u1, tm, t1, mpStr("scan_id"), mpStr("12")),
		"bool-scan":      mpMap(uid, u1, tm, t1, mpStr("scan_id"), []byte{0xc3}),
		"int-plan":       mpMap(uid, u1, tm, t1, mpStr("plan_name"), []byte{0x03}),
		"repeated":       mpMap(uid, mpStr("first"), tm, t1, uid, u1, mpStr("scan_id"), []byte{1}, mpStr("scan_id"), []byte{2}),
		"nonstr-keys":    mpMap([]byte{0x01}, mpStr("uid"), uid, u1, []byte{0xc0}, t1, mpArr(mpStr("uid")), mpStr("x"), tm, t1),
		"nested":         mpMap(mpStr("md"), mpMap(uid, mpStr("inner"), tm, mpF64(1)), uid, u1, mpStr("l"), mpArr(uid, tm), tm, t1),
		"deep-other":     mpMap(uid, u1, mpStr("deep"), deep, tm, t1),
		"np-scan":        mpMap(uid, u1, tm, t1, mpStr("scan_id"), npScalar("<i8", []byte{9, 0, 0, 0, 0, 0, 0, 0})),
		"np-time":        mpMap(uid, u1, tm, npScalar("<f8", mpF64(1700000000.5)[1:])),
		"np-uid":         mpMap(uid, npScalar("<U3", []byte{'a', 0, 0, 0, 'b', 0, 0, 0, 'c', 0, 0, 0}), tm, t1),
		"ts32-time":      mpMap(uid, u1, tm, []byte{0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00}),
		"ts64-time":      mpMap(uid, u1, tm, []byte{0xd7, 0xff, 0, 0, 0, 4, 0x65, 0x53, 0xf1, 0x00}),
		"ext-time":       mpMap(uid, u1, tm, []byte{0xd4, 0x05, 0x00}),
		"empty":          mpMap(),
		"no-uid":         mpMap(tm, t1),
		"no-time":        mpMap(uid, u1),
		"int-uid":        mpMap(uid, []byte{0x01}, tm, t1),
		"nil-time":       mpMap(uid, u1, tm, []byte{0xc0}),
		"not-a-map":      mpArr(uid, u1),
		"numpy-map":      npScalar("<i8", []byte{1, 0, 0, 0, 0, 0, 0, 0}),
		"too-deep":       mpMap(uid, u1, tm, t1, mpStr("deep"), tooDeep),
		"too-deep-uid":   mpMap(uid, tooDeep, tm, t1),
		"deep-in-scan":   mpMap(uid, u1, tm, t1, mpStr("scan_id"), deep),
		"map32-header":   append([]byte{0xdf, 0, 0, 0, 2}, append(append(uid, u1...), append(tm, t1...)...)...),
		"str8-uid-value": mpMap(uid, append([]byte{0xd9, 3}, "abc"...), tm, t1),
	}
}

func sumFields(s *catalog.Start) string {
	return fmt.Sprintf("uid=%q time=%v scan=%v/%d plan=%q", s.UID, s.Time, s.HasScan, s.ScanID, s.PlanName)
}

// TestSummaryMatchesWhole checks that the listing's summary of every start document gives
// the fields of the whole parse, or the same error, and leaves Doc and Raw to it.
func TestSummaryMatchesWhole(t *testing.T) {
	for name, file := range startFiles(t) {
		t.Run(name, func(t *testing.T) {
			sum, head, err := readHead(bytes.NewReader(file), name, int64(len(file)))
			whole, _, _, werr := readStartDoc(bytes.NewReader(file), int64(len(file)), nil, false)
			if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
				t.Fatalf("summary: %v; whole parse: %v", err, werr)
			}
			if err != nil {
				return
			}
			if sum.Doc != nil || sum.Raw != nil {
				t.Errorf("the summary has Doc or Raw")
			}
			if got, want := sumFields(sum), sumFields(whole); got != want {
				t.Errorf("summary %s, whole parse %s", got, want)
			}
			full, err := parseHead(head, nil)
			if err != nil {
				t.Fatalf("parseHead of the head: %v", err)
			}
			if got, want := sumFields(full), sumFields(whole); got != want || !bytes.Equal(full.Raw, whole.Raw) {
				t.Errorf("parseHead %s %s, whole parse %s %s", got, full.Raw, want, whole.Raw)
			}
			js, err := headJSON(head)
			if err != nil || !bytes.Equal(js, whole.Raw) {
				t.Errorf("headJSON = %s, %v; want %s", js, err, whole.Raw)
			}
		})
	}
}

// TestSummaryPython compares the summaries with Python's msgpack reading the same files
// (testdata/starts.py), for the files whose values Python decodes as brokerfs does (string
// keys, no numpy, no timestamps).
func TestSummaryPython(t *testing.T) {
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("%s is needed to check decoded values: %v", python, err)
	}
	dir := t.TempDir()
	var names, paths []string
	for name, file := range startFiles(t) {
		if strings.HasPrefix(name, "np-") || strings.HasPrefix(name, "ts") || strings.HasPrefix(name, "bin-keys") ||
			strings.HasPrefix(name, "nonstr") || strings.HasPrefix(name, "ext-") || strings.HasPrefix(name, "numpy") ||
			strings.HasPrefix(name, "not-a-map") || strings.HasPrefix(name, "too-deep") || name == "bin-values" {
			continue // Python decodes these otherwise (bytes, Timestamp, dicts) or not at all
		}
		p := filepath.Join(dir, name+".msgpack")
		if err := os.WriteFile(p, file, 0o644); err != nil {
			t.Fatal(err)
		}
		names, paths = append(names, name), append(paths, p)
	}
	cmd := exec.Command(python, append([]string{"testdata/starts.py"}, paths...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 testdata/starts.py (is python3-msgpack installed?): %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(paths) {
		t.Fatalf("python printed %d lines for %d files", len(lines), len(paths))
	}
	checked := 0
	for i, line := range lines {
		var want []any
		if err := json.Unmarshal([]byte(line), &want); err != nil {
			t.Fatalf("%s: %q: %v", names[i], line, err)
		}
		file, _ := os.ReadFile(paths[i])
		sum, _, err := readHead(bytes.NewReader(file), paths[i], int64(len(file)))
		if len(want) == 1 {
			if err == nil {
				t.Errorf("%s: summary %s, Python finds no valid start", names[i], sumFields(sum))
			}
			checked++
			continue
		}
		if err != nil {
			t.Errorf("%s: %v, Python reads %s", names[i], err, line)
			continue
		}
		got := fmt.Sprintf("%s %v %v %d %s", sum.UID, sum.Time, sum.HasScan, sum.ScanID, sum.PlanName)
		exp := fmt.Sprintf("%s %v %v %d %s", want[0], want[1], want[2], int64(want[3].(float64)), want[4])
		if got != exp {
			t.Errorf("%s: summary %s, Python %s", names[i], got, exp)
		}
		checked++
	}
	if checked < 20 {
		t.Errorf("only %d files compared", checked)
	}
}

// TestSummaryAllocs checks that a summary does not build the document: a start of 5,000 keys
// costs a few allocations (the four fields), not thousands.
func TestSummaryAllocs(t *testing.T) {
	doc := appendMapHeader(nil, 5002)
	doc = append(doc, mpStr("uid")...)
	doc = append(doc, mpStr("u")...)
	doc = append(doc, mpStr("time")...)
	doc = append(doc, mpF64(1)...)
	for i := range 5000 {
		doc = append(doc, mpStr(fmt.Sprintf("k%d", i))...)
		doc = append(doc, mpArr(mpStr("v"), mpF64(float64(i)))...)
	}
	var err error
	allocs := testing.AllocsPerRun(10, func() { _, err = summaryStart(doc) })
	if err != nil {
		t.Fatal(err)
	}
	if allocs > 10 {
		t.Errorf("summary of a 5,000-key start: %v allocations", allocs)
	}
}

// FuzzSummary: for arbitrary bytes as a start document, the summary never panics and agrees
// with the whole parse (fields, or the error).
func FuzzSummary(f *testing.F) {
	for _, file := range startFiles(f) {
		_, p, _ := arrayLen(file, 0)
		_, p, _ = str(file, p)
		end, err := skip(file, p)
		if err == nil {
			f.Add(file[p:end])
		}
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if _, err := skip(doc, 0); err != nil {
			return // readStartDoc hands over only what skip walked
		}
		end, _ := skip(doc, 0)
		doc = doc[:end]
		sum, err := summaryStart(doc)
		whole, werr := parseStart(doc)
		if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
			t.Fatalf("summary: %v; whole parse: %v", err, werr)
		}
		if err == nil && sumFields(sum) != sumFields(whole) {
			t.Fatalf("summary %s, whole parse %s", sumFields(sum), sumFields(whole))
		}
	})
}
