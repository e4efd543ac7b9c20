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

	"golang.org/x/sync/errgroup"

	"github.com/brokerfs/brokerfs/catalog"
	"github.com/brokerfs/brokerfs/catalog/filestore"
	"github.com/brokerfs/brokerfs/catalog/jsonl"
	"github.com/brokerfs/brokerfs/catalog/mongo"
	"github.com/brokerfs/brokerfs/catalog/msgpack"
	"github.com/brokerfs/brokerfs/handlers"
)

// brokerfs copy SOURCE DEST: every run (or those matching --query) from any store to another.
// The source is only read; runs already in DEST are compared with the source's (copystate.go)
// and skipped when the same, so an interrupted copy resumes; each run is read back from DEST
// and its documents counted against the source's.

func cmdCopy(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("copy", stderr)
	var (
		cf        catalogFlags
		format    string
		copyFiles string
		rootMap   []string
		noBar     bool
		update    bool
		destAsset string
	)
	cf.register(fl)
	unused := rejectUnused(fl, "copy", "include", "exclude", "cache-max", "cache-ttl")
	fl.StringVar(&format, "format", "", "format of a DEST directory: msgpack or jsonl (default: what DEST holds, else msgpack)")
	fl.StringVar(&copyFiles, "copy-files", "", "copy the runs' external files into DIR and point their resources there")
	fl.StringArrayVar(&rootMap, "root-map", nil, "OLD=NEW: where the source's external files are now (repeatable)")
	fl.BoolVar(&noBar, "no-progress", false, "no progress display")
	fl.BoolVar(&update, "update", false, "also re-copy runs whose copy in DEST differs from the source (by default only copies of runs that were live, and have grown or finished since, are re-copied)")
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
	c := &copier{src: src.cat, dst: dst, files: files, update: update, log: log}
	return c.run(ctx, stdout, stderr, noBar)
}

// destination is a store runs are copied into.
type destination interface {
	// Has reports the runs already present.
	Has(ctx context.Context) (map[string]bool, error)
	// Write stores one run's documents; a partly written run must not count as present.
	// replace: the run is present and its copy is to be replaced by these documents, as one
	// step (a reader sees the old copy or the new one, never a mix or nothing).
	Write(ctx context.Context, uid string, docs []catalog.Document, replace bool) error
	// Run opens a run as DEST holds it now (after a Write: the new copy).
	Run(ctx context.Context, uid string) (catalog.Run, error)
	// Remove undoes a Write that failed verification, so that a later copy retries it: it
	// deletes the new run, or puts back the copy it replaced.
	Remove(ctx context.Context, uid string) error
	// Verified says the Write of uid was verified: what Remove would need can go.
	Verified(uid string) error
	Close() error
}

type copier struct {
	src    catalog.Catalog
	dst    destination
	files  *fileCopier
	update bool
	log    *slog.Logger
}

// compareParallel is how many runs are compared with their copies at once.
const compareParallel = 8

// copyJob is a run to copy; replace: DEST has an older or different copy of it.
type copyJob struct {
	start   *catalog.Start
	replace bool
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
	var (
		todo    []copyJob
		skipped int
		changed []string
		failed  []string
	)
	// Runs already in DEST are compared with the source a few at a time: each costs a
	// round trip or a file index on each side.
	diffs := make([]runDiff, len(starts))
	errs := make([]error, len(starts))
	var g errgroup.Group
	g.SetLimit(compareParallel)
	for i, s := range starts {
		if have[s.UID] {
			g.Go(func() error {
				diffs[i], errs[i] = c.compare(ctx, s.UID)
				return nil
			})
		}
	}
	g.Wait()
	for i, s := range starts {
		if !have[s.UID] {
			todo = append(todo, copyJob{start: s})
			continue
		}
		d, err := diffs[i], errs[i]
		switch {
		case err != nil:
			c.log.Error("compare run with its copy", "uid", s.UID, "err", err)
			failed = append(failed, s.UID)
		case d.same():
			skipped++
		case d.grown() || c.update:
			c.log.Info("re-copying a run whose copy differs from the source", "uid", s.UID, "copy", d.dst, "source", d.src)
			todo = append(todo, copyJob{start: s, replace: true})
		default:
			c.log.Warn("the run's copy differs from the source; left as it is (--update re-copies it)", "uid", s.UID, "copy", d.dst, "source", d.src)
			changed = append(changed, s.UID)
		}
	}
	prog := newProgress(stderr, len(todo), !noBar)
	var (
		docs, copied, updated int
		ext                   externalCount
	)
	for _, job := range todo {
		n, err := c.copyRun(ctx, job, &ext)
		docs += n
		switch {
		case err != nil:
			c.log.Error("copy run", "uid", job.start.UID, "err", err)
			failed = append(failed, job.start.UID)
		case job.replace:
			copied++
			updated++
		default:
			copied++
		}
		prog.add(n)
	}
	prog.finish()
	fmt.Fprintf(stdout, "copied %d runs (%d documents), skipped %d already present, %d failed, %d updated, %d changed\n", copied, docs, skipped, len(failed), updated, len(changed))
	if len(changed) > 0 {
		fmt.Fprintf(stdout, "%d changed: their copies in DEST differ from the source and were left as they are; use --update to re-copy them\n", len(changed))
	}
	if ext.runs > 0 && c.files == nil {
		fmt.Fprintf(stderr, "warning: external files were not copied (runs: %d, files: %d); the copies' resources name them where they are; use --copy-files DIR to copy them too\n", ext.runs, ext.files)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d runs failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// externalCount counts the runs copied that reference external files.
type externalCount struct{ runs, files int }

// copyRun copies one run and verifies it; it returns the number of documents written.
func (c *copier) copyRun(ctx context.Context, job copyJob, ext *externalCount) (int, error) {
	uid := job.start.UID
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
	if err := c.dst.Write(ctx, uid, docs, job.replace); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	if err := c.verify(ctx, uid, docs); err != nil {
		if rerr := c.dst.Remove(ctx, uid); rerr != nil {
			c.log.Error("remove unverified copy", "uid", uid, "err", rerr)
		}
		return 0, fmt.Errorf("verify: %w", err)
	}
	if err := c.dst.Verified(uid); err != nil {
		c.log.Warn("copy verified, but cleaning up after it failed", "uid", uid, "err", err)
	}
	ext.add(docs)
	return len(docs), nil
}

// add counts a copied run's external files: the distinct paths its resources name.
func (e *externalCount) add(docs []catalog.Document) {
	paths := map[string]bool{}
	for _, d := range docs {
		if d.Name == "resource" {
			root, _ := d.Doc["root"].(string)
			rel, _ := d.Doc["resource_path"].(string)
			paths[root+"\x00"+rel] = true
		}
	}
	if len(paths) > 0 {
		e.runs++
		e.files += len(paths)
	}
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
	cat    *filestore.Catalog
	// stale: a file was written since the catalog last listed DEST.
	stale bool
	// replaced maps the uid of a run whose copy was just replaced to its file and a hard link
	// to the old copy, kept until the new one is verified.
	replaced map[string]backup
}

type backup struct{ path, old string }

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
	d := &fileDest{dir: arg, format: format, replaced: map[string]backup{}}
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
	d.stale = false
	have := map[string]bool{}
	for _, s := range starts {
		have[s.UID] = true
	}
	return have, nil
}

// Write writes the run to a hidden temporary file and renames it into place, so that an
// interrupted copy leaves no partial run behind. A copy being replaced is replaced in that
// rename (same file name), after a hard link to it was made for Remove to put back.
func (d *fileDest) Write(ctx context.Context, uid string, docs []catalog.Document, replace bool) error {
	if err := fileNameOK(uid); err != nil {
		return err
	}
	final := filepath.Join(d.dir, uid+"."+d.format)
	if replace {
		f, err := d.cat.Lookup(ctx, uid)
		if err != nil {
			return err
		}
		final = f.Path
	}
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
	if replace {
		old := filepath.Join(d.dir, ".copy-old-"+filepath.Base(final))
		if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.Link(final, old); err != nil {
			return fmt.Errorf("keep the old copy: %w", err)
		}
		d.replaced[uid] = backup{path: final, old: old}
	}
	d.stale = true
	return os.Rename(tmp.Name(), final)
}

// fileNameOK refuses a uid that cannot name a run file in DEST: uids come from documents.
func fileNameOK(uid string) error {
	if uid == "" || strings.HasPrefix(uid, ".") || strings.ContainsAny(uid, "/\x00") || len(uid) > 200 {
		return fmt.Errorf("uid %q cannot name a file in DEST", uid)
	}
	return nil
}

func (d *fileDest) Run(ctx context.Context, uid string) (catalog.Run, error) {
	if d.stale { // pick up the new file
		if _, err := d.cat.Runs(ctx); err != nil {
			return nil, err
		}
		d.stale = false
	}
	return d.cat.Run(ctx, uid)
}

func (d *fileDest) Remove(_ context.Context, uid string) error {
	d.stale = true
	if b, ok := d.replaced[uid]; ok {
		delete(d.replaced, uid)
		return os.Rename(b.old, b.path)
	}
	return os.Remove(filepath.Join(d.dir, uid+"."+d.format))
}

func (d *fileDest) Verified(uid string) error {
	if b, ok := d.replaced[uid]; ok {
		delete(d.replaced, uid)
		return os.Remove(b.old)
	}
	return nil
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

func (d *mongoDest) Write(ctx context.Context, uid string, docs []catalog.Document, replace bool) error {
	if replace {
		return fmt.Errorf("run %s is in %s already and differs from the source; brokerfs copy does not replace runs in MongoDB: delete its documents there and copy again", uid, d.cat)
	}
	return d.w.Insert(ctx, docs)
}

func (d *mongoDest) Verified(string) error { return nil }

func (d *mongoDest) Run(ctx context.Context, uid string) (catalog.Run, error) {
	return d.cat.Run(ctx, uid)
}

// Remove cannot undo an insert cleanly across collections; the run is left for a person to
// look at, and named in the error.
func (d *mongoDest) Remove(_ context.Context, uid string) error {
	return fmt.Errorf("run %s was written to %s but failed verification; delete it there before copying again", uid, d.cat)
}

func (d *mongoDest) Close() error { return errors.Join(d.w.Close(), d.cat.Close()) }
