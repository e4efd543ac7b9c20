package msgpack

// Reading a big run file behind its index pass. The first open of a run indexes the whole
// file (index.go) before Catalog.Run returns; a caller that then decodes a stream reads the
// file a second time. For a big file read cold, the pass takes what the disk takes, and the
// decode after it as long again: a caller that asks (catalog.WithEarlyRun) gets the run as
// indexed so far once the pass meets the first event, and its EventPages follows the pass, reading
// each document the pass has just read (from the page cache) while the pass reads on.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/filestore"
)

const (
	// defaultEarlyMin is the smallest file whose pass offers an early run (Options.EarlyMin):
	// below it, the pass is short next to anything done with the run.
	defaultEarlyMin = 64 << 20
	// publishEvery is how far the pass reads between telling its followers.
	publishEvery = 1 << 20
	// stopTail is how much of a file's end endsWithStop reads.
	stopTail = 64 << 10
)

// maxStopTries bounds the stop-like pairs endsWithStop checks, from the last: checking one
// costs what follows it, and a file's last stop holds none in practice.
const maxStopTries = 16

// stopPair is how a ["stop", {...}] document begins: a list of two, the name as a fixstr.
const stopPair = "\x92\xa4stop"

// endsWithStop reports whether the file r of size bytes ends with a stop document (within its
// last stopTail bytes, one of its last maxStopTries stop-like pairs): a run that is finished,
// most likely. Only such a file's pass offers an
// early run: a live run's (no stop yet) would be decoded into a cache entry for nothing, the
// run not being persisted. A stop-like run of bytes inside other data would only cost that.
func endsWithStop(r io.ReaderAt, size int64) bool {
	n := min(size, stopTail)
	b := make([]byte, n)
	if _, err := r.ReadAt(b, size-n); err != nil {
		return false
	}
	pair := []byte(stopPair)
	tries := 0
	for i := bytes.LastIndex(b, pair); i >= 0 && tries < maxStopTries; i = bytes.LastIndex(b[:i], pair) {
		tries++
		p := i + len(stopPair)
		if end, err := skip(b, i); err == nil && end == len(b) && p < len(b) && isMap(b[p]) {
			return true
		}
	}
	return false
}

// progress is an index pass under way, as its followers see it.
type progress struct {
	mu   sync.Mutex
	end  int64        // the documents before end are indexed; guarded by mu
	gaps []passedSpan // the gaps before end, in file order; guarded by mu
	// seq is every gap the pass has found, in file order: the pass's own, appended past
	// what followers were given (gaps, a prefix of it), so that a publish copies none.
	seq       []passedSpan
	descs     []*catalog.Descriptor
	resources []*catalog.Resource
	wake      chan struct{} // closed at the next publish; guarded by mu
	done      bool          // guarded by mu
	ix        *index        // the finished index, nil when the pass failed; guarded by mu
	err       error         // guarded by mu
}

// passedSpan is a stretch [off, end) of a file the pass passed over.
type passedSpan struct{ off, end int64 }

// addGap notes a gap the pass found; followers see it at the next publish.
func (p *progress) addGap(off, end int64) { p.seq = append(p.seq, passedSpan{off, end}) }

func newProgress() *progress { return &progress{wake: make(chan struct{})} }

// publish tells followers that the documents before ix.end are indexed.
func (p *progress) publish(ix *index) {
	p.mu.Lock()
	p.end = ix.end
	p.gaps = slices.Clip(p.seq)
	p.descs, p.resources = slices.Clip(ix.descs), slices.Clip(ix.resources)
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
}

// finish ends the pass: ix is the finished index, or err why there is none.
func (p *progress) finish(ix *index, err error) {
	p.mu.Lock()
	p.done, p.ix, p.err = true, ix, err
	if ix != nil {
		p.end, p.gaps = ix.end, slices.Clip(p.seq)
		p.descs, p.resources = ix.descs, ix.resources
	}
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
}

// snapshot returns what followers may read now.
func (p *progress) snapshot() (end int64, gaps []passedSpan, done bool, ix *index, wake chan struct{}, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.end, p.gaps, p.done, p.ix, p.wake, p.err
}

// final waits for the pass to end.
func (p *progress) final(ctx context.Context) (*index, error) {
	for {
		_, _, done, ix, wake, err := p.snapshot()
		if done {
			return ix, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// earlyRun is a run whose index pass is under way (catalog.EarlyRun).
type earlyRun struct {
	path    string
	start   *catalog.Start
	fi      os.FileInfo // the file the pass reads
	version string
	prog    *progress
}

var (
	_ catalog.Run       = (*earlyRun)(nil)
	_ catalog.Versioner = (*earlyRun)(nil)
)

func newEarlyRun(path string, fi os.FileInfo, start *catalog.Start, prog *progress) *earlyRun {
	ino, dev := filestore.StatIDs(fi)
	return &earlyRun{path: path, start: start, fi: fi, prog: prog,
		version: filestore.VersionKey(path, fi.Size(), fi.ModTime(), ino, dev)}
}

// Version implements catalog.Versioner: the version the finished run will have.
func (r *earlyRun) Version(context.Context) (string, error) { return r.version, nil }

// Start implements catalog.Run.
func (r *earlyRun) Start() *catalog.Start { return r.start }

// Stop implements catalog.Run: not found until the pass ends.
func (r *earlyRun) Stop(context.Context) (*catalog.Stop, error) {
	_, _, _, ix, _, _ := r.prog.snapshot()
	if ix == nil || ix.stop == nil {
		return nil, fmt.Errorf("stop of run %s: %w", r.start.UID, catalog.ErrNotFound)
	}
	return ix.stop, nil
}

// Descriptors implements catalog.Run: those indexed so far.
func (r *earlyRun) Descriptors(context.Context) ([]*catalog.Descriptor, error) {
	r.prog.mu.Lock()
	defer r.prog.mu.Unlock()
	return r.prog.descs, nil
}

// Resources implements catalog.Run: those indexed so far.
func (r *earlyRun) Resources(context.Context) ([]*catalog.Resource, error) {
	r.prog.mu.Lock()
	defer r.prog.mu.Unlock()
	return r.prog.resources, nil
}

// Datums implements catalog.Run, once the pass has ended.
func (r *earlyRun) Datums(ctx context.Context, resource string, fn func(*catalog.DatumPage) error) error {
	ix, err := r.prog.final(ctx)
	if err != nil {
		return err
	}
	return newRun(r.path, ix).Datums(ctx, resource, fn)
}

// open opens the file the pass reads: the same inode, size and mtime.
func (r *earlyRun) open() (*os.File, error) {
	f, err := os.Open(r.path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !sameFile(fi, r.fi) {
		err = fmt.Errorf("open %s: the file changed since its index pass began", r.path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func sameFile(a, b os.FileInfo) bool {
	ia, da := filestore.StatIDs(a)
	ib, db := filestore.StatIDs(b)
	return ia == ib && da == db && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// EventPages implements catalog.Run: the pages the finished run's EventPages gives, read as
// the pass indexes them. It walks every document from the file's start, as far as the pass
// has indexed, waiting for it; gaps the pass found are jumped as the run jumps them. When the
// pass ends, the rows read must be the rows it counted.
func (r *earlyRun) EventPages(ctx context.Context, desc string, from, to int, fields []string, fn func(*catalog.EventPage) error) error {
	from = max(from, 0)
	if to >= 0 && to <= from {
		return nil
	}
	f, err := r.open()
	if err != nil {
		return err
	}
	defer f.Close()
	end, gaps, done, ix, wake, perr := r.prog.snapshot()
	w := newWindow(f, end, scanWindow)
	defer w.release()
	// Errors name the file as the run does; why sees the file as the pass does.
	rr := &run{path: r.path, ix: &index{size: r.fi.Size(), mtime: r.fi.ModTime()}}
	rr.ix.ino, rr.ix.dev = filestore.StatIDs(r.fi)
	ew := newEventWalk(ctx, rr, w, f, desc, fields, from, to, fn)
	defer ew.close()
	g := 0 // the first gap not passed yet
	for pos := int64(0); ; {
		if pos >= end {
			if done {
				break
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return ctx.Err()
			}
			end, gaps, done, ix, wake, perr = r.prog.snapshot()
			w.limit = end
			continue
		}
		for g < len(gaps) && gaps[g].off < pos {
			g++
		}
		if g < len(gaps) && gaps[g].off == pos {
			pos = gaps[g].end
			g++
			continue
		}
		n, stop, err := ew.step(ctx, pos)
		if err != nil || stop {
			return err
		}
		pos += n
	}
	if ix == nil {
		return fmt.Errorf("index %s: %w", r.path, perr)
	}
	var want int64
	if s := ix.events[desc]; s != nil {
		want = s.rows
	} else if !ix.hasDescriptor(desc) {
		return fmt.Errorf("descriptor %s of run %s: %w", desc, r.start.UID, catalog.ErrNotFound)
	}
	if ew.row != want {
		return fmt.Errorf("%s: %d rows of descriptor %s read behind the index pass, which counted %d", r.path, ew.row, desc, want)
	}
	return nil
}
