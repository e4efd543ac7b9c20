package filestore

// Finding the run files: every listing matches the patterns again and stats every file, so
// this is the cost of a warm listing. A stat is a few microseconds on a VM; so a directory is
// listed again only when its mtime changed, files are stat'ed relative to the directory (no
// path walk from /) by a worker per core, and the path strings are kept between calls.

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// racyWindow: a directory changed this recently may change again within its mtime's
// granularity without its mtime moving, so its listing is not trusted from the cache.
const racyWindow = 2 * time.Second

// dirListing is the files of a directory that match a name pattern, as last listed.
type dirListing struct {
	mtime   time.Time
	names   []string // base names
	paths   []string // the same, joined to the directory
	regular []bool   // the directory entry says a regular file (not a symlink, not unknown)
}

// hasMeta reports whether a path has glob metacharacters.
func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// found is a file the patterns matched, with its stat (nil when it vanished), or unstated: a
// regular file, by its directory entry, not stat'ed.
type found struct {
	path     string
	fi       os.FileInfo
	unstated bool
}

// find matches the patterns and stats what they match, in pattern order: a directory gives
// its files whose names end in one of exts, a glob what it matches, a file path itself.
// dirs caches listings between calls (owned by the caller, which serializes calls). Regular
// files of a directory listing for which known is false are returned unstated.
func find(patterns, exts []string, dirs map[string]*dirListing, known func(path string) bool) ([]found, error) {
	var out []found
	for _, p := range patterns {
		dir, name := filepath.Split(p)
		dir = filepath.Clean(dir)
		fi, err := os.Stat(p)
		switch {
		case err == nil && fi.IsDir():
			dir, name = p, "" // "": any of exts
		case err == nil:
			out = append(out, found{path: p, fi: fi})
			continue
		case !hasMeta(p):
			continue // a file or directory that does not exist (yet) matches nothing
		case hasMeta(dir):
			matches, err := filepath.Glob(p)
			if err != nil {
				return nil, fmt.Errorf("glob %s: %w", p, err)
			}
			out = append(out, statPaths(matches)...)
			continue
		default:
			// DIR/*.msgpack, the usual glob: the directory's cached listing, matched by name.
			if fi, err = os.Stat(dir); err != nil || !fi.IsDir() {
				continue
			}
		}
		key := dir + "\x00" + name
		l, err := listDir(dir, name, exts, fi.ModTime(), dirs[key])
		if err != nil {
			return nil, err
		}
		dirs[key] = l
		out = append(out, statDir(dir, l, known)...)
	}
	return out, nil
}

// listDir returns the directory's files whose names match pattern ("" means: end in one of
// exts), from old when the directory has not changed since it was listed.
func listDir(dir, pattern string, exts []string, mtime time.Time, old *dirListing) (*dirListing, error) {
	if old != nil && old.mtime.Equal(mtime) && time.Since(mtime) > racyWindow {
		return old, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	ents, err := f.ReadDir(-1) // the entries' types come with the names (no stat)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	regular := make(map[string]bool, len(ents))
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
		regular[names[i]] = e.Type().IsRegular()
	}
	l := &dirListing{mtime: mtime}
	// "*.msgpack" and the like are a suffix test: much cheaper than filepath.Match on
	// thousands of names.
	suffixes := exts
	if pattern != "" {
		s, ok := strings.CutPrefix(pattern, "*")
		suffixes = nil
		if ok && !hasMeta(s) {
			suffixes = []string{s}
		}
	}
	for _, n := range names {
		ok := false
		if suffixes != nil {
			for _, s := range suffixes {
				ok = ok || strings.HasSuffix(n, s)
			}
		} else {
			ok, _ = filepath.Match(pattern, n)
		}
		// Like Python's glob, which evaluates these patterns in databroker, leave out dot
		// files (editors' and writers' temporaries) unless the pattern names them.
		if ok && (n[0] != '.' || strings.HasPrefix(pattern, ".")) {
			l.names = append(l.names, n)
		}
	}
	slices.Sort(l.names)
	l.paths = make([]string, len(l.names))
	l.regular = make([]bool, len(l.names))
	for i, n := range l.names {
		l.paths[i] = filepath.Join(dir, n)
		l.regular[i] = regular[n]
	}
	return l, nil
}

// statDir stats a directory's files relative to it, in parallel, except regular files that
// known does not know: those are returned unstated.
func statDir(dir string, l *dirListing, known func(string) bool) []found {
	out := make([]found, len(l.paths))
	var stat []int
	for i, p := range l.paths {
		if l.regular[i] && known != nil && !known(p) {
			out[i] = found{path: p, unstated: true}
		} else {
			stat = append(stat, i)
		}
	}
	if len(stat) == 0 {
		return out
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		paths := make([]string, len(stat))
		for j, i := range stat {
			paths[j] = l.paths[i]
		}
		for j, fd := range statPaths(paths) {
			out[stat[j]] = fd
		}
		return out
	}
	defer root.Close()
	parallel(len(stat), func(j int) {
		i := stat[j]
		fi, err := root.Stat(l.names[i])
		if err != nil {
			// A symlink leading out of the directory: os.Root will not follow it.
			fi, _ = os.Stat(l.paths[i])
		}
		out[i] = found{path: l.paths[i], fi: fi}
	})
	return out
}

// statPaths stats paths in parallel.
func statPaths(paths []string) []found {
	out := make([]found, len(paths))
	parallel(len(out), func(i int) {
		fi, _ := os.Stat(paths[i])
		out[i] = found{path: filepath.Clean(paths[i]), fi: fi}
	})
	return out
}

// parallel calls fn(0..n-1) from one goroutine per core (stats are syscalls: more goroutines
// than cores gain nothing).
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), (n+255)/256)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				fn(i)
			}
		})
	}
	wg.Wait()
}
