package handlers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrNotAllowed means a resource names a file outside the allowed roots.
var ErrNotAllowed = errors.New("outside the allowed roots")

// ErrNotRegular means a handler was asked to open something that is not a regular file (a
// FIFO, a device, a directory): opening a FIFO blocks until a writer comes, reading
// /dev/zero never ends, so handlers open regular files only.
var ErrNotRegular = errors.New("not a regular file")

// Guard decides which files handlers may open. External paths come from documents, and a
// system mount runs as root, so every file a handler opens goes through a Guard: the
// resource's own path, files derived from it (TIFF templates, NPY_SEQ indices, Eiger data
// files) and the files libhdf5 opens by itself (external links, external raw storage,
// virtual dataset sources).
//
// A Guard with no roots allows any path; it still refuses what is not a regular file.
// A Guard with roots allows a path only when it resolves, symlinks included, to a file
// under one of them; Open then opens it through os.Root, so a symlink swapped in between
// the check and the open cannot lead outside either.
type Guard struct {
	roots []guardRoot
}

type guardRoot struct {
	given    string // as configured, for messages
	resolved string // cleaned, symlinks resolved
}

// NewGuard returns a Guard over the allowed roots (none: any path).
func NewGuard(roots []string) *Guard {
	g := &Guard{}
	for _, r := range roots {
		res := filepath.Clean(r)
		if abs, err := filepath.Abs(res); err == nil {
			res = abs
		}
		if e, err := filepath.EvalSymlinks(res); err == nil {
			res = e
		}
		g.roots = append(g.roots, guardRoot{given: r, resolved: res})
	}
	return g
}

type guardKey struct{}

// WithGuard returns ctx carrying g. The Filler passes its Guard to handlers this way, in the
// context of every Opener and Handler call, so a handler needs no option of its own.
func WithGuard(ctx context.Context, g *Guard) context.Context {
	return context.WithValue(ctx, guardKey{}, g)
}

// GuardOf returns the Guard ctx carries, or one with no roots (regular files only).
func GuardOf(ctx context.Context) *Guard {
	if g, ok := ctx.Value(guardKey{}).(*Guard); ok && g != nil {
		return g
	}
	return &Guard{}
}

// Restricted reports whether g has allowed roots.
func (g *Guard) Restricted() bool { return len(g.roots) > 0 }

// resolve returns path made absolute and cleaned, with the symlinks of its longest existing
// prefix resolved (a missing file cannot lead anywhere, but its directory may be a link).
//
// ".." is resolved after the symlinks before it, as the kernel does (filepath.EvalSymlinks
// walks the path): "dir/link/../x" with link -> /etc is /etc/x, not dir/x. Only the missing
// tail of a path is cleaned lexically.
func resolve(path string) (string, error) {
	p := path
	if !filepath.IsAbs(p) {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		p = wd + "/" + p // not filepath.Join, which would clean ".." lexically
	}
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		p = strings.TrimRight(p, "/")
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return "", fmt.Errorf("resolve %s: %w", path, fs.ErrNotExist)
		}
		base := p[i+1:]
		if base == ".." {
			// Below a missing directory ".." has no meaning the kernel would give it.
			return "", fmt.Errorf("resolve %s: \"..\" after a missing directory: %w", path, fs.ErrNotExist)
		}
		if base != "." && base != "" {
			rest = append([]string{base}, rest...)
		}
		p = p[:i]
		if p == "" {
			return filepath.Join(append([]string{"/"}, rest...)...), nil
		}
	}
}

// root returns the allowed root resolved lies under, and the path relative to it.
func (g *Guard) root(resolved string) (guardRoot, string, bool) {
	for _, r := range g.roots {
		if resolved == r.resolved {
			return r, ".", true
		}
		if rel, ok := strings.CutPrefix(resolved, strings.TrimSuffix(r.resolved, "/")+"/"); ok {
			return r, rel, true
		}
	}
	return guardRoot{}, "", false
}

// Check reports whether path may be opened: it resolves inside the allowed roots (when there
// are any). It does not look at what the file is; Open and Stat do.
func (g *Guard) Check(path string) error {
	if !g.Restricted() {
		return nil
	}
	res, err := resolve(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if _, _, ok := g.root(res); !ok {
		return fmt.Errorf("%s (resolves to %s): %w %v", path, res, ErrNotAllowed, g.given())
	}
	return nil
}

func (g *Guard) given() []string {
	out := make([]string, len(g.roots))
	for i, r := range g.roots {
		out[i] = r.given
	}
	return out
}

// Stat checks path as Check does and that it is a regular file, and returns its FileInfo.
// It is for files that a library opens by name (libhdf5): open them right after, and
// compare what was opened with SameFile where the library gives a descriptor.
//
// The FileInfo is that of the path with its symlinks resolved, taken without following
// links: a path whose meaning changes after the check gives another inode.
func (g *Guard) Stat(path string) (fs.FileInfo, error) {
	res, err := resolve(path)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if _, _, ok := g.root(res); g.Restricted() && !ok {
		return nil, fmt.Errorf("%s (resolves to %s): %w %v", path, res, ErrNotAllowed, g.given())
	}
	st, err := os.Lstat(res)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, unwrapPath(err))
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("open %s: %s: %w", path, st.Mode().Type(), ErrNotRegular)
	}
	return st, nil
}

// Open opens path read-only if Check allows it and it is a regular file. The open itself
// never blocks: O_NONBLOCK, so a FIFO put in the file's place is not waited on, and the
// descriptor is checked with fstat before any read. With allowed roots the file is opened
// through os.Root, which confines symlinks followed during the open to the root.
func (g *Guard) Open(path string) (*os.File, error) {
	var f *os.File
	if g.Restricted() {
		res, err := resolve(path)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		r, rel, ok := g.root(res)
		if !ok {
			return nil, fmt.Errorf("%s (resolves to %s): %w %v", path, res, ErrNotAllowed, g.given())
		}
		root, err := os.OpenRoot(r.resolved)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		f, err = root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		root.Close()
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "escapes") {
				return nil, fmt.Errorf("%s: %w %v", path, ErrNotAllowed, g.given())
			}
			return nil, fmt.Errorf("open %s: %w", path, unwrapPath(err))
		}
	} else {
		var err error
		if f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0); err != nil {
			return nil, err
		}
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open %s: %s: %w", path, st.Mode().Type(), ErrNotRegular)
	}
	return f, nil
}

// unwrapPath keeps fs.ErrNotExist and friends matchable while dropping os.Root's relative
// name from the message (the caller names the full path).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// allowed checks a resource's path against the Filler's Guard. Handlers that derive further
// files from it check those themselves, through the Guard in their context.
func (f *Filler) allowed(path string) error {
	return f.guard.Check(path)
}
