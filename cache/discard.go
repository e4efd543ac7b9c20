package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Discard removes a file the entry no longer needs (a column rewritten into another file
// while it was built), so that Commit does not seal it. Its bytes stay reserved until Commit
// or Abort.
func (b *Builder) Discard(name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := slices.Index(b.names, name)
	if i < 0 || b.done {
		return fmt.Errorf("discard cache file %q: not a file of this builder", name)
	}
	b.files[i].Close()
	b.files = slices.Delete(b.files, i, i+1)
	b.names = slices.Delete(b.names, i, i+1)
	return os.Remove(filepath.Join(b.dir, name))
}
