package filestore

// Finding the run files: every listing matches the patterns again and stats every file, so
// this is the cost of a warm listing. A stat is a few microseconds on a VM; so a directory is
// listed again only when its mtime changed, files are stat'ed relative to the directory (no
// path walk from /) by a worker per core, and the path strings are kept between calls.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
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
	inos    []uint64 // the directory entries' inode numbers
}

// hasMeta reports whether a path has glob metacharacters.
func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// found is a file the patterns matched, with its stat (nil when it vanished), or unstated: a
// regular file, by its directory entry, not stat'ed (ino is the entry's inode number).
type found struct {
	path     string
	fi       os.FileInfo
	unstated bool
	ino      uint64
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
	ents, err := readDirents(dir) // the entries' types come with the names (no stat)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	type entry struct {
		regular bool
		ino     uint64
	}
	byName := make(map[string]entry, len(ents))
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.name
		byName[e.name] = entry{e.typ == syscall.DT_REG, e.ino}
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
	l.inos = make([]uint64, len(l.names))
	for i, n := range l.names {
		l.paths[i] = filepath.Join(dir, n)
		e := byName[n]
		l.regular[i], l.inos[i] = e.regular, e.ino
	}
	return l, nil
}

// dirent is a directory entry as getdents64 gives it.
type dirent struct {
	name string
	ino  uint64
	typ  uint8 // DT_REG, DT_LNK, DT_UNKNOWN, ...
}

// readDirents reads a directory's entries but . and .., with their inode numbers and types
// (os.File.ReadDir gives the type but not the inode number).
func readDirents(dir string) ([]dirent, error) {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	for err == syscall.EINTR {
		fd, err = syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	var out []dirent
	buf := make([]byte, 32<<10)
	for {
		n, err := syscall.Getdents(fd, buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return nil, err
		case n <= 0:
			return out, nil
		}
		out = parseDirents(buf[:n], out)
	}
}

// parseDirents appends the entries of a getdents64 buffer (struct linux_dirent64: d_ino u64,
// d_off s64, d_reclen u16, d_type u8, d_name NUL-terminated) to out.
func parseDirents(b []byte, out []dirent) []dirent {
	const nameOff = 19
	for len(b) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < nameOff || reclen > len(b) {
			break // not a record: the kernel does not do this
		}
		name := b[nameOff:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if s := string(name); s != "." && s != ".." && s != "" {
			out = append(out, dirent{name: s, ino: binary.NativeEndian.Uint64(b[0:8]), typ: b[18]})
		}
		b = b[reclen:]
	}
	return out
}

// statDir stats a directory's files relative to it, in parallel, except regular files that
// known does not know: those are returned unstated.
func statDir(dir string, l *dirListing, known func(string) bool) []found {
	out := make([]found, len(l.paths))
	var stat []int
	for i, p := range l.paths {
		if l.regular[i] && known != nil && !known(p) {
			out[i] = found{path: p, unstated: true, ino: l.inos[i]}
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
	parallelN(min(runtime.GOMAXPROCS(0), (n+255)/256), n, fn)
}
