package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The mount helper: mount(8) runs /sbin/mount.fuse.brokerfs SOURCE MOUNTPOINT -o OPTIONS for
// `mount -t fuse.brokerfs` and fstab lines of type fuse.brokerfs. Installed as a symlink to the
// brokerfs binary (brokerfs install-helper), it translates the options to `brokerfs mount`
// flags, starts that in the background in a session of its own, and returns once the mount is
// up, as mount(8) expects of a helper.
//
// fstab:  /data/catalog  /mnt/bluesky  fuse.brokerfs  allow_other,root_map=/old=/new,nofail  0 0
// fstab:  mongodb://db/mds  /mnt/mds  fuse.brokerfs  allow_other,_netdev,nofail  0 0  (_netdev: after the network)

const helperName = "mount.fuse.brokerfs"

// helperFlags maps -o keys to brokerfs mount flags; keys that take a value use key=value.
var helperFlags = map[string]string{
	"root_map":      "--root-map",
	"query":         "--query",
	"include":       "--include",
	"exclude":       "--exclude",
	"live_ttl":      "--live-ttl",
	"list_ttl":      "--list-ttl",
	"cache_size":    "--cache-size",
	"allowed_roots": "--allowed-roots",
	"handler":       "--handler",
	"allow_other":   "--allow-other",
	"debug":         "--debug",
	"since":         "--since",
	"until":         "--until",

	"transform":      "--transform",
	"transform_file": "--transform-file",
	"python":         "--python",
}

// mountOnly are options for mount(8) itself or for systemd, never for the file system.
var mountOnly = map[string]bool{
	"defaults": true, "auto": true, "noauto": true, "user": true, "nouser": true, "users": true,
	"nofail": true, "_netdev": true, "ro": true, "rw": true, "exec": true, "noexec": true,
	"suid": true, "nosuid": true, "dev": true, "nodev": true, "async": true, "sync": true,
}

// helperArgs turns mount(8)'s arguments into `brokerfs mount` arguments and the log file.
func helperArgs(args []string) (mountArgs []string, logFile string, err error) {
	var pos, opts []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-o" && i+1 < len(args):
			opts = append(opts, args[i+1])
			i++
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			opts = append(opts, a[2:])
		case a == "-n" || a == "-s" || a == "-f" || a == "-v" || a == "-i":
			// no mtab, sloppy, fake, verbose, internal-only: nothing to do
		case strings.HasPrefix(a, "-"):
			return nil, "", usageError{fmt.Sprintf("unknown option %s", a)}
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, "", usageError{"usage: mount.fuse.brokerfs SOURCE MOUNTPOINT [-o OPTIONS]"}
	}
	var flags, extra []string
	for _, o := range opts {
		for _, kv := range splitOptions(o) {
			k, v, hasValue := strings.Cut(kv, "=")
			switch {
			case kv == "" || mountOnly[k] || strings.HasPrefix(k, "x-") || strings.HasPrefix(k, "comment="):
			case k == "log":
				logFile = v
			case helperFlags[k] != "" && hasValue:
				flags = append(flags, helperFlags[k]+"="+v)
			case helperFlags[k] != "":
				flags = append(flags, helperFlags[k])
			default:
				extra = append(extra, kv)
			}
		}
	}
	if len(extra) > 0 {
		flags = append(flags, "-o", strings.Join(extra, ","))
	}
	if logFile == "" {
		logFile = filepath.Join(os.TempDir(), "brokerfs-"+strings.ReplaceAll(strings.Trim(pos[1], "/"), "/", "_")+".log")
	}
	return append(append([]string{"mount"}, flags...), pos[0], pos[1]), logFile, nil
}

// splitOptions splits a comma-separated option list; a value may hold commas inside [...] or
// {...} (a --query JSON) .
func splitOptions(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// runHelper starts `brokerfs mount` detached and waits until the mount is up.
func runHelper(args []string, stderr io.Writer) error {
	mountArgs, logFile, err := helperArgs(args)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log %s: %w", logFile, err)
	}
	defer log.Close()
	start, _ := log.Seek(0, io.SeekEnd)
	mnt, _ := filepath.Abs(mountArgs[len(mountArgs)-1])
	// A stale mount left by a server that died (it answers ENOTCONN) is listed too until the
	// new server clears it: it must not pass for the new mount. A live one is refused here.
	before, _ := mountIDs(mnt)
	if len(before) > 0 && answers(mnt) {
		return fmt.Errorf("%s is already mounted", mnt)
	}
	cmd := exec.Command(self, mountArgs...)
	// The log file itself, not a pipe: a pipe would close when this helper exits, and the
	// server's next log line would kill it with SIGPIPE.
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("brokerfs mount exited before mounting (%v): %s", err, logTail(logFile, start))
		case <-deadline:
			return fmt.Errorf("%s was not mounted within 30s; see %s", mnt, logFile)
		case <-time.After(50 * time.Millisecond):
		}
		// A mount ID freed by clearing the stale mount may be given to the new one: then
		// it counts once it answers.
		if ids, _ := mountIDs(mnt); newMount(ids, before) || (len(ids) > 0 && answers(mnt)) {
			fmt.Fprintf(stderr, "brokerfs: mounted %s (pid %d, log %s)\n", mnt, cmd.Process.Pid, logFile)
			return nil
		}
	}
}

// mountIDs returns the mount IDs of the mounts on abs in /proc/self/mountinfo.
func mountIDs(abs string) (map[string]bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.ReplaceAll(f[4], `\040`, " ") == abs {
			ids[f[0]] = true
		}
	}
	return ids, nil
}

// isMounted reports whether something is mounted on abs.
func isMounted(abs string) (bool, error) {
	ids, err := mountIDs(abs)
	return len(ids) > 0, err
}

// answers reports whether the file system mounted on mnt answers (statfs asks its server).
func answers(mnt string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(mnt, &st) == nil
}

// newMount reports whether ids holds a mount not in before.
func newMount(ids, before map[string]bool) bool {
	for id := range ids {
		if !before[id] {
			return true
		}
	}
	return false
}

// logTail returns what was logged after offset start, at most 4 KiB.
func logTail(path string, start int64) string {
	b, err := os.ReadFile(path)
	if err != nil || start > int64(len(b)) {
		return ""
	}
	b = b[start:]
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return strings.TrimSpace(string(b))
}

// cmdInstallHelper links /sbin/mount.fuse.brokerfs (or DIR/mount.fuse.brokerfs) to this binary.
func cmdInstallHelper(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("install-helper", stderr)
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: brokerfs install-helper [DIR]\n\nLinks DIR/%s (default /sbin, where mount(8) looks) to this binary, for\nmount -t fuse.brokerfs and fstab lines of type fuse.brokerfs.\n", helperName)
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	dir := "/sbin"
	if fl.NArg() == 1 {
		dir = fl.Arg(0)
	} else if fl.NArg() > 1 {
		return usageError{"usage: brokerfs install-helper [DIR]"}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return err
	}
	link := filepath.Join(dir, helperName)
	if cur, err := os.Readlink(link); err == nil && cur == self {
		fmt.Fprintf(stdout, "%s -> %s (already installed)\n", link, self)
		return nil
	}
	// Replaced by a rename, as `brokerfs install` does: mount(8) never finds the helper missing.
	if err := replaceSymlink(self, link); err != nil {
		if errors.Is(err, os.ErrPermission) && os.Geteuid() != 0 {
			return fmt.Errorf("install mount helper: %w (run as root)", err)
		}
		return fmt.Errorf("install mount helper: %w", err)
	}
	fmt.Fprintf(stdout, "%s -> %s\n", link, self)
	return nil
}
