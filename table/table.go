// Package table is a stream of a run as columns: the events of all its descriptors merged in
// time order, one row per event, each field (and time, seq_num and every field's timestamps) a
// column of one dtype and row shape, decided as databroker's reading would decide them.
//
// A stream is decoded once. One scan over its events writes every column's .npy data into a
// cache entry as it goes (package cache: temp files, header written last, committed
// atomically); reading a finished run's field afterwards is reading that file, in this mount
// and the next, without touching the catalog. Where no entry can be written (a live run, no
// cache, a full disk), the scan keeps columns in memory within a budget and re-reads larger
// ones from the catalog per row range.
//
// External fields (datum ids resolved through the handler registry) and fields a run serves
// by row range (catalog.ArrayReader) are not decoded by the scan: their rows are filled on
// demand into a sparse cache file whose data starts 4096-byte aligned, so a read of one frame
// costs about one frame of handler work.
//
// Package nodes makes a file tree of Streams; this package knows nothing of FUSE.
package table

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/brokerfs/brokerfs/cache"
	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/encode"
	"github.com/brokerfs/brokerfs/handlers"
)

// Config is shared by the streams of one mount.
type Config struct {
	// Store keeps decoded columns between reads and mounts; nil: memory only.
	Store *cache.Store
	// Filler reads external data.
	Filler *handlers.Filler
	Logger *slog.Logger
	// MemBudget bounds the bytes one stream keeps in memory when it is not stored
	// (default 64 MiB); larger columns are re-read from the catalog per read.
	MemBudget int64
	Stats     *Stats

	warned   sync.Map // storage failures already logged, by error text
	prescans sync.Map // prescans under way, by entry key: chan struct{} closed when done
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

func (c *Config) budget() int64 {
	if c.MemBudget > 0 {
		return c.MemBudget
	}
	return 64 << 20
}

func (c *Config) stats() *Stats {
	if c.Stats == nil {
		c.Stats = &Stats{}
	}
	return c.Stats
}

// Stream is one stream of a run.
type Stream struct {
	cfg    *Config
	run    catalog.Run
	ext    *Externals
	Name   string
	Descs  []*catalog.Descriptor // in stored order
	Keys   map[string]catalog.DataKey
	Fields []string // sorted data keys shown
	key    string   // the cache key of the stream's entry; "" when not persisted

	mu  sync.Mutex // held while the table is built, so concurrent callers share the work
	t   *Table     // guarded by mu; nil until built, and again after its entry went away
	err error      // guarded by mu; the build's failure, kept like a table

	earlyMu    sync.Mutex
	firstEv    *firstEvent           // guarded by earlyMu; see EarlyNPY
	earlyFiles map[string]*earlyFile // guarded by earlyMu; by field
}

// NewStream prepares the stream called name of run from its descriptors (several when the
// stream's configuration changed); include chooses the data keys shown. version is the run's
// catalog.Versioner key, "" for a run that must not be persisted (live, or unversioned).
func NewStream(cfg *Config, run catalog.Run, ext *Externals, name string, descs []*catalog.Descriptor, include func(string) bool, version string) *Stream {
	s := &Stream{cfg: cfg, run: run, ext: ext, Name: name, Descs: descs, Keys: map[string]catalog.DataKey{}}
	for _, d := range descs {
		for k, dk := range d.DataKeys {
			if _, ok := s.Keys[k]; ok || (include != nil && !include(k)) {
				continue
			}
			s.Keys[k] = dk
			s.Fields = append(s.Fields, k)
		}
	}
	sort.Strings(s.Fields)
	if version != "" && cfg.Store != nil {
		// The fields shown are part of the key: --include builds other columns.
		var b strings.Builder
		b.WriteString("stream\x00" + version + "\x00" + name)
		for _, d := range descs {
			b.WriteString("\x00" + d.UID)
		}
		for _, f := range s.Fields {
			b.WriteString("\x01" + f)
		}
		s.key = b.String()
	}
	return s
}

// Table scans the stream once (or loads its cache entry) and returns its columns; concurrent
// callers share the work, which is detached from the first caller's cancellation. A table
// whose cache entry went away (evicted under --cache-max, damaged, deleted) is built again on
// the next call: see ErrStale.
func (s *Stream) Table(ctx context.Context) (*Table, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t == nil && s.err == nil {
		s.t, s.err = s.load(context.WithoutCancel(ctx))
	}
	return s.t, s.err
}

// ErrStale means a file of a table could not be opened because its cache entry went away;
// the stream drops the table, and asking the Stream again gives a rebuilt one.
var ErrStale = errors.New("cache entry gone; the stream is decoded again")

// invalidate drops t if it is still the stream's table.
func (s *Stream) invalidate(t *Table) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t == t {
		s.t = nil
	}
}

// opener opens a file of t's cache entry; a miss (the entry was evicted or damaged) drops t.
func (t *Table) opener(e *cache.Entry, name string) func() (*os.File, error) {
	return func() (*os.File, error) {
		f, err := e.Open(name)
		if err != nil {
			if errors.Is(err, cache.ErrMiss) {
				t.stream.invalidate(t)
				return nil, fmt.Errorf("%w: %w", ErrStale, err)
			}
			return nil, err
		}
		return f, nil
	}
}

func (s *Stream) load(ctx context.Context) (*Table, error) {
	st := s.cfg.Store
	if s.key != "" && st != nil {
		if done, ok := s.cfg.prescans.Load(s.key); ok {
			<-done.(chan struct{}) // its entry, once committed, is the table
		}
		if e, err := st.Lookup(s.key); err == nil {
			t, err := s.fromEntry(e)
			if err == nil {
				s.cfg.stats().CacheHits.Add(1)
				return t, nil
			}
			s.cfg.logger().Warn("cache entry unusable; decoding the stream again", "stream", s.Name, "err", err)
			st.Remove(s.key)
		}
		s.warmExternals()
		b, err := st.Build(s.key)
		if err == nil {
			var t *Table
			t, err = s.scan(ctx, b)
			if err == nil {
				s.cfg.stats().CacheStores.Add(1)
				return t, nil
			}
			b.Abort()
			if !errors.Is(err, errSpill) {
				return nil, err
			}
		}
		s.cfg.stats().CacheFailed.Add(1)
		if _, logged := s.cfg.warned.LoadOrStore(rootCause(err), true); !logged {
			s.cfg.logger().Error("cannot store decoded columns in the cache; serving without it", "dir", st.Dir(), "err", err)
		}
	}
	s.warmExternals()
	return s.scan(ctx, nil)
}

// errMoot: a prescan's run turned out other than the one scanned; its entry is dropped.
var errMoot = errors.New("the finished run is not the run scanned")

// Prescan decodes the stream into its cache entry in the background, ahead of Table, from a
// run whose index pass is under way (catalog.EarlyRun): its EventPages follows the pass,
// so the decode runs while the disk reads. The stream must have been made from that run, with
// the version and descriptors known so far. A Table call of a stream of the same key waits
// for the prescan, then finds its entry. Streams with external fields are not prescanned
// (their datums are the finished run's), nor are streams not persisted.
//
// gate, called once the pass has ended, returns the finished run's stream of this name (nil
// when there is none, or the run is live): the entry is committed only when its key is this
// stream's (the same version, descriptors and fields).
func (s *Stream) Prescan(gate func() *Stream) {
	st := s.cfg.Store
	if s.key == "" || st == nil {
		return
	}
	for _, f := range s.Fields {
		if s.Keys[f].External {
			return
		}
	}
	done := make(chan struct{})
	if _, busy := s.cfg.prescans.LoadOrStore(s.key, done); busy {
		return
	}
	s.cfg.stats().Prescans.Add(1)
	go func() {
		defer func() {
			s.cfg.prescans.Delete(s.key)
			close(done)
		}()
		if _, err := st.Lookup(s.key); err == nil {
			return
		}
		b, err := st.Build(s.key)
		if err != nil {
			return
		}
		budget := s.cfg.budget()
		sc := &scanState{s: s, b: b, budget: &budget, spares: spareBudget, gate: func() bool {
			fs := gate()
			return fs != nil && fs.key == s.key
		}}
		ctx := context.Background()
		err = sc.run(ctx)
		if err == nil {
			_, err = sc.table(ctx)
		}
		if err != nil {
			b.Abort()
			if !errors.Is(err, errMoot) {
				// The Table call after it scans again, and reports what fails.
				s.cfg.logger().Debug("prescan failed", "stream", s.Name, "err", err)
			}
			return
		}
		s.cfg.stats().PrescansStored.Add(1)
	}()
}

// Warm starts, in the background, what reading the stream's external fields will need first:
// the run's datums, and the first datum's file opened and described by its handler (an HDF5
// file's metadata, read from disk on a fresh mount). Called when the stream's directory is
// looked up, the way to its files, so that the open overlaps the kernel's next lookup and the
// stream's scan instead of following them; the scan calls it too. Once per run; nothing for a
// stream without external fields. A failure is left to the reads, which report it. The
// datum ids of the stream's first event are read too when an external field's .npy may be
// sized before the scan (EarlyNPY).
func (s *Stream) Warm() {
	s.warmExternals()
	for _, f := range s.Fields {
		if s.earlyField(f) {
			// Its .npy may be sized before the scan: that needs the first event's datum.
			if rows, ok := s.eventRows(context.Background()); ok && rows > 0 {
				s.startFirstEvent()
			}
			return
		}
	}
}

// warmExternals starts the run's Externals warming up when the stream has external fields:
// they are described right after the scan.
func (s *Stream) warmExternals() {
	if s.ext == nil {
		return
	}
	for _, f := range s.Fields {
		if s.Keys[f].External {
			s.ext.warm()
			return
		}
	}
}

// rootCause names the innermost error, following the last of several wrapped ones (the
// cause, in this package's "%w: %w" errors), so that one failure logs once.
func rootCause(err error) string {
	for {
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			errs := u.Unwrap()
			if len(errs) == 0 {
				return err.Error()
			}
			err = errs[len(errs)-1]
		case interface{ Unwrap() error }:
			next := u.Unwrap()
			if next == nil {
				return err.Error()
			}
			err = next
		default:
			return err.Error()
		}
	}
}

// Table is a stream's columns, by merged row.
type Table struct {
	Rows       int
	Time       *Column
	SeqNum     *Column
	Fields     map[string]*Column // by data key
	Timestamps map[string]*Column // by data key

	stream *Stream
	csvMu  sync.Mutex
	csv    map[string]File
	pqMu   sync.Mutex
	pq     File // guarded by pqMu; the table's Parquet file once built
}

// role names a column's place in a table, in cache entries.
const (
	roleTime  = "time"
	roleSeq   = "seq_num"
	roleField = "field"
	roleTS    = "timestamps"
)

// entryMeta is what a cache entry of a stream records besides its files.
type entryMeta struct {
	Version int          `json:"version"`
	Rows    int          `json:"rows"`
	Columns []columnMeta `json:"columns"`
}

type columnMeta struct {
	Role  string   `json:"role"`
	Name  string   `json:"name"`
	File  string   `json:"file,omitempty"` // the column's .npy; ids file for lazy columns
	Descr string   `json:"descr,omitempty"`
	Shape []int    `json:"shape,omitempty"`
	Size  int64    `json:"size,omitempty"`
	Err   string   `json:"err,omitempty"`
	Lazy  bool     `json:"lazy,omitempty"` // external or remote: ids and row locations only
	Order string   `json:"order,omitempty"`
	Descs []string `json:"descs,omitempty"`
	First []int    `json:"first,omitempty"`
}

// metaVersion changes whenever what a stream entry means changes.
const metaVersion = 1

// scan reads the stream's events once. With b, every column goes into a file of the entry b
// builds, committed at the end; without, columns stay in memory within the budget and larger
// ones are re-read from the catalog.
func (s *Stream) scan(ctx context.Context, b *cache.Builder) (*Table, error) {
	s.cfg.stats().Scans.Add(1)
	budget := s.cfg.budget()
	sc := &scanState{s: s, b: b, budget: &budget, spares: spareBudget}
	if err := sc.run(ctx); err != nil {
		return nil, err
	}
	return sc.table(ctx)
}

// Column is one column of a table: a field, its timestamps, time or seq_num.
type Column struct {
	Name     string
	Dtype    encode.Dtype
	RowShape []int
	Rows     int
	// Err is why the column has no values (a value that cannot be encoded, an unsupported
	// dtype); its files fail with EIO naming it.
	Err error

	npy  File         // the column's .npy
	data encode.Array // the column's rows, for CSV and tables
	lazy *lazyColumn  // external or remote field, described on first use
}

// NPY is the column's .npy file.
func (c *Column) NPY(ctx context.Context) (File, error) {
	if c.Err != nil {
		return nil, c.Err
	}
	if c.lazy != nil {
		return c.lazy.npy(ctx)
	}
	return c.npy, nil
}

// Array is the column's rows as an encode.Array (for CSV and table files).
func (c *Column) Array(ctx context.Context) (encode.Array, error) {
	if c.Err != nil {
		return nil, c.Err
	}
	if c.lazy != nil {
		if err := c.lazy.describe(ctx); err != nil {
			return nil, err
		}
		return c.lazy, nil
	}
	return c.data, nil
}

// Describe returns the column's dtype and row shape, which for an external field costs a look
// at its first datum's file.
func (c *Column) Describe(ctx context.Context) (encode.Dtype, []int, error) {
	if c.Err != nil {
		return encode.Dtype{}, nil, c.Err
	}
	if c.lazy != nil {
		if err := c.lazy.describe(ctx); err != nil {
			return encode.Dtype{}, nil, err
		}
		return c.lazy.dt, c.lazy.rowShape, nil
	}
	return c.Dtype, c.RowShape, nil
}

// External reports whether the column is filled on demand (external or remote data).
func (c *Column) External() bool { return c.lazy != nil }

// CSV returns the CSV file of columns (names as header), formatted once: into the cache when
// the table is stored, else on read with encode's checkpoints. name keys it within the table.
func (t *Table) CSV(ctx context.Context, name string, names []string, cols []*Column) (File, error) {
	t.csvMu.Lock()
	defer t.csvMu.Unlock()
	if f, ok := t.csv[name]; ok {
		return f, nil
	}
	arrays := make([]encode.Array, len(cols))
	for i, c := range cols {
		a, err := c.Array(ctx)
		if err != nil {
			return nil, err
		}
		arrays[i] = a
	}
	f, err := t.formatCSV(ctx, name, names, arrays)
	if err != nil {
		return nil, err
	}
	if t.csv == nil {
		t.csv = map[string]File{}
	}
	t.csv[name] = f
	return f, nil
}

func (t *Table) formatCSV(ctx context.Context, name string, names []string, arrays []encode.Array) (File, error) {
	c, err := encode.NewCSV(names, arrays)
	if err != nil {
		return nil, err
	}
	s := t.stream
	st := s.cfg.Store
	persist := s.key != "" && st != nil
	for _, a := range arrays {
		if _, ok := a.(*lazyColumn); ok {
			persist = false // its rows would all be filled just to be formatted
		}
	}
	if !persist {
		size, err := c.Size(ctx)
		if err != nil {
			return nil, err
		}
		return &readerFile{size: size, r: c}, nil
	}
	key := s.key + "\x00csv\x00" + name
	if e, err := st.Lookup(key); err == nil {
		var m struct{ Size int64 }
		if json.Unmarshal(e.Meta, &m) == nil {
			return &osFile{size: m.Size, open: t.opener(e, "data.csv")}, nil
		}
	}
	f, err := writeCSV(ctx, t, st, key, c)
	if errors.Is(err, ErrStale) {
		return nil, err // the columns went away under the formatter: the caller asks again
	}
	if err != nil {
		if _, logged := s.cfg.warned.LoadOrStore(rootCause(err), true); !logged {
			s.cfg.logger().Error("cannot store a CSV file in the cache; serving without it", "dir", st.Dir(), "err", err)
		}
		size, err := c.Size(ctx)
		if err != nil {
			return nil, err
		}
		return &readerFile{size: size, r: c}, nil
	}
	s.cfg.stats().CSVFormatted.Add(1)
	return f, nil
}

func writeCSV(ctx context.Context, t *Table, st *cache.Store, key string, c *encode.CSV) (File, error) {
	b, err := st.Build(key)
	if err != nil {
		return nil, err
	}
	defer b.Abort()
	out, err := b.Create("data.csv")
	if err != nil {
		return nil, err
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := c.ReadAt(ctx, buf, off)
		if n > 0 {
			if err := b.Reserve(int64(n)); err != nil {
				return nil, err
			}
			if _, err := out.Write(buf[:n]); err != nil {
				return nil, err
			}
			off += int64(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
	}
	meta, _ := json.Marshal(struct{ Size int64 }{off})
	e, err := b.Commit(meta)
	if err != nil {
		return nil, err
	}
	return &osFile{size: off, open: t.opener(e, "data.csv")}, nil
}

// columnFile names the file of column i, generation g, in an entry.
func columnFile(i, g int) string { return fmt.Sprintf("c%d.%d.npy", i, g) }
