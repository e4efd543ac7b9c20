package msgpack

// The index of one run file, built on first use by one pass over the file. Small documents
// (start, stop, descriptors, resources) are decoded and kept; events and datums are only
// counted, with a sparse list of checkpoints per descriptor (and per resource) from which a
// read can start without decoding what comes before. A live file that grew is indexed from
// where the last pass stopped.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/filestore"
)

// Streams get checkpoints by the rule both file formats share (filestore.NeedCheckpoint).
const (
	checkpointRows = filestore.CheckpointRows
	maxDocLogs     = 10 // per pass: a file of a million bad events must not flood the log
)

// checkpoint is where a stream's document starts and its first row there.
type checkpoint struct {
	off int64
	row int64
}

// stream is the events of one descriptor, or the datums of one resource.
type stream struct {
	rows int64 // rows (datums) in the stream
	end  int64 // end of its last document
	cps  []checkpoint
}

func (s *stream) add(off, end int64, rows int) {
	var last checkpoint
	if n := len(s.cps); n > 0 {
		last = s.cps[n-1]
	}
	if filestore.NeedCheckpoint(len(s.cps) > 0, last.off, last.row, off, s.rows, s.end) {
		s.cps = append(s.cps, checkpoint{off: off, row: s.rows})
	}
	s.rows += int64(rows)
	s.end = end
}

// find returns the index of the checkpoint to start reading row from.
func (s *stream) find(row int64) int {
	i, _ := slices.BinarySearchFunc(s.cps, row, func(c checkpoint, r int64) int {
		if c.row <= r {
			return -1
		}
		return 1
	})
	return max(i-1, 0)
}

// index is an immutable snapshot of what one pass (or several, for a growing file) learned.
type index struct {
	size  int64 // file size, mtime, inode and device when indexed
	mtime time.Time
	ino   uint64
	dev   uint64
	end   int64 // end of the last complete document: a growing file is read on from here
	head  []byte
	tail  []byte // the bytes just before end: they must not change for the file to have grown
	halt  bool   // a corrupt document stopped the scan: do not read on

	start     *catalog.Start
	stop      *catalog.Stop
	descs     []*catalog.Descriptor
	resources []*catalog.Resource
	events    map[string]*stream // by descriptor uid
	datums    map[string]*stream // by resource uid

	truncAt int64 // offset of the truncated document logged last, not to log it again

	// gaps are the stretches the scan passed over, by start offset: a document longer than
	// maxDocument, or corrupt bytes up to the next well-formed document. Readers jump them.
	gaps map[int64]int64
}

// hasDescriptor reports whether the run has the descriptor uid (with or without events).
func (ix *index) hasDescriptor(uid string) bool {
	return slices.ContainsFunc(ix.descs, func(d *catalog.Descriptor) bool { return d.UID == uid })
}

// clone copies the index for extension; the streams are copied, their checkpoint slices
// clipped so that appending never writes into an array an older snapshot reads.
func (ix *index) clone() *index {
	c := *ix
	c.descs = slices.Clip(ix.descs)
	c.resources = slices.Clip(ix.resources)
	c.events = cloneStreams(ix.events)
	c.datums = cloneStreams(ix.datums)
	c.gaps = maps.Clone(ix.gaps)
	return &c
}

func cloneStreams(m map[string]*stream) map[string]*stream {
	out := make(map[string]*stream, len(m))
	for k, s := range m {
		c := *s
		c.cps = slices.Clip(s.cps)
		out[k] = &c
	}
	return out
}

// indexer is one pass over a file.
type indexer struct {
	path string
	log  *slog.Logger
	ix   *index
	r    io.ReaderAt
	w    *window
	dec  *pageDecoder // scratch for event headers
	h    evHeader
	logs int

	// A pass that offers an early run (follow.go): prog tells its followers how far it is,
	// from pub on; early is called at the first event document, then set to nil.
	prog  *progress
	pub   int64
	early func(desc string)
}

// newIndexer makes the indexer of the file r of the given size, extending prev when it is a
// prefix of the file (the file grew), from scratch otherwise.
func newIndexer(path string, r io.ReaderAt, size int64, mtime time.Time, prev *index, log *slog.Logger) *indexer {
	var ix *index
	if prev != nil && !prev.halt && size >= prev.end && sameBytes(r, 0, prev.head) && sameBytes(r, prev.end-int64(len(prev.tail)), prev.tail) {
		ix = prev.clone()
	} else {
		ix = &index{events: map[string]*stream{}, datums: map[string]*stream{}, truncAt: -1}
	}
	ix.size, ix.mtime = size, mtime
	return &indexer{path: path, log: log, ix: ix, r: r, dec: newPageDecoder("", []string{})}
}

// build scans the file and returns the index.
func (x *indexer) build() (*index, error) {
	ix, r := x.ix, x.r
	x.w = newWindow(r, ix.size, scanWindow)
	defer x.w.release()
	if err := x.scan(); err != nil {
		return nil, err
	}
	if ix.start == nil {
		return nil, &catalog.DocError{Source: x.path, Name: "start", Err: errors.New("no start document")}
	}
	ix.head = readBytes(r, 0, min(ix.end, 64))
	ix.tail = readBytes(r, max(ix.end-64, 0), min(ix.end, 64))
	return ix, nil
}

func readBytes(r io.ReaderAt, off, n int64) []byte {
	b := make([]byte, n)
	if _, err := r.ReadAt(b, off); err != nil {
		return nil
	}
	return b
}

func sameBytes(r io.ReaderAt, off int64, want []byte) bool {
	if off < 0 {
		return false
	}
	got := readBytes(r, off, int64(len(want)))
	return got != nil && bytes.Equal(got, want)
}

// scan reads documents from ix.end to the end of the file. A document longer than
// maxDocument is passed over unread (skipStream) and a corrupt one up to the next well-formed
// document (resync), each with one log line: the rest of the run stays readable.
func (x *indexer) scan() error {
	ix := x.ix
	pos := ix.end
	last := 0 // the length of the last document
	for pos < ix.size {
		b, err := x.w.atLeast(pos, max(x.dec.longest, x.w.hint(last)))
		if err != nil {
			return fmt.Errorf("read %s: %w", x.path, err)
		}
		n, err := x.doc(b, pos)
		for errors.Is(err, errShort) {
			switch {
			case int64(n) > ix.size-pos:
				err = errTruncated
			case n > maxDocument:
				err = errTooBig
			default:
				if b, err = x.w.more(pos, len(b), n); err == nil {
					n, err = x.doc(b, pos)
				}
			}
		}
		if errors.Is(err, errTooBig) {
			var end int64
			if end, err = skipStream(x.r, pos, ix.size); err == nil {
				x.gap(pos, end, docNameOf(b), fmt.Errorf("%d bytes, more than the %d MiB a document may have", end-pos, maxDocument>>20))
				pos, ix.end = end, end
				continue
			}
		}
		switch {
		case errors.Is(err, errTruncated):
			// The last document is incomplete: a writer is still at it, or the file was cut.
			// Unless a well-formed document follows: then it is corrupt (a length that lies).
			if next, ok := x.resync(pos); ok {
				x.gap(pos, next, docNameOf(b), errors.New("corrupt document: it runs past the next document"))
				pos, ix.end = next, next
				continue
			}
			if ix.truncAt != pos {
				x.log.Info("msgpack: ignoring incomplete last document", "file", x.path, "offset", pos, "bytes", ix.size-pos)
				ix.truncAt = pos
			}
			ix.end = pos
			return nil
		case err != nil:
			if next, ok := x.resync(pos); ok {
				x.gap(pos, next, docNameOf(b), err)
				pos, ix.end = next, next
				continue
			}
			x.log.Warn("msgpack: stopping at corrupt document", "file", x.path, "offset", pos, "err", err)
			ix.end, ix.halt = pos, true
			return nil
		}
		if n <= 0 {
			// Cannot happen; if it did, the scan would never end.
			x.log.Warn("msgpack: stopping at document of no length", "file", x.path, "offset", pos)
			ix.end, ix.halt = pos, true
			return nil
		}
		pos += int64(n)
		ix.end = pos
		last = n
		if x.prog != nil && pos-x.pub >= publishEvery {
			x.pub = pos
			x.prog.publish(ix)
		}
	}
	return nil
}

// firstEvent notes an event document of descriptor desc: the first one starts the early
// run, if the pass offers one. Any size: the file is big (Options.EarlyMin), and a decode that
// follows the pass overlaps the disk whether the file holds wide rows or many narrow ones (1M
// scalar events in 10,000-event pages, 83 MB: first np.load 136-149 → 102-117 ms, BENCHMARKS.md);
// for one-row pages it gains nothing and loses nothing measurable.
func (x *indexer) firstEvent(desc []byte) {
	if x.early == nil || x.ix.start == nil {
		return
	}
	early := x.early
	x.early = nil
	x.prog.publish(x.ix)
	early(string(desc))
}

// gap records the stretch [off, end) as passed over and logs it once (each pass indexes a
// stretch once).
func (x *indexer) gap(off, end int64, name string, err error) {
	if x.ix.gaps == nil {
		x.ix.gaps = map[int64]int64{}
	}
	x.ix.gaps[off] = end
	if x.prog != nil {
		x.prog.addGap(off, end)
	}
	x.bad(off, name, err)
}

// docNameOf returns the name of the document at the start of b, "" when there is none.
func docNameOf(b []byte) string {
	if n, p, err := arrayLen(b, 0); err == nil && n == 2 {
		if name, _, err := str(b, p); err == nil && len(name) <= 32 {
			return string(name)
		}
	}
	return ""
}

// resync finds the next well-formed document after a corrupt one at pos: a [name, map] pair
// with a known document name, whole within maxDocument and the file. msgpack has no framing
// to find it by, but such a pair in the middle of other data is all but impossible.
func (x *indexer) resync(pos int64) (int64, bool) {
	for p := pos + 1; p < x.ix.size; {
		b, err := x.w.at(p)
		if err != nil {
			return 0, false
		}
		i := bytes.IndexByte(b, 0x92)
		if i < 0 {
			p += int64(len(b))
			continue
		}
		q := p + int64(i)
		if x.docAt(q) {
			return q, true
		}
		p = q + 1
	}
	return 0, false
}

// docAt reports whether a well-formed document other than a start begins at q.
func (x *indexer) docAt(q int64) bool {
	b, err := x.w.atLeast(q, 16)
	if err != nil {
		return false
	}
	_, p, err := arrayLen(b, 0)
	if err != nil {
		return false
	}
	name, p, err := str(b, p)
	if err != nil || p >= len(b) || !isMap(b[p]) {
		return false
	}
	switch string(name) {
	case "event", "event_page", "descriptor", "stop", "resource", "datum", "datum_page":
	default:
		return false
	}
	n, err := skip(b, 0)
	for errors.Is(err, errShort) && n <= maxDocument && int64(n) <= x.ix.size-q {
		if b, err = x.w.more(q, len(b), n); err == nil {
			n, err = skip(b, 0)
		}
	}
	return err == nil
}

// doc indexes the document at the start of b (file offset off) and returns its length. On
// errShort the length is a lower bound of the bytes needed.
func (x *indexer) doc(b []byte, off int64) (int, error) {
	n, p, err := arrayLen(b, 0)
	if err == nil && n == 2 {
		var name []byte
		if name, p, err = str(b, p); err == nil {
			return x.named(b, p, string(name), off)
		}
	}
	end, serr := skip(b, 0)
	if serr != nil {
		return end, serr
	}
	if err != nil && !errors.Is(err, errShort) && !isCorrupt(err) {
		err = corrupt(0, "not a [name, document] pair: "+err.Error())
	}
	if err == nil {
		err = corrupt(0, fmt.Sprintf("a list of %d items, not a [name, document] pair", n))
	}
	return end, err
}

// named indexes a document whose name is known; the document's map is at b[p:].
func (x *indexer) named(b []byte, p int, name string, off int64) (int, error) {
	ix := x.ix
	if off == 0 && name != "start" {
		end, err := skip(b, 0)
		if err == nil {
			err = corrupt(0, "the first document is a "+name+", not a start")
		}
		return end, err
	}
	if name == "event" || name == "event_page" {
		if l := x.dec.fast(b); l != nil {
			ix.events[string(l.desc)].add(off, off+int64(l.n), l.rows)
			x.firstEvent(l.desc)
			return l.n, nil
		}
		err := x.dec.scanEvent(b, p, name == "event", &x.h, 0)
		if errors.Is(err, errShort) || isCorrupt(err) {
			return x.needed(b, err)
		}
		if err != nil {
			// Find the end first (h.end is not set when the walk stopped early): a short
			// read is retried, and the document must be logged once.
			end, serr := skip(b, 0)
			if serr == nil {
				x.bad(off, name, err)
			}
			return end, serr
		} else if x.h.rows > 0 {
			s := ix.events[string(x.h.desc)]
			if s == nil {
				s = &stream{}
				ix.events[string(x.h.desc)] = s
			}
			s.add(off, off+int64(x.h.end), x.h.rows)
			x.dec.learnFrom(b, x.h.end, &x.h, docEvent)
			x.firstEvent(x.h.desc)
		}
		return x.h.end, nil
	}
	end, err := skip(b, p)
	if err != nil {
		return end, err
	}
	doc := b[p:end]
	switch name {
	case "datum", "datum_page":
		if res, rows, err := datumHeader(doc, name == "datum"); err != nil {
			x.bad(off, name, err)
		} else {
			s := ix.datums[res]
			if s == nil {
				s = &stream{}
				ix.datums[res] = s
			}
			s.add(off, off+int64(end), rows)
		}
	case "start", "stop", "descriptor", "resource":
		if err := x.small(doc, name, off); err != nil {
			x.bad(off, name, err)
		}
	default:
		x.bad(off, name, errors.New("unknown document name"))
	}
	return end, nil
}

// needed turns a short read inside an event document into a lower bound for the next read.
func (x *indexer) needed(b []byte, err error) (int, error) {
	if isCorrupt(err) {
		return 0, err
	}
	end, serr := skip(b, 0)
	if serr == nil {
		return end, corrupt(0, "event document ends early")
	}
	return end, serr
}

// small decodes a start, stop, descriptor or resource document.
func (x *indexer) small(doc []byte, name string, off int64) error {
	v, _, err := value(doc, 0, false, 0)
	if err != nil {
		return err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("want map, have %T", v)
	}
	raw, _, err := appendJSON(nil, doc, 0, 0)
	if err != nil {
		return err
	}
	ix := x.ix
	switch name {
	case "start":
		if ix.start != nil {
			return errors.New("a second start document")
		}
		if off != 0 {
			return errors.New("a start document after the first document")
		}
		ix.start, err = catalog.ParseStart(m, raw)
	case "stop":
		ix.stop, err = catalog.ParseStop(m, raw)
	case "descriptor":
		var d *catalog.Descriptor
		if d, err = catalog.ParseDescriptor(m, raw); err == nil {
			ix.descs = append(ix.descs, d)
		}
	case "resource":
		var r *catalog.Resource
		if r, err = catalog.ParseResource(m, raw); err == nil {
			ix.resources = append(ix.resources, r)
		}
	}
	return err
}

// datumHeader finds the resource of a datum or datum_page document and its datum count,
// checking what catalog.AppendDatum(Page) needs without decoding the kwargs.
func datumHeader(doc []byte, single bool) (res string, rows int, err error) {
	// Datums reads the document whole (value): it must nest no deeper than value takes.
	if _, err := checkDepth(doc, 0, 0); isDepth(err) {
		return "", 0, invalid("%v", err)
	}
	n, p, err := mapLen(doc, 0)
	if err != nil {
		return "", 0, err
	}
	resPos, idPos, kwPos := -1, -1, -1
	for range n {
		var k []byte
		if k, p, err = str(doc, p); err == nil {
			switch string(k) {
			case "resource":
				resPos = p
			case "datum_id":
				idPos = p
			case "datum_kwargs":
				kwPos = p
			}
		} else if p, err = skip(doc, p); err != nil {
			return "", 0, err
		}
		if p, err = skip(doc, p); err != nil {
			return "", 0, err
		}
	}
	if idPos < 0 {
		return "", 0, invalid("missing key %q", "datum_id")
	}
	if single {
		id, _, err := str(doc, idPos)
		if err != nil {
			return "", 0, keyError("datum_id", err)
		}
		rows, res = 1, resourceOfDatum(string(id))
	} else {
		if rows, p, err = arrayLen(doc, idPos); err != nil {
			return "", 0, keyError("datum_id", err)
		}
		for range rows {
			if _, p, err = str(doc, p); err != nil {
				return "", 0, keyError("datum_id", err)
			}
		}
		if kwPos >= 0 && isMap(doc[kwPos]) {
			if err := checkKwargs(doc, kwPos, rows); err != nil {
				return "", 0, err
			}
		}
	}
	if resPos >= 0 {
		r, _, err := str(doc, resPos)
		if err != nil {
			return "", 0, keyError("resource", err)
		}
		res = string(r)
	} else if !single {
		return "", 0, invalid("missing key %q", "resource")
	}
	return res, rows, nil
}

// checkKwargs checks the datum_kwargs map of a datum page at pos as catalog.AppendDatumPage
// reads it: each value a list or array of a value per datum. A ragged page is skipped by the
// index, with one log line, rather than failing every read of its resource's datums.
func checkKwargs(doc []byte, pos, rows int) error {
	n, p, err := mapLen(doc, pos)
	if err != nil {
		return err
	}
	for range n {
		k, next, err := str(doc, p)
		if err != nil {
			return invalid("datum_kwargs: a key that is not a string")
		}
		if p, err = checkColumnOf(doc, next, "datum_kwargs", rows); err != nil {
			if errors.Is(err, errShort) || isCorrupt(err) && !isDepth(err) {
				return err
			}
			return invalid("datum_kwargs %q: %v", k, err)
		}
	}
	return nil
}

// resourceOfDatum is the resource uid part of a datum id ("<resource uid>/<n>"); legacy ids
// are bare and stand for themselves.
func resourceOfDatum(id string) string {
	if i := bytes.IndexByte([]byte(id), '/'); i >= 0 {
		return id[:i]
	}
	return id
}

// bad logs a document that is skipped.
func (x *indexer) bad(off int64, name string, err error) {
	x.logs++
	switch {
	case x.logs <= maxDocLogs:
		x.log.Warn("msgpack: skipping bad document", "file", x.path, "offset", off, "doc", name, "err", err)
	case x.logs == maxDocLogs+1:
		x.log.Warn("msgpack: more bad documents, not logged", "file", x.path)
	}
}
