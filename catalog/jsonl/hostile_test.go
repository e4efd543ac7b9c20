package jsonl_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
)

// row is one event as read back: what a good event must give exactly.
type row struct {
	seq  int64
	time float64
	x    any
}

// readRows reads d1's events from row from on with the given fields: every row's seq_num, time
// and x (nil where x is not read).
func readRows(t *testing.T, run catalog.Run, from int, fields []string) ([]row, error) {
	t.Helper()
	var rows []row
	next := from
	err := run.EventPages(context.Background(), "d1", from, -1, fields, func(p *catalog.EventPage) error {
		if p.FirstRow != next {
			return fmt.Errorf("page at row %d, want %d", p.FirstRow, next)
		}
		next += p.Len()
		for i := range p.Len() {
			r := row{seq: p.SeqNum[i], time: p.Time[i]}
			if c := p.Data["x"]; c != nil {
				r.x = c.At(i)
			}
			rows = append(rows, r)
		}
		return nil
	})
	return rows, err
}

// TestHostileDocuments puts one bad document among good events of one stream: whatever is
// wrong with it (broken syntax inside a sound line, values of the wrong type, nesting beyond
// the bound), it costs that document only. The index and every read (all fields, one field,
// none, from a later row) skip it alike, the good events read with their exact values, and
// exactly one log line names the file, the line, the byte offset and the reason. Lines marked
// good are at the edges of what is allowed and must read as a third event.
func TestHostileDocuments(t *testing.T) {
	const ev = `["event", {"descriptor": "d1", "time": 3.5, "seq_num": 7, "data": {"x": 9.25}, "timestamps": {"x": 3.5}}]`
	// bad returns ev with old replaced by new.
	bad := func(old, new string) string {
		if !strings.Contains(ev, old) {
			panic(old)
		}
		return strings.Replace(ev, old, new, 1)
	}
	nest := func(n int, leaf string) string { return strings.Repeat("[", n) + leaf + strings.Repeat("]", n) }
	for _, tc := range []struct {
		name, line, reason string // reason "" marks a good line
	}{
		// Broken syntax inside a sound line.
		{"exponent without digits", bad(`9.25`, `9.25e`), "invalid number"},
		{"fraction without digits", bad(`9.25`, `9.`), "invalid number"},
		{"leading zero", bad(`9.25`, `09.25`), "want ',' or '}'"},
		{"plus sign", bad(`9.25`, `+9.25`), "unexpected '+'"},
		{"letter in number", bad(`9.25`, `9.2x`), "want ',' or '}'"},
		{"flipped literal", bad(`9.25`, `tru`), "invalid literal"},
		{"-NaN", bad(`9.25`, `-NaN`), "unexpected 'N'"},
		{"Infinit", bad(`9.25`, `Infinit`), "invalid literal"},
		{"bad escape", bad(`9.25`, `"a\qb"`), "invalid escape"},
		{"bad unicode escape", bad(`9.25`, `"a\u12G4"`), `invalid \\u escape`},
		{"escape before the end", bad(`9.25}`, `"a\`), "invalid escape"},
		{"control character", bad(`9.25`, "\"a\tb\""), "control character"},
		{"control character in a key", bad(`"x": 9.25`, "\"x\x01\": 9.25"), "control character"},
		{"broken value of another key", bad(`"seq_num"`, `"uid": [1, tru], "seq_num"`), "invalid literal"},
		{"broken timestamp", bad(`{"x": 3.5}`, `{"x": 3.5.}`), "want ',' or '}'"},
		{"missing comma", bad(`, "seq_num"`, ` "seq_num"`), "want ',' or '}'"},
		{"missing colon", bad(`"seq_num":`, `"seq_num"`), "want ':'"},
		{"missing value", bad(`9.25`, ``), "unexpected '}'"},
		{"two points", bad(`"time": 3.5`, `"time": 1.2.3`), "want ',' or '}'"},
		{"list without comma", bad(`9.25`, `[1 2]`), "want ',' or ']'"},
		{"list not closed", bad(`9.25`, `[1, 2`), "want ',' or ']'"},
		{"object in list badly closed", bad(`9.25`, `[{"a": 1]]`), "want ',' or '}'"},
		// Values of the wrong type.
		{"data a list", bad(`{"x": 9.25}`, `[9.25]`), `key \"data\": want object`},
		{"data a string", bad(`{"x": 9.25}`, `"x"`), `key \"data\": want object`},
		{"seq_num a string", bad(`"seq_num": 7`, `"seq_num": "7"`), `key \"seq_num\": want integer`},
		{"seq_num a fraction", bad(`"seq_num": 7`, `"seq_num": 7.5`), "want integer"},
		{"seq_num too large", bad(`"seq_num": 7`, `"seq_num": 1e300`), "want integer"},
		{"seq_num NaN", bad(`"seq_num": 7`, `"seq_num": NaN`), "want integer"},
		{"time an object", bad(`"time": 3.5`, `"time": {"t": 3.5}`), `key \"time\": want number`},
		{"time null", bad(`"time": 3.5`, `"time": null`), `key \"time\": want number`},
		{"timestamps a list", bad(`{"x": 3.5}`, `[3.5]`), `key \"timestamps\": want object`},
		{"filled a list", bad(`"timestamps"`, `"filled": [], "timestamps"`), `key \"filled\": want object`},
		{"descriptor a number", bad(`"descriptor": "d1"`, `"descriptor": 1`), "want plain string"},
		{"page column not a list", `["event_page", {"descriptor": "d1", "time": [3.5], "seq_num": [7], "data": {"x": 9.25}}]`, `data \"x\": want list`},
		{"page ragged", `["event_page", {"descriptor": "d1", "time": [3.5, 3.6], "seq_num": [7, 8], "data": {"x": [9.25]}}]`, `data \"x\" has 1 values in a page of 2 rows`},
		{"page ragged unread column", `["event_page", {"descriptor": "d1", "time": [3.5], "seq_num": [7], "data": {"x": [9.25], "y": [1, 2]}}]`, `data \"y\" has 2 values`},
		{"page ragged repeated key", `["event_page", {"descriptor": "d1", "time": [3.5], "seq_num": [7], "data": {"x": [1, 2], "x": [9.25]}}]`, `data \"x\" has 2 values`},
		{"page ragged repeated data", `["event_page", {"descriptor": "d1", "time": [3.5], "seq_num": [7], "data": {"y": [1, 2]}, "data": {"x": [9.25]}}]`, `data \"y\" has 2 values`},
		{"page time not numbers", `["event_page", {"descriptor": "d1", "time": [3.5, "x"], "seq_num": [7, 8], "data": {"x": [1, 2]}}]`, "want a list of numbers"},
		{"page seq_num fraction", `["event_page", {"descriptor": "d1", "time": [3.5], "seq_num": [7.5], "data": {"x": [9.25]}}]`, "want integer"},
		{"page seq_num not a list", `["event_page", {"descriptor": "d1", "time": [3.5], "seq_num": 7, "data": {"x": [9.25]}}]`, `key \"seq_num\": want list`},
		{"page timestamps not lists", `["event_page", {"descriptor": "d1", "time": [3.5], "seq_num": [7], "data": {"x": [9.25]}, "timestamps": {"x": 3.5}}]`, `timestamps \"x\": want list`},
		{"datum without datum_id", `["datum", {"resource": "r1", "datum_kwargs": {}}]`, `missing key \"datum_id\"`},
		{"datum_id a number", `["datum", {"resource": "r1", "datum_id": 1, "datum_kwargs": {}}]`, `key \"datum_id\": want string`},
		{"datum page ids not strings", `["datum_page", {"resource": "r1", "datum_id": ["a", 2], "datum_kwargs": {}}]`, "want a list of strings"},
		{"datum page ragged", `["datum_page", {"resource": "r1", "datum_id": ["r1/a", "r1/b"], "datum_kwargs": {"i": [1]}}]`, `datum_kwargs \"i\": column of 1 values in a page of 2 rows`},
		{"datum page kwarg not a list", `["datum_page", {"resource": "r1", "datum_id": ["r1/a"], "datum_kwargs": {"i": 1}}]`, `datum_kwargs \"i\": want list`},
		{"datum nested too deeply", `["datum", {"resource": "r1", "datum_id": "r1/a", "datum_kwargs": {"i": ` + nest(512, "") + `}}]`, "nesting deeper than 512"},
		{"datum broken syntax", `["datum", {"resource": "r1", "datum_id": "r1/9", "datum_kwargs": {"i": 1e}}]`, "invalid number"},
		{"descriptor data_keys a list", `["descriptor", {"uid": "d2", "run_start": "bad-run", "time": 2.0, "data_keys": []}]`, "data_keys"},
		{"descriptor broken syntax", `["descriptor", {"uid": "d2", "run_start": "bad-run", "time": 2.0e, "data_keys": {}}]`, "invalid number"},
		// Nesting: a document counts as one level, data as another.
		{"data nested 511 deep", bad(`9.25`, nest(511, "1")), "nesting deeper than 512"},
		{"data nested 511 deep, ragged", bad(`9.25`, nest(511, "")), "nesting deeper than 512"},
		{"other key nested 512 deep", bad(`"seq_num"`, `"uid": `+nest(512, "")+`, "seq_num"`), "nesting deeper than 512"},
		{"timestamp nested 511 deep", bad(`{"x": 3.5}`, `{"x": `+nest(511, "")+`}`), "nesting deeper than 512"},
		{"page column nested 511 deep", `["event_page", {"descriptor": "d1", "time": [3.5], "seq_num": [7], "data": {"x": [9.25], "y": ` + nest(511, "1") + `}}]`, "nesting deeper than 512"},
		// Good lines at the edges.
		{"datum page", `["datum_page", {"resource": "r1", "datum_id": ["r1/a", "r1/b"], "datum_kwargs": {"i": [1, 2], "j": ["u", null]}}]`, ""},
		{"datum nested 510 deep", `["datum_page", {"resource": "r1", "datum_id": ["r1/a", "r1/b"], "datum_kwargs": {"i": [1, ` + nest(509, "") + `]}}]`, ""},
		{"NaN and infinities elsewhere", bad(`"seq_num"`, `"uid": [NaN, Infinity, -Infinity, 1e999], "seq_num"`), ""},
		{"escapes and invalid UTF-8", bad(`"seq_num"`, "\"uid\": \"\\u00e9\\ud800\\n\\\"\xff\", \"seq_num\""), ""},
		{"integral float seq_num", bad(`"seq_num": 7`, `"seq_num": 7.0e0`), ""},
		{"null timestamp", bad(`{"x": 3.5}`, `{"x": null, "y": [[1]]}`), ""},
		{"other key nested 511 deep", bad(`"seq_num"`, `"uid": `+nest(511, "1")+`, "seq_num"`), ""},
		{"unread field nested 510 deep", bad(`{"x": 9.25}`, `{"x": 9.25, "y": `+nest(510, "1")+`}`), ""},
		{"page empty column", `["event_page", {"descriptor": "d1", "time": [3.5], "seq_num": [7], "data": {"x": [9.25], "y": []}}]`, `data \"y\" has 0 values in a page of 1 rows`},
		{"page", `["event_page", {"descriptor": "d1", "time": [3.5], "seq_num": [7], "data": {"x": [9.25], "y": [[1, 2]]}, "timestamps": {}, "filled": {"y": [false]}}]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c, logs := openBad(t, badStart, badDesc, goodEv1, tc.line, goodEv2,
				`["resource", {"uid": "r1", "spec": "S", "root": "/", "resource_path": "p", "resource_kwargs": {}, "run_start": "bad-run"}]`,
				`["datum", {"resource": "r1", "datum_id": "r1/0", "datum_kwargs": {"i": 0}}]`, "")
			run, err := c.Run(ctx, "bad-run")
			if err != nil {
				t.Fatal(err)
			}
			descs, err := run.Descriptors(ctx)
			if err != nil || len(descs) != 1 || descs[0].UID != "d1" {
				t.Fatalf("Descriptors = %v, %v; want d1", descs, err)
			}
			// The values of goodEv1 and goodEv2, and of ev for good lines.
			want := []row{{1, 3.0, 1.5}, {2, 4.0, 2.5}}
			if tc.reason == "" && strings.HasPrefix(tc.line, `["event`) {
				want = []row{{1, 3.0, 1.5}, {7, 3.5, 9.25}, {2, 4.0, 2.5}}
			}
			for _, fields := range [][]string{nil, {"x"}, {"y"}} {
				for from := range len(want) {
					got, err := readRows(t, run, from, fields)
					if err != nil {
						t.Fatalf("fields %v from %d: %v", fields, from, err)
					}
					if len(got) != len(want)-from {
						t.Fatalf("fields %v from %d: %v, want %v", fields, from, got, want[from:])
					}
					for i, g := range got {
						w := want[from+i]
						if fields != nil && fields[0] == "y" {
							w.x = nil
						}
						if g != w {
							t.Errorf("fields %v from %d: row %d = %v, want %v", fields, from, from+i, g, w)
						}
					}
				}
			}
			// The resource's datums: the good one, and a good page's.
			var ids []string
			err = run.Datums(ctx, "r1", func(p *catalog.DatumPage) error {
				ids = append(ids, p.DatumID...)
				return nil
			})
			wantIDs := "r1/0"
			if tc.reason == "" && strings.HasPrefix(tc.line, `["datum`) {
				wantIDs = "r1/a,r1/b,r1/0"
			}
			if err != nil || strings.Join(ids, ",") != wantIDs {
				t.Errorf("Datums = %v, %v; want %s", ids, err, wantIDs)
			}
			lines := logLines(logs)
			if tc.reason == "" {
				if len(lines) != 0 {
					t.Errorf("log: want nothing, have %q", lines)
				}
				return
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "bad.jsonl:4") || !strings.Contains(lines[0], "offset=284 ") || !strings.Contains(lines[0], tc.reason) {
				t.Errorf("log: want one line naming bad.jsonl:4, offset=284 and %q, have %q", tc.reason, lines)
			}
		})
	}
}

// TestCorruptionSweep replaces each byte of a run's event lines, one at a time, by a few others
// (a digit, a letter, a quote, a bracket, a comma, a backslash, a control character): no
// panic, no hang, the read never fails, every event on another line reads with its exact
// values, and the line itself reads exactly or not at all. What the index counts, every read
// gives, whatever fields it asks for.
func TestCorruptionSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("sweep")
	}
	lines := []string{badStart, badDesc}
	var want []row
	for i := range 4 {
		v := 0.5 + float64(i)
		lines = append(lines, fmt.Sprintf(`["event", {"descriptor": "d1", "time": %d.25, "seq_num": %d, "data": {"x": %g, "s": "a\"b"}, "timestamps": {"x": 1.5, "s": 2}, "filled": {}}]`, i, i+1, v))
		want = append(want, row{int64(i + 1), float64(i) + 0.25, v})
	}
	lines = append(lines, `["event_page", {"descriptor": "d1", "time": [4.25, 5.25], "seq_num": [5, 6], "data": {"x": [4.5, 5.5], "s": ["c", "d"]}, "timestamps": {"x": [1, 2], "s": [3, 4]}}]`)
	want = append(want, row{5, 4.25, 4.5}, row{6, 5.25, 5.5})
	// The lines to corrupt: lines[line], which holds rows [first, first+rows).
	type target struct{ line, first, rows int }
	targets := []target{{3, 1, 1}, {6, 4, 2}}
	dir := t.TempDir()
	path := filepath.Join(dir, "sweep.jsonl")
	var logs logBuffer // not shown: a line per mutation
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, tg := range targets {
		orig := lines[tg.line]
		for pos := range len(orig) {
			for _, b := range []byte("7e\"]},\\\x01") {
				if orig[pos] == b {
					continue
				}
				mutated := append([]string(nil), lines...)
				mutated[tg.line] = orig[:pos] + string(b) + orig[pos+1:]
				if err := os.WriteFile(path, []byte(strings.Join(mutated, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				before := len(logLines(&logs))
				c, err := jsonl.Open([]string{path}, jsonl.Options{Logger: log})
				if err != nil {
					t.Fatal(err)
				}
				run, err := c.Run(context.Background(), "bad-run")
				if err != nil {
					t.Fatal(err)
				}
				var counted int
				for _, fields := range [][]string{nil, {"s"}} {
					got, err := readRows(t, run, 0, fields)
					if err != nil {
						t.Fatalf("byte %d of line %d set to %q: %v\n%s", pos, tg.line, b, err, mutated[tg.line])
					}
					// The rows before and after the line are exact; the line's rows are there
					// (its values may be the mutated ones) or not at all.
					n := len(got) - (len(want) - tg.rows)
					if n != 0 && n != tg.rows {
						t.Fatalf("byte %d of line %d set to %q: %d rows\n%s", pos, tg.line, b, len(got), mutated[tg.line])
					}
					if fields == nil {
						counted = n
					} else if n != counted {
						t.Fatalf("byte %d of line %d set to %q: %d rows of the line with all fields, %d with one\n%s", pos, tg.line, b, counted, n, mutated[tg.line])
					}
					for i, g := range got {
						j := i
						if i >= tg.first+n {
							j = i - n + tg.rows
						} else if i >= tg.first {
							continue // the mutated line's own rows
						}
						w := want[j]
						if fields != nil {
							w.x = nil
						}
						if g != w && !(math.IsNaN(g.time) && fields == nil) {
							t.Fatalf("byte %d of line %d set to %q: row %d = %v, want %v\n%s", pos, tg.line, b, i, g, w, mutated[tg.line])
						}
					}
				}
				// A line that lost its descriptor "d1" may belong to no stream, and is silent.
				ours := strings.Contains(mutated[tg.line], `"descriptor": "d1",`)
				if logged := len(logLines(&logs)) - before; counted == 0 && logged != 1 && ours || counted != 0 && logged != 0 || logged > 1 {
					t.Fatalf("byte %d of line %d set to %q: %d rows of the line, %d log lines\n%s", pos, tg.line, b, counted, logged, mutated[tg.line])
				}
			}
		}
	}
}
