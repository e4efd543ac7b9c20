package handlers

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// ErrNotAllowed means a resource names a file outside the allowed roots.
var ErrNotAllowed = errors.New("outside the allowed roots")

// allowed checks path against AllowedRoots (none: anything is allowed). External paths come
// from documents in a database, so on a shared mount a hostile or mistaken resource could name
// /etc/shadow. Symlinks are resolved where the path exists, so a link cannot lead outside.
// Handlers that derive further files from path (TIFF templates, Eiger masters) derive them in
// the same directory.
func (f *Filler) allowed(path string) error {
	if len(f.o.AllowedRoots) == 0 {
		return nil
	}
	p := filepath.Clean(path)
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	for _, root := range f.o.AllowedRoots {
		root = filepath.Clean(root)
		if r, err := filepath.EvalSymlinks(root); err == nil {
			root = r
		}
		if p == root || strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/") {
			return nil
		}
	}
	return fmt.Errorf("%s: %w %v", path, ErrNotAllowed, f.o.AllowedRoots)
}
