package msgpack

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerfs/brokerfs/catalog"
)

// realRun is a run packed by databroker-pack from APS beamline 4-ID-Polar (see testdata).
const (
	realDir = "../../testdata/apstools/msgpack-pack/documents"
	realUID = "624e776a-a914-4a74-8841-babf1591fb29"
)

// pythonDump runs testdata/dump.py on path with the system Python and its msgpack module:
// an independent decoder to compare with. Missing Python fails the test: the comparison is
// the point.
func pythonDump(t *testing.T, path string) []string {
	t.Helper()
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("%s is needed to check decoded values: %v", python, err)
	}
	cmd := exec.Command(python, "testdata/dump.py", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 testdata/dump.py (is python3-msgpack installed?): %v\n%s", err, stderr.String())
	}
	return strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
}

// goDump prints a run the way testdata/dump.py does.
func goDump(t *testing.T, run catalog.Run, fields []string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	out = append(out, "doc start "+string(run.Start().Raw))
	descs, err := run.Descriptors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range descs {
		out = append(out, "doc descriptor "+string(d.Raw))
	}
	if stop, err := run.Stop(ctx); err == nil {
		out = append(out, "doc stop "+string(stop.Raw))
	}
	for _, d := range descs {
		err := run.EventPages(ctx, d.UID, 0, -1, fields, func(p *catalog.EventPage) error {
			for i := 0; i < p.Len(); i++ {
				data, ts := map[string]any{}, map[string]any{}
				for k, c := range p.Data {
					data[k] = c.At(i)
				}
				for k, v := range p.Timestamps {
					ts[k] = v[i]
				}
				row := []any{d.UID, int64(p.FirstRow + i), p.Time[i], p.SeqNum[i], data, ts}
				out = append(out, "row "+string(catalog.AppendJSON(nil, row)))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestRealRun(t *testing.T) {
	c, lb := openDir(t, realDir)
	ctx := context.Background()
	starts, err := c.Runs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(starts) != 1 || starts[0].UID != realUID || starts[0].ScanID != 287 || starts[0].PlanName != "qxscan" {
		t.Fatalf("Runs = %+v", starts)
	}
	run := mustRun(t, c, realUID)
	descs, _ := run.Descriptors(ctx)
	counts := map[string]int{}
	for _, d := range descs {
		err := run.EventPages(ctx, d.UID, 0, -1, []string{}, func(p *catalog.EventPage) error {
			counts[d.Name] += p.Len()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if counts["primary"] != 183 || counts["baseline"] != 2 || len(counts) != 2 {
		t.Errorf("events per stream = %v, want primary 183, baseline 2", counts)
	}
	stop, err := run.Stop(ctx)
	if err != nil || stop.ExitStatus != "success" || stop.NumEvents["primary"] != 183 {
		t.Errorf("Stop = %+v, %v", stop, err)
	}

	want := pythonDump(t, filepath.Join(realDir, realUID+".msgpack"))
	got := goDump(t, run, nil)
	compareLines(t, got, want)
	if lines := lb.lines(); len(lines) != 0 {
		t.Errorf("log lines: %q", lines)
	}
}

// TestRealRunFields reads each field of the real run alone and checks it against the rows
// read with every field.
func TestRealRunFields(t *testing.T) {
	c, _ := openDir(t, realDir)
	ctx := context.Background()
	run := mustRun(t, c, realUID)
	descs, _ := run.Descriptors(ctx)
	for _, d := range descs {
		all := map[string][]any{}
		err := run.EventPages(ctx, d.UID, 0, -1, nil, func(p *catalog.EventPage) error {
			for k, col := range p.Data {
				for i := 0; i < col.Len(); i++ {
					all[k] = append(all[k], col.At(i))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range d.Keys() {
			var got []any
			err := run.EventPages(ctx, d.UID, 0, -1, []string{f}, func(p *catalog.EventPage) error {
				if len(p.Data) != 1 {
					return fmt.Errorf("page has %d columns, want 1", len(p.Data))
				}
				col := p.Data[f]
				for i := 0; i < col.Len(); i++ {
					got = append(got, col.At(i))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(all[f]) {
				t.Errorf("field %q alone = %v, want %v", f, got, all[f])
			}
		}
	}
}

func compareLines(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d lines, python has %d", len(got), len(want))
	}
	bad := 0
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			if bad++; bad <= 3 {
				t.Errorf("line %d:\n   go %.600s\npython %.600s", i, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d lines differ", bad, len(want))
	}
}
