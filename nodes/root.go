package nodes

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/brokerfs/brokerfs/catalog"
)

// NewRoot returns the root of the tree for cfg.Catalog.
func NewRoot(cfg Config) gofs.InodeEmbedder {
	return &rootDir{st: newState(cfg)}
}

// rootDir lists the runs; it also resolves by-scan-id, latest and, without listing them, the
// names databroker's catalog[name] takes: scan_ids, -N and unique uid prefixes.
type rootDir struct {
	gofs.Inode
	st *state
}

var (
	_ gofs.NodeLookuper  = (*rootDir)(nil)
	_ gofs.NodeReaddirer = (*rootDir)(nil)
	_ gofs.NodeGetattrer = (*rootDir)(nil)
)

const (
	byScanName = "by-scan-id"
	latestName = "latest"
)

func (d *rootDir) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.st.fillListingDir(ctx, &out.Attr)
	out.Ino = rootIno
	out.SetTimeout(d.st.cfg.ListTTL)
	return 0
}

// fillListingDir sets the attributes of the root and by-scan-id: their mtime is the newest
// run's start, so that a new run shows as a change.
func (st *state) fillListingDir(ctx context.Context, a *fuse.Attr) {
	var t float64
	if l, err := st.listing(ctx); err == nil && l.latest != "" {
		t = l.starts[l.latest].Time
	}
	fillDir(a, t)
}

func (d *scanDir) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.st.fillListingDir(ctx, &out.Attr)
	out.SetTimeout(d.st.cfg.ListTTL)
	return 0
}

func (d *rootDir) Readdir(ctx context.Context) (_ gofs.DirStream, errno syscall.Errno) {
	defer d.st.observe("readdir", time.Now(), &errno)
	l, err := d.st.listing(ctx)
	if err != nil {
		return nil, d.st.toErrno("readdir", "/", err)
	}
	entries := make([]fuse.DirEntry, 0, len(l.uids)+2)
	entries = append(entries,
		fuse.DirEntry{Name: byScanName, Mode: modeDir, Ino: inoOf(byScanName)},
		fuse.DirEntry{Name: latestName, Mode: modeSymlink, Ino: inoOf(latestName)})
	for _, uid := range l.uids {
		entries = append(entries, fuse.DirEntry{Name: l.file[uid], Mode: modeDir, Ino: inoOf(uid)})
	}
	return gofs.NewListDirStream(entries), 0
}

func (d *rootDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer d.st.observe("lookup", time.Now(), &errno)
	l, err := d.st.listing(ctx)
	if err != nil {
		return nil, d.st.toErrno("lookup", name, err)
	}
	switch name {
	case byScanName:
		d.st.fillListingDir(ctx, &out.Attr)
		out.SetEntryTimeout(d.st.cfg.ListTTL)
		out.SetAttrTimeout(d.st.cfg.ListTTL)
		return d.NewInode(ctx, &scanDir{st: d.st}, stableAttr(byScanName, modeDir)), 0
	case latestName:
		if l.latest == "" {
			return nil, syscall.ENOENT
		}
		link := &symlink{target: l.file[l.latest], mtime: l.starts[l.latest].Time, resolve: d.st.latestLink}
		link.fill(&out.Attr)
		out.SetEntryTimeout(d.st.cfg.ListTTL)
		out.SetAttrTimeout(d.st.cfg.ListTTL)
		return d.NewInode(ctx, link, stableAttr(latestName, modeSymlink)), 0
	}
	if _, listed := l.byFile[name]; !listed {
		if k := catalog.KindOf(name); k == catalog.NameScanID || k == catalog.NameRecent {
			return d.lookupNameLink(ctx, l, name, out)
		}
	}
	uid, err := l.resolve(name)
	if err != nil {
		return nil, d.st.nameErrno(name, err)
	}
	// A prefix resolves to the run's directory itself: `cd MNT/3f2a5` lands in the run.
	rd := newRunDir(d.st, uid, l.starts[uid].Time)
	rd.fill(&out.Attr)
	// Whether the run is live is not known until it is opened; the listing's TTL is short
	// enough for both, and the run's own entries carry the long timeouts.
	out.SetEntryTimeout(d.st.cfg.ListTTL)
	out.SetAttrTimeout(d.st.cfg.ListTTL)
	return d.NewInode(ctx, rd, stableAttr(uid, modeDir)), 0
}

// lookupNameLink makes the symlink for a name whose meaning changes as runs arrive: a
// scan_id (34, the newest run with it) or -N (the Nth newest run). Like latest, it is a link
// to the run's directory, so that `ls -l MNT/-1` says which run it is, and its target is
// worked out again on every readlink and stat; the kernel keeps the entry for ListTTL only.
// These names are not listed by readdir.
func (d *rootDir) lookupNameLink(ctx context.Context, l *listing, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	uid, err := l.names.Resolve(name)
	if err != nil {
		return nil, d.st.nameErrno(name, err)
	}
	link := &symlink{target: l.file[uid], mtime: l.starts[uid].Time, resolve: func(ctx context.Context) (string, float64, error) {
		l, err := d.st.listing(ctx)
		if err != nil {
			return "", 0, err
		}
		uid, err := l.names.Resolve(name)
		if err != nil {
			return "", 0, err
		}
		return l.file[uid], l.starts[uid].Time, nil
	}}
	link.fill(&out.Attr)
	out.SetEntryTimeout(d.st.cfg.ListTTL)
	out.SetAttrTimeout(d.st.cfg.ListTTL)
	// NUL cannot be in a name of the tree: these inodes are apart from every run's.
	return d.NewInode(ctx, link, stableAttr("\x00name/"+name, modeSymlink)), 0
}

// nameErrno is the errno of a name of the root that names no run: ENOENT, and for an
// ambiguous uid prefix one log line listing the runs it matches.
func (st *state) nameErrno(name string, err error) syscall.Errno {
	var amb *catalog.AmbiguousError
	if errors.As(err, &amb) {
		if st.shouldLog(name, err) {
			st.log.Warn("ambiguous uid prefix", "name", name, "runs", amb.Count, "uids", strings.Join(amb.UIDs, " "))
		}
		return syscall.ENOENT
	}
	return st.toErrno("lookup", name, err)
}

// scanDir is by-scan-id/: one symlink per scan_id to the newest run with it.
type scanDir struct {
	gofs.Inode
	st *state
}

var (
	_ gofs.NodeLookuper  = (*scanDir)(nil)
	_ gofs.NodeReaddirer = (*scanDir)(nil)
	_ gofs.NodeGetattrer = (*scanDir)(nil)
)

func (d *scanDir) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	l, err := d.st.listing(ctx)
	if err != nil {
		return nil, d.st.toErrno("readdir", byScanName, err)
	}
	ids := l.names.ScanIDs()
	entries := make([]fuse.DirEntry, 0, len(ids))
	for _, id := range ids {
		name := strconv.FormatInt(id, 10)
		entries = append(entries, fuse.DirEntry{Name: name, Mode: modeSymlink, Ino: inoOf(byScanName + "/" + name)})
	}
	return gofs.NewListDirStream(entries), 0
}

func (d *scanDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	id, err := strconv.ParseInt(name, 10, 64)
	if err != nil || strconv.FormatInt(id, 10) != name {
		return nil, syscall.ENOENT
	}
	l, err := d.st.listing(ctx)
	if err != nil {
		return nil, d.st.toErrno("lookup", byScanName+"/"+name, err)
	}
	uid, ok := l.names.ScanID(id)
	if !ok {
		return nil, syscall.ENOENT
	}
	link := &symlink{target: "../" + l.file[uid], mtime: l.starts[uid].Time, resolve: func(ctx context.Context) (string, float64, error) {
		l, err := d.st.listing(ctx)
		if err != nil {
			return "", 0, err
		}
		uid, ok := l.names.ScanID(id)
		if !ok {
			return "", 0, fmt.Errorf("scan_id %d: %w", id, catalog.ErrNotFound)
		}
		return "../" + l.file[uid], l.starts[uid].Time, nil
	}}
	link.fill(&out.Attr)
	out.SetEntryTimeout(d.st.cfg.ListTTL)
	out.SetAttrTimeout(d.st.cfg.ListTTL)
	return d.NewInode(ctx, link, stableAttr(byScanName+"/"+name, modeSymlink)), 0
}

// symlink is a link whose target was fixed at lookup.
//
// go-fuse keeps the first node made for an inode number, so a link's target is worked out
// from the current listing on every Readlink and Getattr (resolve), not fixed at lookup:
// latest follows the newest run, by-scan-id/N the newest run with scan_id N.
type symlink struct {
	gofs.Inode
	target  string
	mtime   float64
	resolve func(ctx context.Context) (target string, mtime float64, err error)
}

// current is the link's target and time in the current listing.
func (l *symlink) current(ctx context.Context) (*symlink, error) {
	if l.resolve == nil {
		return l, nil
	}
	t, m, err := l.resolve(ctx)
	if err != nil {
		return nil, err
	}
	return &symlink{target: t, mtime: m}, nil
}

var (
	_ gofs.NodeReadlinker = (*symlink)(nil)
	_ gofs.NodeGetattrer  = (*symlink)(nil)
)

func (l *symlink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	c, err := l.current(ctx)
	if err != nil {
		return nil, syscall.ENOENT
	}
	return []byte(c.target), 0
}

func (l *symlink) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	c, err := l.current(ctx)
	if err != nil {
		return syscall.ENOENT
	}
	c.fill(&out.Attr)
	return 0
}

func (l *symlink) fill(a *fuse.Attr) {
	a.Mode = modeSymlink | 0o777
	a.Nlink = 1
	a.Size = uint64(len(l.target))
	setTime(a, l.mtime)
}

// setTime sets a, m and ctime from a Bluesky timestamp (seconds since the epoch).
// A time that is not a number or lies outside what int64 nanoseconds hold (NaN, Inf, 1e300)
// is shown as the epoch rather than wrapped to 1677.
func setTime(a *fuse.Attr, t float64) {
	if math.IsNaN(t) || t < -9.2e9 || t > 9.2e9 {
		t = 0
	}
	tm := time.Unix(0, int64(t*1e9))
	a.SetTimes(&tm, &tm, &tm)
}

// latestLink resolves latest in the current listing.
func (st *state) latestLink(ctx context.Context) (string, float64, error) {
	l, err := st.listing(ctx)
	if err != nil {
		return "", 0, err
	}
	if l.latest == "" {
		return "", 0, fmt.Errorf("latest: %w", catalog.ErrNotFound)
	}
	return l.file[l.latest], l.starts[l.latest].Time, nil
}
