package nodes

import (
	"context"
	"sort"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/brokerfs/brokerfs/table"
)

// entry is one name in a run's directory: a subdirectory or a file, made on lookup.
type entry struct {
	name string
	dir  func() gofs.InodeEmbedder // set for directories
	file resolver                  // set for files
}

// dirBase is what the directories inside a run share: listing and lookup through entries,
// which reads the run's current state, so that a live run's directories follow it.
type dirBase struct {
	gofs.Inode
	st      *state
	uid     string
	path    string // relative to the mount root
	entries func(ctx context.Context, r *runState) ([]entry, error)
}

func (d *dirBase) list(ctx context.Context) (*runState, []entry, error) {
	r, err := d.st.run(ctx, d.uid)
	if err != nil {
		return nil, nil, err
	}
	es, err := d.entries(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	return r, es, nil
}

func (d *dirBase) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r, err := d.st.run(ctx, d.uid)
	if err != nil {
		return d.st.toErrno("getattr", d.path, err)
	}
	fillDir(&out.Attr, r.start.Time)
	out.SetTimeout(d.st.ttl(r))
	return 0
}

// fillDir sets a directory's attributes. Modes are 0755 and 0644 though nothing is writable (the
// mount is ro and every write gets EROFS): copies made with `cp -a` or rsync keep the modes and
// must stay writable, hence deletable, by whoever made them.
func fillDir(a *fuse.Attr, t float64) {
	a.Mode = modeDir | 0o755
	a.Nlink = 2
	setTime(a, t)
}

func (d *dirBase) Readdir(ctx context.Context) (_ gofs.DirStream, errno syscall.Errno) {
	defer d.st.observe("readdir", time.Now(), &errno)
	_, es, err := d.list(ctx)
	if err != nil {
		return nil, d.st.toErrno("readdir", d.path, err)
	}
	out := make([]fuse.DirEntry, len(es))
	for i, e := range es {
		mode := uint32(modeFile)
		if e.dir != nil {
			mode = modeDir
		}
		out[i] = fuse.DirEntry{Name: e.name, Mode: mode, Ino: inoOf(d.path + "/" + e.name)}
	}
	return gofs.NewListDirStream(out), 0
}

func (d *dirBase) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (_ *gofs.Inode, errno syscall.Errno) {
	defer d.st.observe("lookup", time.Now(), &errno)
	r, es, err := d.list(ctx)
	if err != nil {
		return nil, d.st.toErrno("lookup", d.path+"/"+name, err)
	}
	i := sort.Search(len(es), func(i int) bool { return es[i].name >= name })
	if i == len(es) || es[i].name != name {
		return nil, syscall.ENOENT
	}
	return d.lookupEntry(ctx, r, es[i], out)
}

// lookupEntry makes the node of e, an entry of the directory in the run's state r.
func (d *dirBase) lookupEntry(ctx context.Context, r *runState, e entry, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	path := d.path + "/" + e.name
	ttl := d.st.ttl(r)
	out.SetEntryTimeout(ttl)
	out.SetAttrTimeout(ttl)
	if e.dir != nil {
		fillDir(&out.Attr, r.start.Time)
		return d.NewInode(ctx, e.dir(), stableAttr(path, modeDir)), 0
	}
	c, err := e.file(ctx, r)
	if err != nil {
		return nil, d.st.toErrno("lookup", path, err)
	}
	out.SetAttrTimeout(d.st.fileAttrTTL(r))
	fillFile(&out.Attr, r, c)
	f := &file{st: d.st, uid: d.uid, path: path, resolve: e.file}
	return d.NewInode(ctx, f, stableAttr(path, modeFile)), 0
}

// runDir is <uid>/: start.json, stop.json once finished, one directory per stream and its
// tables (<stream>.csv, <stream>.parquet).
type runDir struct {
	dirBase
	mtime float64
}

var (
	_ gofs.NodeLookuper  = (*runDir)(nil)
	_ gofs.NodeReaddirer = (*runDir)(nil)
	_ gofs.NodeGetattrer = (*runDir)(nil)
)

func newRunDir(st *state, uid string, mtime float64) *runDir {
	d := &runDir{dirBase: dirBase{st: st, uid: uid, path: uid}, mtime: mtime}
	d.entries = d.list0
	return d
}

// fill sets a run directory's attributes from its listing entry, without opening the run.
func (d *runDir) fill(a *fuse.Attr) { fillDir(a, d.mtime) }

// Getattr answers from the listing: `ls -l` of the root must not open every run.
func (d *runDir) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fill(&out.Attr)
	out.SetTimeout(d.st.cfg.ListTTL)
	return 0
}

func (d *runDir) list0(ctx context.Context, r *runState) ([]entry, error) {
	es := []entry{{name: "start.json", file: func(_ context.Context, r *runState) (content, error) {
		return table.Bytes(withNewline(r.start.Raw)), nil
	}}}
	if r.stop != nil {
		es = append(es, entry{name: "stop.json", file: func(_ context.Context, r *runState) (content, error) {
			if r.stop == nil {
				return nil, errNoStop
			}
			return table.Bytes(withNewline(r.stop.Raw)), nil
		}})
	}
	if r.hasResources {
		es = append(es, entry{name: "files.txt", file: func(ctx context.Context, r *runState) (content, error) {
			b, err := r.ext.FilesTxt(ctx)
			return table.Bytes(b), err
		}})
	}
	files := streamDirNames(r.names)
	for _, name := range r.names {
		name := name
		es = append(es, entry{name: files[name], dir: func() gofs.InodeEmbedder {
			// A stream's directory is looked up on the way to its files: its external files
			// are opened meanwhile (table.Stream.Warm), not when the first one is looked up.
			if s := r.streams[name]; s != nil {
				s.Warm()
			}
			return newStreamDir(d.st, d.uid, name)
		}})
	}
	return append(es, streamTableEntries(r, files)...), nil
}

func withNewline(b []byte) []byte {
	out := make([]byte, 0, len(b)+1)
	return append(append(out, b...), '\n')
}
