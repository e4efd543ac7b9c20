package filestore

import (
	"context"
	"fmt"
	"os"

	"github.com/brokerfs/brokerfs/catalog"
)

var _ catalog.RunVersioner = (*Catalog)(nil)

// RunVersion implements catalog.RunVersioner: a stat of the file that holds run uid, the key
// its run's Version gives for the file as it is now. A file gone or holding another run
// gives an error wrapping catalog.ErrNotFound.
func (c *Catalog) RunVersion(ctx context.Context, uid string) (string, error) {
	f, err := c.lookup(ctx, uid)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(f.Path)
	if err != nil {
		return "", fmt.Errorf("run %s: %w: %w", uid, catalog.ErrNotFound, err)
	}
	if !f.sameStat(fi) {
		// Rewritten since it was listed: it may now hold another run. The listing decides.
		if err := c.refresh(ctx); err != nil {
			return "", err
		}
		if f, err = c.lookup(ctx, uid); err != nil {
			return "", err
		}
		if fi, err = os.Stat(f.Path); err != nil {
			return "", fmt.Errorf("run %s: %w: %w", uid, catalog.ErrNotFound, err)
		}
	}
	ino, dev := StatIDs(fi)
	return VersionKey(f.Path, fi.Size(), fi.ModTime(), ino, dev), nil
}
