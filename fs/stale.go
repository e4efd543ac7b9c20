package fs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// FSType is the file system type brokerfs mounts show in /proc/self/mountinfo.
const FSType = "fuse.brokerfs"

// ClearStaleMount unmounts a dead brokerfs mount on dir: one whose server died without
// unmounting (crash, SIGKILL, OOM), which answers every access with ENOTCONN and would make
// the next `brokerfs mount` (systemd's Restart=on-failure) refuse the mountpoint. Only such a
// mount is touched: the topmost mount on dir in /proc/self/mountinfo must be of type
// fuse.brokerfs, and statfs on it must fail with ENOTCONN (statfs always asks the server;
// stat may be answered from the kernel's attribute cache for a moment after the crash). A
// live mount, or another file system's, is left for CheckMountpoint to refuse. As root the
// mount is detached (umount -l); other users go through fusermount3 -u -z. It logs one line
// when it cleared a mount.
func ClearStaleMount(dir string, log *slog.Logger) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// The mountpoint itself cannot be resolved (it may answer ENOTCONN); its parent can, and
	// mountinfo shows resolved paths.
	if parent, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		abs = filepath.Join(parent, filepath.Base(abs))
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil // no mountinfo: nothing can be told; CheckMountpoint decides
	}
	fstype, err := topMountType(f, abs)
	f.Close()
	if err != nil || fstype != FSType {
		return nil // not ours (or no mount): CheckMountpoint says what is wrong
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(abs, &st); !errors.Is(err, syscall.ENOTCONN) {
		return nil // a live brokerfs mount
	}
	if err := detachMount(abs); err != nil {
		return fmt.Errorf("mountpoint %s: a stale brokerfs mount is left from a server that died, and clearing it failed: %w; run `umount -l %s` and try again", dir, err, dir)
	}
	log.Warn("cleared a stale brokerfs mount left by a server that died", "mountpoint", dir)
	return nil
}

func detachMount(abs string) error {
	if os.Geteuid() == 0 {
		return syscall.Unmount(abs, syscall.MNT_DETACH)
	}
	out, err := exec.Command("fusermount3", "-u", "-z", abs).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 -u -z: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// topMountType returns the type of the last (topmost) mount on abs listed in mountinfo, or
// "" when there is none.
func topMountType(r io.Reader, abs string) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	fstype := ""
	for sc.Scan() {
		// id parent major:minor root MOUNTPOINT options [optional fields...] - FSTYPE source super
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != abs {
			continue
		}
		for i := 5; i+1 < len(fields); i++ {
			if fields[i] == "-" {
				fstype = fields[i+1]
				break
			}
		}
	}
	return fstype, sc.Err()
}
