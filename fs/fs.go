// Package fs mounts a brokerfs node tree: go-fuse options, mountpoint checks, the server's
// life cycle and a clean unmount. It knows no catalog or handler; cmd/brokerfs wires those.
package fs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"
)

// Options configure a mount.
type Options struct {
	// FsName is the source shown in /proc/mounts and df; it must not hold credentials.
	FsName string
	// AllowOther lets other users read the mount (needs user_allow_other in /etc/fuse.conf
	// when not mounting as root).
	AllowOther bool
	// Extra are -o options passed to the kernel (ro is always added).
	Extra []string
	// Debug logs every FUSE request.
	Debug bool
	// Timeout is the default kernel cache timeout for entries and attributes; nodes set
	// longer ones for finished runs.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Server is a mounted file system.
type Server struct {
	srv *fuse.Server
	dir string
}

// CheckMountpoint returns an error that says what to do unless dir is an existing, empty
// directory that is not already a mount point.
func CheckMountpoint(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("mountpoint %s: a stale mount is left from a server that died; run `umount %s` and try again", dir, dir)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mountpoint %s does not exist; create it with `mkdir -p %s`", dir, dir)
	case err != nil:
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("mountpoint %s is not a directory", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	if mounted, err := isMountPoint(abs); err == nil && mounted {
		return fmt.Errorf("mountpoint %s is already a mount point; unmount it first with `umount %s`", dir, dir)
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("mountpoint %s is not empty; mount on an empty directory", dir)
	}
	return nil
}

// isMountPoint reports whether abs is listed in /proc/self/mountinfo.
func isMountPoint(abs string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	return mountinfoHas(f, abs)
}

func mountinfoHas(r io.Reader, abs string) (bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == abs {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for space) of /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Mount mounts root read-only at dir. As root it mounts directly; other users go through
// fusermount3 (package fuse3).
func Mount(dir string, root gofs.InodeEmbedder, o Options) (*Server, error) {
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	mo := fuse.MountOptions{
		FsName:        o.FsName,
		Name:          "brokerfs",
		AllowOther:    o.AllowOther,
		Debug:         o.Debug,
		DirectMount:   os.Geteuid() == 0,
		DisableXAttrs: true, // no xattrs to serve; saves a round trip per file in ls -l
		MaxWrite:      maxRead,
		// Kernel readahead of 128 KiB (its default) where brokerfs cannot set the mount's
		// own (see setReadahead).
		MaxReadAhead: 128 << 10,
		// Reads of cache files come back as fuse.ReadResultFd where passthrough is refused,
		// and reads of stored external fields as a pipe that holds their bytes (nodes'
		// spliceRead): go-fuse splices both into /dev/fuse. Requests are then a little under
		// 1 MiB (maxRead), since a reply that does not fit a pipe is not spliced (go-fuse logs
		// each such failure before it falls back to a copy).
		DisableSplice: !spliceReplies,
		// Live runs' files are opened with FOPEN_DIRECT_IO (one snapshot per open); this lets
		// numpy still map them (MAP_SHARED), as it maps every other file (Linux >= 6.6).
		// READDIRPLUS_AUTO: the kernel asks for a directory's entries with their attributes
		// (READDIRPLUS, a Lookup each) only while the reader also stats them (ls -l), not for
		// every entry of a plain ls: 10,000 runs cost 10,000 Lookups and inodes otherwise.
		// ASYNC_DIO: an O_DIRECT or asynchronous (AIO, io_uring) read of a FOPEN_DIRECT_IO
		// file (a lazily filled or stored external field, a live run's file) goes to brokerfs
		// as its requests all at once (up to MaxBackground), served in parallel. A plain
		// read(2) still sends them one after the other (the kernel's FUSE_IO_PRIV_SYNC path),
		// whatever this says.
		ExtraCapabilities: fuse.CAP_DIRECT_IO_ALLOW_MMAP | fuse.CAP_READDIRPLUS_AUTO | fuse.CAP_ASYNC_DIO,
		Options:           append([]string{"ro", "default_permissions"}, o.Extra...),
		Logger:            log.New(slogWriter{o.Logger}, "", 0),
	}
	neg := o.Timeout
	srv, err := gofs.Mount(dir, root, &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &o.Timeout,
		AttrTimeout:     &o.Timeout,
		NegativeTimeout: &neg,
		Logger:          log.New(slogWriter{o.Logger}, "", 0),
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	if srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0 {
		setReadahead(dir, readaheadKB, o.Logger)
	}
	return &Server{srv: srv, dir: dir}, nil
}

// maxRead is the largest request the kernel sends (max_read, max_pages), and spliceReplies
// whether replies are spliced: the largest that lets a reply be spliced into /dev/fuse, a
// little under 1 MiB. go-fuse splices a reply through a pipe that holds its header and its
// bytes plus a page, within /proc/sys/fs/pipe-max-size (1 MiB by default), and a pipe's size is
// a power of two pages; spliced bytes take a page of it for every page of a file they come
// from, one more for each piece of a file that does not start on a page, so a stored field's
// request, from up to spliceSlack pieces of the source file (chunks not page-aligned), keeps
// that many pages spare. Where pipes are smaller than 256 KiB, requests are 1 MiB and replies
// copied.
var maxRead, spliceReplies = func() (int, bool) {
	const page = 4096
	slots := 1
	for (slots*2)*page <= splice.MaxPipeSize() {
		slots *= 2
	}
	if !splice.Resizable() || slots < 64 {
		return 1 << 20, false
	}
	return min(1<<20, (slots-2*spliceSlack)*page), true
}()

// spliceSlack is how many pieces of a source file a spliced request is sized for (see maxRead).
const spliceSlack = 4

// readaheadKB is the mount's kernel readahead, one page. Finished fields are read by the
// kernel from the cache file itself (passthrough), with that file system's readahead; what
// reaches brokerfs is mostly lazily filled external data, where any readahead window makes a
// page fault of an mmap'ed frame read around it, into the frame before and the one after:
// three frames of handler work for one (readahead around the page, then ahead of the reader).
// With a page, the frame's first page fault fills it and brokerfs hands the whole row to the
// page cache (nodes' storeRow), so the other faults find it there. Large read()s are not cut
// to the window: the kernel sends them in requests of up to 128 KiB (the device's io_pages)
// whatever it is, and sequential readers of lazy fields get their rows filled ahead by the
// table layer. Only where the kernel has passthrough: without it every file is read through
// brokerfs, and a page would make mapped fields of every kind one request a page.
const readaheadKB = 4

// setReadahead sets the mount's kernel readahead to kb KiB. Only root may write the bdi
// setting; elsewhere this quietly does nothing and the mount keeps MaxReadAhead.
func setReadahead(dir string, kb int, log *slog.Logger) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return
	}
	major, minor := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	if err := os.WriteFile(p, []byte(fmt.Sprint(kb)), 0); err != nil {
		log.Debug("cannot set readahead", "path", p, "err", err)
	}
}

// Wait blocks until the file system is unmounted.
func (s *Server) Wait() { s.srv.Wait() }

// Unmount unmounts the file system, retrying while it is busy for about five seconds (each
// go-fuse Unmount call retries for a fraction of a second itself), then, as root, detaching it
// lazily so that a process still inside the mount cannot keep it forever. detached reports the
// lazy case: the server then keeps running until the last open file closes, so the caller
// should not wait for it.
func (s *Server) Unmount() (detached bool, err error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err = s.srv.Unmount(); err == nil {
			return false, nil
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if os.Geteuid() == 0 {
		if lerr := syscall.Unmount(s.dir, syscall.MNT_DETACH); lerr == nil {
			return true, nil
		}
	}
	return false, fmt.Errorf("unmount %s: %w", s.dir, err)
}

// slogWriter sends go-fuse's log lines to slog.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Info(strings.TrimRight(string(p), "\n"), "component", "fuse")
	return len(p), nil
}
