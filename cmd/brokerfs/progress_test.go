package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressPlain drives the progress display with a fake clock: to a file (not a
// terminal) it writes plain lines, at most one per 10 s and one at the end, never a \r; the
// rate appears only after 2 s and 2 runs, in a unit that shows it.
func TestProgressPlain(t *testing.T) {
	var out bytes.Buffer
	t0 := time.Unix(1_700_000_000, 0)
	now := t0
	p := newProgress(&out, 100, true)
	p.start, p.now = t0, func() time.Time { return now }
	if p.tty {
		t.Fatal("a bytes.Buffer is taken for a terminal")
	}
	now = t0.Add(10 * time.Millisecond)
	p.add(5) // first run: the first line, no rate yet
	for i := 1; i < 50; i++ {
		now = now.Add(200 * time.Millisecond) // 50 runs in ~10 s
		p.add(5)
	}
	now = t0.Add(100 * time.Second)
	for i := 50; i < 100; i++ {
		p.add(1)
	}
	p.finish()
	got := out.String()
	if strings.Contains(got, "\r") {
		t.Errorf("plain output holds a carriage return: %q", got)
	}
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	want := []string{
		"copying runs: 1/100 (1%), 5 documents",
		"copying runs: 51/100 (51%), 251 documents, 30.6 runs/min, 1m36s left", // 51 runs in 100 s
		"copying runs: 100/100 (100%), 300 documents, 1.0 runs/s, 1m40s",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

func TestProgressSlowRate(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	p := &progress{total: 100, done: 30, start: t0}
	if got := p.line(t0.Add(10 * time.Minute)); !strings.HasSuffix(got, "3.0 runs/min, 23m20s left") {
		t.Errorf("30 runs in 10 minutes: %q", got)
	}
	p.total, p.done = 10, 2
	if got := p.line(t0.Add(4 * time.Hour)); !strings.HasSuffix(got, "0.5 runs/h, 16h0m0s left") {
		t.Errorf("2 runs in 4 hours: %q", got)
	}
}
