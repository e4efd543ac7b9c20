package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// progress reports how far brokerfs copy is. On a terminal it redraws one status line (at most
// five times a second); anywhere else (a log file, a pipe, journald) it writes a plain line
// every 10 seconds and one at the end, never a carriage return. The rate is the average since
// the first run was done, shown once it means something: after 2 seconds and 2 runs. Rates that
// start at "0 runs/hr" or jump to hundreds a second from the first few small runs say nothing.
type progress struct {
	w       io.Writer
	tty     bool
	on      bool
	total   int
	done    int
	docs    int
	start   time.Time
	last    time.Time // last line written
	lastLen int       // length of the status line on the terminal
	now     func() time.Time
}

const (
	ttyEvery   = 200 * time.Millisecond
	plainEvery = 10 * time.Second
	rateAfter  = 2 * time.Second
)

func newProgress(w io.Writer, total int, on bool) *progress {
	return &progress{w: w, tty: isTerminal(w), on: on && total > 0, total: total, now: time.Now, start: time.Now()}
}

// isTerminal reports whether w is a terminal (a TCGETS ioctl succeeds on it).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// add records one run done, with its documents.
func (p *progress) add(docs int) {
	p.done++
	p.docs += docs
	if !p.on {
		return
	}
	now := p.now()
	every := plainEvery
	if p.tty {
		every = ttyEvery
	}
	if now.Sub(p.last) >= every && p.done < p.total {
		p.draw(now)
	}
}

// finish writes the last line.
func (p *progress) finish() {
	if !p.on {
		return
	}
	p.draw(p.now())
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) draw(now time.Time) {
	p.last = now
	line := p.line(now)
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	pad := ""
	if n := p.lastLen - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.lastLen = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
}

// line is the status: runs done of total, documents, and once known the rate and time left.
func (p *progress) line(now time.Time) string {
	s := fmt.Sprintf("copying runs: %d/%d (%.0f%%), %d documents", p.done, p.total, 100*float64(p.done)/float64(p.total), p.docs)
	elapsed := now.Sub(p.start)
	if elapsed < rateAfter || p.done < 2 {
		return s
	}
	perSec := float64(p.done) / elapsed.Seconds()
	switch {
	case perSec >= 1:
		s += fmt.Sprintf(", %.1f runs/s", perSec)
	case perSec*60 >= 1:
		s += fmt.Sprintf(", %.1f runs/min", perSec*60)
	default:
		s += fmt.Sprintf(", %.1f runs/h", perSec*3600)
	}
	if left := p.total - p.done; left > 0 {
		eta := time.Duration(float64(left) / perSec * float64(time.Second))
		s += ", " + eta.Round(time.Second).String() + " left"
	} else {
		s += ", " + elapsed.Round(time.Second).String()
	}
	return s
}
