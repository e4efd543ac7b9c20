package tiled

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/brokerfs/brokerfs/catalog"
)

// run is one run of a tiled Catalog. Start and stop come from the run's metadata; everything
// else from its documents, fetched once (a failed fetch is not kept: the next call retries).
type run struct {
	cat   *Catalog
	uid   string
	start *catalog.Start
	stop  *catalog.Stop // nil while live

	mu     sync.Mutex // guards docs, fields and rows
	docs   *catalog.Assembled
	descs  []*catalog.Descriptor  // as shown: external keys turned plain unless KeepExternal
	ext    map[string]bool        // descriptor uid + "/" + key: external as stored
	fields map[string]*arrayField // stream + "/" + field -> structure
	rows   map[string]int         // descriptor uid -> events
}

var (
	_ catalog.Run            = (*run)(nil)
	_ catalog.DocumentReader = (*run)(nil)
	_ catalog.Versioner      = (*run)(nil)
	_ catalog.ArrayReader    = (*run)(nil)
)

func (r *run) Start() *catalog.Start { return r.start }

func (r *run) Stop(context.Context) (*catalog.Stop, error) {
	if r.stop == nil {
		return nil, fmt.Errorf("stop of run %s: %w", r.uid, catalog.ErrNotFound)
	}
	return r.stop, nil
}

// Version names the run's state: for a finished run the server's URL, its uid, stop uid and
// the stop's event counts, which do not change once the stop exists. A live run returns "" (not cached on
// disk: it is still growing).
func (r *run) Version(context.Context) (string, error) { return r.cat.versionKey(r.uid, r.stop), nil }

func (c *Catalog) versionKey(uid string, stop *catalog.Stop) string {
	if stop == nil {
		return ""
	}
	// The server's URL is part of the key (as the Mongo backend keys by its redacted URI),
	// and so is how external fields are shown.
	var b strings.Builder
	b.WriteString("tiled2 " + strconv.Quote(c.name) + " " + uid + " " + stop.UID)
	if c.opts.KeepExternal {
		b.WriteString(" keep-external")
	}
	for _, k := range sortedStrings(stop.NumEvents) {
		b.WriteString(" " + strconv.Quote(k) + "=" + strconv.FormatInt(stop.NumEvents[k], 10))
	}
	return b.String()
}

// documents returns the run's documents, fetching them on first use.
func (r *run) documents(ctx context.Context) (*catalog.Assembled, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.docs != nil {
		return r.docs, nil
	}
	c := r.cat
	u := c.c.route("documents", append(c.path[:len(c.path):len(c.path)], r.uid), nil)
	resp, err := c.c.get(ctx, u, "application/json-seq", c.opts.MaxDocumentsBytes)
	if err != nil {
		return nil, c.explain(fmt.Errorf("documents of run %s: %w", r.uid, err))
	}
	docs, err := parseDocuments(resp.body)
	if err != nil {
		return nil, &catalog.DocError{Source: u, Err: err}
	}
	a, bad, err := catalog.Assemble(docs)
	if err != nil {
		return nil, &catalog.DocError{Source: u, Err: err}
	}
	for _, e := range bad {
		c.opts.Logger.Warn("tiled: document left out", "url", u, "err", e)
	}
	if a.StartDoc.UID != r.uid {
		return nil, &catalog.DocError{Source: u, Name: "start", Err: fmt.Errorf("start of run %s, want %s", a.StartDoc.UID, r.uid)}
	}
	r.docs, r.descs, r.ext = a, append([]*catalog.Descriptor(nil), a.Descs...), map[string]bool{}
	for i, d := range a.Descs {
		plain := true
		for k, dk := range d.DataKeys {
			if dk.External {
				r.ext[d.UID+"/"+k], plain = true, false
			}
		}
		if plain || c.opts.KeepExternal {
			continue
		}
		shown := *d
		shown.DataKeys = make(map[string]catalog.DataKey, len(d.DataKeys))
		for k, dk := range d.DataKeys {
			dk.External = false
			shown.DataKeys[k] = dk
		}
		r.descs[i] = &shown
	}
	return a, nil
}

// parseDocuments splits the documents route's body: one {"name", "doc"} JSON object per line
// (tiled calls it application/json-seq but writes no RS separators; they are allowed).
func parseDocuments(body []byte) ([]catalog.Document, error) {
	var docs []catalog.Document
	for n := 1; len(body) > 0; n++ {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.Trim(line, "\x1e \t\r")
		if len(line) == 0 {
			continue
		}
		v, err := parseJSON(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		name, _ := dig(v, "name").(string)
		doc, ok := dig(v, "doc").(map[string]any)
		if name == "" || !ok {
			return nil, fmt.Errorf("line %d: want {\"name\", \"doc\"}", n)
		}
		docs = append(docs, catalog.Document{Name: name, Doc: doc})
	}
	return docs, nil
}

// Descriptors returns the descriptors in the server's order (by time). Their data keys say
// external only with KeepExternal: otherwise the server fills those fields (ArrayReader).
func (r *run) Descriptors(ctx context.Context) ([]*catalog.Descriptor, error) {
	if _, err := r.documents(ctx); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.descs, nil
}

func (r *run) EventPages(ctx context.Context, descriptor string, from, to int, fields []string, fn func(*catalog.EventPage) error) error {
	a, err := r.documents(ctx)
	if err != nil {
		return err
	}
	return a.EventPages(ctx, descriptor, from, to, fields, fn)
}

// Resources returns the run's resources with KeepExternal, else none: the server fills
// external data, so no file of this machine is needed (and none is listed in files.txt).
func (r *run) Resources(ctx context.Context) ([]*catalog.Resource, error) {
	a, err := r.documents(ctx)
	if err != nil || !r.cat.opts.KeepExternal {
		return nil, err
	}
	return a.Res, nil
}

func (r *run) Datums(ctx context.Context, resource string, fn func(*catalog.DatumPage) error) error {
	a, err := r.documents(ctx)
	if err != nil || !r.cat.opts.KeepExternal {
		return err
	}
	return a.Datums(ctx, resource, fn)
}

// Documents replays the run's documents as the server streamed them (events in pages of up
// to 25, as databroker's documents route batches them).
func (r *run) Documents(ctx context.Context, fn func(catalog.Document) error) error {
	a, err := r.documents(ctx)
	if err != nil {
		return err
	}
	return a.Documents(ctx, fn)
}

// arrayField is a field's array structure as the server reports it.
type arrayField struct {
	url      string // /metadata URL, for messages
	descr    string
	itemsize int
	shape    []int // (stream rows, *row shape)

	wholeMu sync.Mutex // guards whole; held while it is fetched, so that it is fetched once
	whole   []byte     // the whole array, for arrays of at most WholeArrayBytes
}

// ArrayField says which fields are read by row range: external fields (the documents hold
// datum ids; the server fills them) and fields whose rows are at least BigRowBytes.
func (r *run) ArrayField(ctx context.Context, descriptor, field string) (string, []int, bool, error) {
	a, err := r.documents(ctx)
	if err != nil {
		return "", nil, false, err
	}
	d := findDescriptor(a, descriptor)
	if d == nil {
		return "", nil, false, fmt.Errorf("descriptor %s of run %s: %w", descriptor, r.uid, catalog.ErrNotFound)
	}
	dk, ok := d.DataKeys[field]
	if !ok {
		return "", nil, false, fmt.Errorf("field %q of descriptor %s: %w", field, descriptor, catalog.ErrNotFound)
	}
	r.mu.Lock()
	external := r.ext[descriptor+"/"+field]
	r.mu.Unlock()
	if !external {
		n := int64(8)
		for _, s := range dk.Shape {
			n *= int64(s)
			if n >= r.cat.opts.BigRowBytes {
				break
			}
		}
		if n < r.cat.opts.BigRowBytes {
			return "", nil, false, nil
		}
	}
	f, err := r.field(ctx, d.Name, field)
	if err != nil {
		return "", nil, false, err
	}
	return f.descr, append([]int(nil), f.shape[1:]...), true, nil
}

func findDescriptor(a *catalog.Assembled, uid string) *catalog.Descriptor {
	for _, d := range a.Descs {
		if d.UID == uid {
			return d
		}
	}
	return nil
}

// field fetches (once) the structure of a field of a stream.
func (r *run) field(ctx context.Context, stream, name string) (*arrayField, error) {
	key := stream + "/" + name
	r.mu.Lock()
	f := r.fields[key]
	r.mu.Unlock()
	if f != nil {
		return f, nil
	}
	c := r.cat
	u := c.c.route("metadata", r.nodePath(stream, name), nil)
	v, err := c.c.getJSON(ctx, u, c.opts.MaxJSONBytes)
	if err != nil {
		return nil, c.explain(fmt.Errorf("field %q of run %s: %w", name, r.uid, err))
	}
	f, err = parseArrayStructure(dig(v, "data", "attributes", "structure"))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	f.url = u
	r.mu.Lock()
	if r.fields == nil {
		r.fields = map[string]*arrayField{}
	}
	r.fields[key] = f
	r.mu.Unlock()
	return f, nil
}

// nodePath is the path of a field of a stream's data container.
func (r *run) nodePath(stream, field string) []string {
	p := append([]string(nil), r.cat.path...)
	return append(p, r.uid, stream, "data", field)
}

// minPieceBytes: reads shorter than this are not cut into several requests.
const minPieceBytes = 1 << 20

// maxRowBytes bounds one row (one event's value) of an array, and maxDims its dimensions.
const (
	maxRowBytes = 1 << 34
	maxDims     = 32
)

// parseArrayStructure reads tiled's array structure: data_type {endianness, kind, itemsize}
// (kind U has itemsize in bytes: 4 per character) and shape.
func parseArrayStructure(v any) (*arrayField, error) {
	dt, _ := dig(v, "data_type").(map[string]any)
	if dt == nil {
		return nil, errors.New("not an array (no data_type)")
	}
	kind, _ := dt["kind"].(string)
	isz, ok := catalog.AsInt(dt["itemsize"])
	if !ok || isz <= 0 || isz > 1<<20 {
		return nil, fmt.Errorf("bad itemsize %v", dt["itemsize"])
	}
	order := "<"
	switch str(dt["endianness"]) {
	case "big":
		order = ">"
	case "not_applicable":
		order = "|"
	}
	var descr string
	switch kind {
	case "f", "i", "u", "c":
		if isz == 1 {
			order = "|"
		}
		descr = order + kind + strconv.FormatInt(isz, 10)
	case "b":
		descr = "|b1"
		if isz != 1 {
			return nil, fmt.Errorf("bad itemsize %d for booleans", isz)
		}
	case "U":
		if isz%4 != 0 {
			return nil, fmt.Errorf("bad itemsize %d for a unicode string (want 4 bytes a character)", isz)
		}
		if order == "|" {
			order = "<"
		}
		descr = order + "U" + strconv.FormatInt(isz/4, 10)
	default:
		return nil, fmt.Errorf("unsupported dtype kind %q", kind)
	}
	shapeV, _ := dig(v, "shape").([]any)
	if len(shapeV) == 0 || len(shapeV) > maxDims {
		return nil, fmt.Errorf("bad shape %v (want events first)", dig(v, "shape"))
	}
	f := &arrayField{descr: descr, itemsize: int(isz)}
	row := isz
	for i, x := range shapeV {
		n, ok := catalog.AsInt(x)
		if !ok || n < 0 || n > 1<<40 {
			return nil, fmt.Errorf("bad shape %v", shapeV)
		}
		if i > 0 {
			row *= n
			if row > maxRowBytes {
				return nil, fmt.Errorf("rows of shape %v are too big", shapeV[1:])
			}
		}
		f.shape = append(f.shape, int(n))
	}
	return f, nil
}

func (f *arrayField) rowBytes() int {
	n := f.itemsize
	for _, d := range f.shape[1:] {
		n *= d
	}
	return n
}

// offset returns where the descriptor's rows start among its stream's rows (the server
// concatenates a stream's descriptors in order) and how many it has.
func (r *run) offset(ctx context.Context, a *catalog.Assembled, d *catalog.Descriptor) (int, error) {
	off := 0
	for _, e := range a.Descs {
		if e.UID == d.UID {
			return off, nil
		}
		if e.Name != d.Name {
			continue
		}
		n, err := r.count(ctx, a, e.UID)
		if err != nil {
			return 0, err
		}
		off += n
	}
	return off, nil
}

func (r *run) count(ctx context.Context, a *catalog.Assembled, desc string) (int, error) {
	r.mu.Lock()
	n, ok := r.rows[desc]
	r.mu.Unlock()
	if ok {
		return n, nil
	}
	n = 0
	err := a.EventPages(ctx, desc, 0, -1, []string{}, func(p *catalog.EventPage) error {
		n = p.FirstRow + p.Len()
		return nil
	})
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	if r.rows == nil {
		r.rows = map[string]int{}
	}
	r.rows[desc] = n
	r.mu.Unlock()
	return n, nil
}

// ReadArray fetches rows [from, to) of a field from /array/full with slice=, as
// octet-stream, in requests of at most ArrayRequestBytes sent in parallel. Each body must
// have exactly the size its rows take.
func (r *run) ReadArray(ctx context.Context, descriptor, field string, from, to int, dst []byte) error {
	a, err := r.documents(ctx)
	if err != nil {
		return err
	}
	d := findDescriptor(a, descriptor)
	if d == nil {
		return fmt.Errorf("descriptor %s of run %s: %w", descriptor, r.uid, catalog.ErrNotFound)
	}
	f, err := r.field(ctx, d.Name, field)
	if err != nil {
		return err
	}
	off, err := r.offset(ctx, a, d)
	if err != nil {
		return err
	}
	rb := f.rowBytes()
	lo, hi := off+from, off+to
	if from < 0 || to < from || hi > f.shape[0] {
		return fmt.Errorf("read field %q of run %s: rows [%d, %d) of %d", field, r.uid, from, to, f.shape[0]-off)
	}
	if int64(len(dst)) != int64(to-from)*int64(rb) {
		return fmt.Errorf("read field %q of run %s: %d bytes for %d rows of %d", field, r.uid, len(dst), to-from, rb)
	}
	if lo == hi {
		return nil
	}
	if total := int64(f.shape[0]) * int64(rb); total <= r.cat.opts.WholeArrayBytes {
		whole, err := r.whole(ctx, d.Name, field, f)
		if err != nil {
			return fmt.Errorf("read field %q of run %s: %w", field, r.uid, err)
		}
		copy(dst, whole[lo*rb:hi*rb])
		return nil
	}
	// Rows per request: a long read is cut into one piece per request slot (one round trip
	// of latency), each at most ArrayRequestBytes (a compressed answer is held whole before
	// it is decoded) and at least minPieceBytes (a request costs a round trip).
	per := hi - lo
	if rb > 0 {
		maxRows := max(1, int(r.cat.opts.ArrayRequestBytes/int64(rb)))
		minRows := min(max(1, int(minPieceBytes/int64(rb))), maxRows)
		per = min(max((hi-lo+r.cat.opts.MaxRequests-1)/r.cat.opts.MaxRequests, minRows), maxRows)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for a := lo; a < hi; a += per {
		b := min(a+per, hi)
		part := dst[(a-lo)*rb : (b-lo)*rb]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.fetchRows(ctx, d.Name, field, f, a, b, part); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("read field %q of run %s: %w", field, r.uid, errs[0])
	}
	return nil
}

// whole returns the whole array of a small field, fetching it on first use (a failure is not
// kept).
func (r *run) whole(ctx context.Context, stream, field string, f *arrayField) ([]byte, error) {
	f.wholeMu.Lock()
	defer f.wholeMu.Unlock()
	if f.whole != nil {
		return f.whole, nil
	}
	b := make([]byte, f.shape[0]*f.rowBytes())
	if err := r.fetchRows(ctx, stream, field, f, 0, f.shape[0], b); err != nil {
		return nil, err
	}
	f.whole = b
	return b, nil
}

func (r *run) fetchRows(ctx context.Context, stream, field string, f *arrayField, a, b int, dst []byte) error {
	var q url.Values
	switch {
	case a == 0 && b == f.shape[0]:
		// The whole array: no slice.
	case b == a+1:
		q = url.Values{"slice": {strconv.Itoa(a)}}
	default:
		q = url.Values{"slice": {strconv.Itoa(a) + ":" + strconv.Itoa(b)}}
	}
	c := r.cat.c
	u := c.route("array/full", r.nodePath(stream, field), q)
	if err := c.getInto(ctx, u, "application/octet-stream", dst); err != nil {
		return r.cat.explain(fmt.Errorf("%w (rows [%d, %d) of %s)", err, a, b, f.descr))
	}
	return nil
}
