package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
	"github.com/brokerfs/brokerfs/catalog/mongo"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
	"github.com/brokerfs/brokerfs/handlers"
)

// brokerfs copy SOURCE DEST: every run (or those matching --query) from any store to another.
// The source is only read; runs already in DEST are skipped, so an interrupted copy resumes;
// each run is read back from DEST and its documents counted against the source's.

func cmdCopy(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("copy", stderr)
	var (
		cf        catalogFlags
		format    string
		copyFiles string
		rootMap   []string
		noBar     bool
		destAsset string
	)
	cf.register(fl)
	unused := rejectUnused(fl, "copy", "include", "exclude", "cache-max", "cache-ttl")
	fl.StringVar(&format, "format", "", "format of a DEST directory: msgpack or jsonl (default: what DEST holds, else msgpack)")
	fl.StringVar(&copyFiles, "copy-files", "", "copy the runs' external files into DIR and point their resources there")
	fl.StringArrayVar(&rootMap, "root-map", nil, "OLD=NEW: where the source's external files are now (repeatable)")
	fl.BoolVar(&noBar, "no-progress", false, "no progress bar")
	fl.StringVar(&destAsset, "dest-asset-db", "", "MongoDB DEST: URI of its asset database when not the metadata database")
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: brokerfs copy [flags] SOURCE DEST\n\nDEST is a directory of run files (created if missing), or a mongodb:// URI of a metadata database\n(normalized layout; a new asset database gets the version sentinel).\n\nFlags:\n%s", fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if err := unused(); err != nil {
		return err
	}
	if fl.NArg() != 2 {
		fl.Usage()
		return usageError{"want SOURCE and DEST"}
	}
	rm, err := handlers.ParseRootMap(rootMap)
	if err != nil {
		return usageError{err.Error()}
	}
	log := cf.logger(stderr)
	ctx := context.Background()
	src, err := cf.open(ctx, fl.Arg(0), log)
	if err != nil {
		return err
	}
	defer src.cat.Close()
	var dst destination
	if isMongoURI(fl.Arg(1)) {
		dst, err = openMongoDest(ctx, fl.Arg(1), destAsset, cf.timeout, log)
	} else {
		dst, err = openDest(fl.Arg(1), format, log)
	}
	if err != nil {
		return err
	}
	defer dst.Close()
	var files *fileCopier
	if copyFiles != "" {
		rm = mergeRootMaps(src.rootMap, rm)
		reg, err := newRegistry(nil, src.handlers, log)
		if err != nil {
			return err
		}
		filler := handlers.NewFiller(handlers.FillerOptions{Registry: reg, RootMap: rm, Logger: log})
		defer filler.Close()
		files = &fileCopier{dir: copyFiles, filler: filler}
	}
	c := &copier{src: src.cat, dst: dst, files: files, log: log}
	return c.run(ctx, stdout, stderr, noBar)
}

// destination is a store runs are copied into.
type destination interface {
	// Has reports the runs already present.
	Has(ctx context.Context) (map[string]bool, error)
	// Write stores one run's documents; a partly written run must not count as present.
	Write(ctx context.Context, uid string, docs []catalog.Document) error
	// Run opens a written run to verify it.
	Run(ctx context.Context, uid string) (catalog.Run, error)
	// Remove deletes a run that failed verification, so that a later copy retries it.
	Remove(ctx context.Context, uid string) error
	Close() error
}

type copier struct {
	src   catalog.Catalog
	dst   destination
	files *fileCopier
	log   *slog.Logger
}

func (c *copier) run(ctx context.Context, stdout, stderr io.Writer, noBar bool) error {
	starts, err := c.src.Runs(ctx)
	if err != nil {
		return err
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Time < starts[j].Time })
	have, err := c.dst.Has(ctx)
	if err != nil {
		return err
	}
	var todo []*catalog.Start
	skipped := 0
	for _, s := range starts {
		switch {
		case have[s.UID]:
			skipped++
		default:
			todo = append(todo, s)
		}
	}
	bar := progressbar.NewOptions(len(todo),
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription("copying runs"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("runs"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetVisibility(!noBar),
	)
	docs, t0 := 0, time.Now()
	var failed []string
	for _, s := range todo {
		n, err := c.copyRun(ctx, s.UID)
		docs += n
		if err != nil {
			c.log.Error("copy run", "uid", s.UID, "err", err)
			failed = append(failed, s.UID)
		}
		bar.Describe(fmt.Sprintf("copying runs (%d documents, %.0f docs/s)", docs, float64(docs)/time.Since(t0).Seconds()))
		bar.Add(1)
	}
	bar.Finish()
	fmt.Fprintf(stdout, "\ncopied %d runs (%d documents), skipped %d already present, %d failed\n", len(todo)-len(failed), docs, skipped, len(failed))
	if len(failed) > 0 {
		return fmt.Errorf("%d runs failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// copyRun copies one run and verifies it; it returns the number of documents written.
func (c *copier) copyRun(ctx context.Context, uid string) (int, error) {
	run, err := c.src.Run(ctx, uid)
	if err != nil {
		return 0, err
	}
	dr, ok := run.(catalog.DocumentReader)
	if !ok {
		return 0, fmt.Errorf("the source store cannot replay documents")
	}
	var docs []catalog.Document
	err = dr.Documents(ctx, func(d catalog.Document) error {
		docs = append(docs, catalog.Document{Name: d.Name, Doc: d.Doc})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read: %w", err)
	}
	if c.files != nil {
		if err := c.files.copy(ctx, run, docs); err != nil {
			return 0, err
		}
	}
	if err := c.dst.Write(ctx, uid, docs); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if err := c.verify(ctx, uid, docs); err != nil {
		if rerr := c.dst.Remove(ctx, uid); rerr != nil {
			c.log.Error("remove unverified copy", "uid", uid, "err", rerr)
		}
		return 0, fmt.Errorf("verify: %w", err)
	}
	return len(docs), nil
}

// verify reads the run back from the destination and compares its document counts.
func (c *copier) verify(ctx context.Context, uid string, docs []catalog.Document) error {
	back, err := c.dst.Run(ctx, uid)
	if err != nil {
		return err
	}
	got, err := countRows(ctx, back)
	if err != nil {
		return err
	}
	want := map[string]int{}
	for _, d := range docs {
		addRows(want, d)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("the copy holds %v, the source %v", got, want)
	}
	return nil
}

// countRows counts a run's documents as rows: one per event and per datum, whether stored
// as pages or not, since stores differ in that.
func countRows(ctx context.Context, run catalog.Run) (map[string]int, error) {
	dr, ok := run.(catalog.DocumentReader)
	if !ok {
		return nil, fmt.Errorf("the destination cannot replay documents")
	}
	n := map[string]int{}
	err := dr.Documents(ctx, func(d catalog.Document) error {
		addRows(n, d)
		return nil
	})
	return n, err
}

func addRows(n map[string]int, d catalog.Document) {
	switch d.Name {
	case "event_page":
		l, _ := d.Doc["seq_num"].([]any)
		n["event"] += len(l)
	case "datum_page":
		l, _ := d.Doc["datum_id"].([]any)
		n["datum"] += len(l)
	default:
		n[d.Name]++
	}
}

// fileDest is a directory of msgpack or JSONL run files.
type fileDest struct {
	dir    string
	format string
	cat    catalog.Catalog
}

func openDest(arg, format string, log *slog.Logger) (destination, error) {
	if err := os.MkdirAll(arg, 0o755); err != nil {
		return nil, err
	}
	if format == "" {
		format = "msgpack"
		if m, _ := filepath.Glob(filepath.Join(arg, "*.jsonl")); len(m) > 0 {
			format = "jsonl"
		}
	}
	d := &fileDest{dir: arg, format: format}
	var err error
	switch format {
	case "msgpack":
		d.cat, err = msgpack.Open([]string{arg}, msgpack.Options{Logger: log})
	case "jsonl":
		d.cat, err = jsonl.Open([]string{arg}, jsonl.Options{Logger: log})
	default:
		return nil, usageError{fmt.Sprintf("--format %q: want msgpack or jsonl", format)}
	}
	return d, err
}

func (d *fileDest) Has(ctx context.Context) (map[string]bool, error) {
	starts, err := d.cat.Runs(ctx)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, s := range starts {
		have[s.UID] = true
	}
	return have, nil
}

// Write writes the run to a hidden temporary file and renames it into place, so that an
// interrupted copy leaves no partial run behind.
func (d *fileDest) Write(ctx context.Context, uid string, docs []catalog.Document) error {
	final := filepath.Join(d.dir, uid+"."+d.format)
	tmp, err := os.CreateTemp(d.dir, ".copy-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	var write func(string, map[string]any) error
	if d.format == "jsonl" {
		write = jsonl.NewWriter(bw).Write
	} else {
		write = msgpack.NewWriter(bw).Write
	}
	for _, doc := range docs {
		if err := write(doc.Name, doc.Doc); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := errors.Join(bw.Flush(), tmp.Sync(), tmp.Close(), os.Chmod(tmp.Name(), 0o644)); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), final)
}

func (d *fileDest) Run(ctx context.Context, uid string) (catalog.Run, error) {
	if _, err := d.cat.Runs(ctx); err != nil { // pick up the new file
		return nil, err
	}
	return d.cat.Run(ctx, uid)
}

func (d *fileDest) Remove(_ context.Context, uid string) error {
	return os.Remove(filepath.Join(d.dir, uid+"."+d.format))
}

func (d *fileDest) Close() error { return d.cat.Close() }

// fileCopier copies a run's external files into dir and rewrites its resources to point
// there, as databroker-pack's --copy-external does.
type fileCopier struct {
	dir    string
	filler *handlers.Filler
}

func (fc *fileCopier) copy(ctx context.Context, run catalog.Run, docs []catalog.Document) error {
	resources, err := run.Resources(ctx)
	if err != nil {
		return err
	}
	for _, r := range resources {
		var kwargs []map[string]any
		err := run.Datums(ctx, r.UID, func(p *catalog.DatumPage) error {
			for i := range p.DatumID {
				kw := map[string]any{}
				for k, col := range p.DatumKwargs {
					kw[k] = col[i]
				}
				kwargs = append(kwargs, kw)
			}
			return nil
		})
		if err != nil {
			return err
		}
		files, err := fc.filler.Files(ctx, r, kwargs)
		if err != nil {
			return err
		}
		base, _ := fc.filler.ResolvePath(r)
		dstRoot := filepath.Join(fc.dir, r.UID)
		for _, f := range files {
			rel, err := filepath.Rel(filepath.Dir(base), f)
			if err != nil || strings.HasPrefix(rel, "..") {
				rel = strings.TrimPrefix(f, "/")
			}
			if err := copyFile(f, filepath.Join(dstRoot, rel)); err != nil {
				return err
			}
		}
		newPath, err := filepath.Rel(filepath.Dir(base), base)
		if err != nil {
			return err
		}
		for _, d := range docs {
			if d.Name == "resource" && d.Doc["uid"] == r.UID {
				d.Doc["root"] = dstRoot
				d.Doc["resource_path"] = newPath
			}
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// mongoDest is a MongoDB catalog in the normalized layout.
type mongoDest struct {
	w   *mongo.Writer
	cat *mongo.Catalog
}

func openMongoDest(ctx context.Context, mds, assets string, timeout time.Duration, log *slog.Logger) (destination, error) {
	assetURI := assets
	if assetURI == "" {
		assetURI = mds
	}
	err := mongo.CheckSentinel(ctx, assetURI)
	if errors.Is(err, mongo.ErrNoSentinel) {
		if err = mongo.InstallSentinel(ctx, assetURI, 1); err == nil {
			log.Info("installed the version sentinel in the destination's asset database", "db", mongo.Redact(assetURI))
		}
	}
	if err != nil {
		return nil, err
	}
	w, err := mongo.NewWriter(ctx, mds, assets)
	if err != nil {
		return nil, err
	}
	cat, err := mongo.OpenNormalized(ctx, mds, assets, mongo.Options{Logger: log, Timeout: timeout})
	if err != nil {
		w.Close()
		return nil, err
	}
	return &mongoDest{w: w, cat: cat}, nil
}

func (d *mongoDest) Has(ctx context.Context) (map[string]bool, error) {
	have := map[string]bool{}
	err := d.cat.EachStart(ctx, nil, func(s *catalog.Start) error {
		have[s.UID] = true
		return nil
	})
	return have, err
}

func (d *mongoDest) Write(ctx context.Context, _ string, docs []catalog.Document) error {
	return d.w.Insert(ctx, docs)
}

func (d *mongoDest) Run(ctx context.Context, uid string) (catalog.Run, error) {
	return d.cat.Run(ctx, uid)
}

// Remove cannot undo an insert cleanly across collections; the run is left for a person to
// look at, and named in the error.
func (d *mongoDest) Remove(_ context.Context, uid string) error {
	return fmt.Errorf("run %s was written to %s but failed verification; delete it there before copying again", uid, d.cat)
}

func (d *mongoDest) Close() error { return errors.Join(d.w.Close(), d.cat.Close()) }
