package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// brokerfs install [PREFIX]: copies the running binary to PREFIX/bin/brokerfs and links the
// mount helper to that copy, so that fstab mounts and systemd units name an installed file,
// not the build tree `go build` wrote to (which `install-helper` alone would link).

func cmdInstall(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("install", stderr)
	var (
		helperDir string
		noHelper  bool
	)
	fl.StringVar(&helperDir, "helper-dir", "/sbin", "where to link "+helperName+" (mount(8) looks in /sbin)")
	fl.BoolVar(&noHelper, "no-helper", false, "install the binary only (no mount -t fuse.brokerfs, no fstab lines)")
	fl.Usage = func() {
		fmt.Fprintf(stderr, `Usage: brokerfs install [flags] [PREFIX]

Copies this brokerfs binary to PREFIX/bin/brokerfs (default PREFIX /usr/local), mode 0755,
replacing an older one in one rename (running mounts keep the file they started from), and
links HELPER-DIR/%s to it for mount(8) and fstab. Run as root for /usr/local and
/sbin; a user without root installs with --no-helper into a PREFIX of their own (~/.local).

Flags:
%s`, helperName, fl.FlagUsages())
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	prefix := "/usr/local"
	switch fl.NArg() {
	case 0:
	case 1:
		prefix = fl.Arg(0)
	default:
		fl.Usage()
		return usageError{"want at most one PREFIX"}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return err
	}
	bin, err := filepath.Abs(filepath.Join(prefix, "bin", "brokerfs"))
	if err != nil {
		return err
	}
	if err := installFile(self, bin); err != nil {
		return fmt.Errorf("install %s: %w", bin, err)
	}
	fmt.Fprintf(stdout, "%s (from %s)\n", bin, self)
	if noHelper {
		return nil
	}
	link := filepath.Join(helperDir, helperName)
	if err := replaceSymlink(bin, link); err != nil {
		return fmt.Errorf("link the mount helper %s: %w (it needs root; --no-helper installs the binary only)", link, err)
	}
	fmt.Fprintf(stdout, "%s -> %s\n", link, bin)
	return nil
}

// installFile copies src to dst with mode 0755 through a temporary file in dst's directory
// and a rename: dst is the old file or the whole new one, never a part (and a running
// process that executes the old file keeps it).
func installFile(src, dst string) error {
	if same, _ := sameFile(src, dst); same {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".brokerfs-install-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename: nothing to remove
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Chmod(0o755), tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// replaceSymlink makes link a symlink to target, replacing what link was in one rename.
func replaceSymlink(target, link string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	tmp := filepath.Join(filepath.Dir(link), ".brokerfs-link-"+filepath.Base(link))
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
