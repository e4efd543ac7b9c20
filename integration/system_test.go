package integration

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// numpyReadAll is a script that loads every .npy file under argv[1] with numpy and prints how
// many it read.
const numpyReadAll = `
import os, sys, numpy
n = 0
for root, dirs, files in os.walk(sys.argv[1]):
    for f in files:
        if f.endswith(".npy"):
            numpy.load(os.path.join(root, f), allow_pickle=False)
            n += 1
print(n)
`

var helperPidRE = regexp.MustCompile(`mounted (\S+) \(pid (\d+), log ([^)]*)\)`)

// runCmd runs a command to completion within limit and returns its combined output and error.
func runCmd(t *testing.T, limit time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s did not finish within %v:\n%s", name, strings.Join(args, " "), limit, out)
	}
	return string(out), err
}

// processGone reports whether pid has exited (a zombie not yet reaped by init counts as gone).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// waitMounted waits until mnt shows in mountinfo with a brokerfs type.
func waitMounted(t *testing.T, mnt string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(mountWait)
	for {
		if m, ok := mountinfo()[mnt]; ok {
			if !strings.Contains(m.fstype, "brokerfs") {
				t.Errorf("%s is mounted with type %s, want fuse.brokerfs", mnt, m.fstype)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not mounted after %v:\n%s", mnt, mountWait, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFstab mounts as an administrator does: the helper installed by `brokerfs install-helper`
// in /sbin, an fstab line mounted with `mount -a` (allow_other, live_ttl and log options), read
// with numpy, unmounted with umount(8), which ends the background server; and
// `mount -t fuse.brokerfs SOURCE MNT -o root_map=...`.
func TestFstab(t *testing.T) {
	requireFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("mount(8) with an fstab line needs root")
	}
	if _, err := exec.LookPath("mount"); err != nil {
		t.Skip("no mount(8)")
	}
	const sbinHelper = "/sbin/mount.fuse.brokerfs"

	// install-helper into a directory of our own: a symlink to the binary.
	dir := t.TempDir()
	if out, code := run(t, time.Minute, "install-helper", dir); code != 0 {
		t.Fatalf("brokerfs install-helper %s exited %d:\n%s", dir, code, out)
	}
	real, _ := filepath.EvalSymlinks(brokerfs)
	if target, err := os.Readlink(filepath.Join(dir, "mount.fuse.brokerfs")); err != nil || target != real {
		t.Errorf("install-helper made %s -> %q (%v), want a link to %s", filepath.Join(dir, "mount.fuse.brokerfs"), target, err, real)
	}

	// mount(8) looks in /sbin only.
	if _, err := os.Lstat(sbinHelper); err == nil {
		t.Skipf("%s exists already (an installed brokerfs?): not replacing it for a test", sbinHelper)
	}
	if out, code := run(t, time.Minute, "install-helper", "/sbin"); code != 0 {
		t.Fatalf("brokerfs install-helper /sbin exited %d:\n%s", code, out)
	}
	t.Cleanup(func() {
		if target, err := os.Readlink(sbinHelper); err == nil && target == real {
			os.Remove(sbinHelper)
		}
	})

	d := demoCatalog(t)
	files := runFiles(t, d)
	rootMap := demoDetectorRoot + "=" + filepath.Join(d, "detector")

	t.Run("fstab", func(t *testing.T) {
		mnt, err := filepath.EvalSymlinks(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		ourMounts.add(mnt)
		logFile := filepath.Join(t.TempDir(), "brokerfs.log")
		fstab := filepath.Join(t.TempDir(), "fstab")
		// A corrupt run file in a second source directory: the first listing, made after the
		// helper has detached the server, logs it.
		bad := t.TempDir()
		writeFile(t, bad, "garbage.jsonl", []byte("this is not JSON\n"))
		line := d + "," + bad + " " + mnt + " fuse.brokerfs allow_other,live_ttl=1s,root_map=" + rootMap + ",log=" + logFile + " 0 0\n"
		writeFile(t, filepath.Dir(fstab), "fstab", []byte("# brokerfs test\n"+line))
		t.Cleanup(func() {
			if isMounted(mnt) {
				detach(mnt)
			}
		})
		out, err := runCmd(t, time.Minute, "mount", "-T", fstab, "-a", "-t", "fuse.brokerfs")
		if err != nil {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("mount -T %s -a: %v\n%s\nlog:\n%s", fstab, err, out, log)
		}
		t.Logf("mount -a: %s", strings.TrimSpace(out))
		logs := func() string { b, _ := os.ReadFile(logFile); return string(b) }
		waitMounted(t, mnt, logs)
		pid := 0
		if m := helperPidRE.FindStringSubmatch(out); m != nil {
			pid, _ = strconv.Atoi(m[2])
			if m[3] != logFile {
				t.Errorf("the helper logs to %s, want %s", m[3], logFile)
			}
		} else {
			t.Errorf("the helper did not print the server's pid: %q", out)
		}
		if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
			for _, l := range strings.Split(string(mi), "\n") {
				if strings.Contains(l, " "+mnt+" ") {
					if !strings.Contains(l, "allow_other") {
						t.Errorf("the fstab mount has no allow_other: %s", l)
					}
					if !strings.Contains(l, " ro") && !strings.Contains(l, ",ro") {
						t.Errorf("the fstab mount is not read-only: %s", l)
					}
				}
			}
		}
		// The first lookup lists the runs and the server logs the corrupt file: the server,
		// detached from mount(8) by the helper, must survive writing it.
		if _, err := os.Stat(filepath.Join(mnt, "b")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat of a one-character prefix: %v, want ENOENT", err)
		}
		time.Sleep(100 * time.Millisecond)
		if !strings.Contains(logs(), "garbage.jsonl") {
			t.Errorf("the server did not log the corrupt run file; log:\n%s", logs())
		}
		if _, err := os.ReadDir(mnt); err != nil || (pid != 0 && processGone(pid)) {
			t.Fatalf("the background server died after logging its first error (ls: %v): "+
				"cmd/brokerfs/mounthelper.go runHelper gives it a pipe as stderr (io.MultiWriter), "+
				"whose reader is the helper that mount(8) has already reaped, so the first log line "+
				"after mounting kills it with SIGPIPE; log:\n%s", err, logs())
		}
		expect(t, mnt, files)
		if n := strings.TrimSpace(runPython(t, "-c", numpyReadAll, mnt)); n == "0" {
			t.Errorf("numpy read no .npy files in %s", mnt)
		}

		if out, err := runCmd(t, exitWait, "umount", mnt); err != nil {
			t.Fatalf("umount %s: %v\n%s", mnt, err, out)
		}
		if isMounted(mnt) {
			t.Errorf("%s still mounted after umount", mnt)
		}
		if pid == 0 {
			out, _ := runCmd(t, 10*time.Second, "pgrep", "-f", mnt)
			pid, _ = strconv.Atoi(strings.TrimSpace(strings.Split(out, "\n")[0]))
		}
		deadline := time.Now().Add(exitWait)
		for pid != 0 && !processGone(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("the background brokerfs (pid %d) is still running %v after umount; log:\n%s", pid, exitWait, logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
		log := logs()
		for _, bad := range []string{"panic:", "DATA RACE", "fatal error:"} {
			if strings.Contains(log, bad) {
				t.Errorf("the server's log holds %q:\n%s", bad, log)
			}
		}
		if !strings.Contains(log, "msg=mounted") {
			t.Errorf("the log file %s has no mounted line:\n%s", logFile, log)
		}
	})

	t.Run("mount -t", func(t *testing.T) {
		mnt, err := filepath.EvalSymlinks(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		ourMounts.add(mnt)
		logFile := filepath.Join(t.TempDir(), "brokerfs.log")
		t.Cleanup(func() {
			if isMounted(mnt) {
				detach(mnt)
			}
		})
		out, err := runCmd(t, time.Minute, "mount", "-t", "fuse.brokerfs", d, mnt, "-o", "root_map="+rootMap+",log="+logFile)
		logs := func() string { b, _ := os.ReadFile(logFile); return string(b) }
		if err != nil {
			t.Fatalf("mount -t fuse.brokerfs: %v\n%s\nlog:\n%s", err, out, logs())
		}
		waitMounted(t, mnt, logs)
		if n := countCamImages(t, mnt); n == 0 {
			t.Errorf("no cam_image.npy read through -o root_map; log:\n%s", logs())
		}
		expect(t, mnt, files)
		pid := 0
		if m := helperPidRE.FindStringSubmatch(out); m != nil {
			pid, _ = strconv.Atoi(m[2])
		}
		if out, err := runCmd(t, exitWait, "umount", mnt); err != nil {
			t.Fatalf("umount %s: %v\n%s", mnt, err, out)
		}
		deadline := time.Now().Add(exitWait)
		for pid != 0 && !processGone(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("the background brokerfs (pid %d) outlived umount; log:\n%s", pid, logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestNonRootMount mounts as an unprivileged user (nobody, when the tests run as root) through
// the setuid fusermount3: the user mounts a catalog it can read on a mountpoint it owns, reads
// the files, and SIGTERM unmounts.
func TestNonRootMount(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	fm, err := exec.LookPath("fusermount3")
	if err != nil {
		t.Skip("no fusermount3 (install fuse3): a non-root user cannot mount")
	}
	if fi, err := os.Stat(fm); err == nil && fi.Mode()&fs.ModeSetuid == 0 {
		t.Errorf("%s is not setuid: non-root users cannot mount", fm)
	}
	uid, gid := os.Getuid(), os.Getgid()
	var cred *syscall.Credential
	if uid == 0 {
		uid, gid = 65534, 65534
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		// fusermount3 opens /dev/fuse as the calling user: Debian's udev rule makes it 0666,
		// some containers create it 0600. Open it up for the test as udev would, and restore it.
		if fi, err := os.Stat("/dev/fuse"); err == nil && fi.Mode().Perm()&0o006 != 0o006 {
			if err := os.Chmod("/dev/fuse", 0o666); err != nil {
				t.Skipf("/dev/fuse is %v and cannot be made 0666 as udev does: %v", fi.Mode().Perm(), err)
			}
			t.Logf("/dev/fuse was %v (not as udev makes it); 0666 for this test", fi.Mode().Perm())
			t.Cleanup(func() { os.Chmod("/dev/fuse", fi.Mode().Perm()) })
		}
	}

	// Everything the user needs, readable by it: t.TempDir()'s parents are 0700.
	top, err := os.MkdirTemp("", "brokerfs-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	top, _ = filepath.EvalSymlinks(top)
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(top, "brokerfs")
	b, err := os.ReadFile(brokerfs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cat := filepath.Join(top, "catalog")
	copyTree(t, demoCatalog(t), cat)
	copyFile(t, "testdata/expect.py", top, "expect.py")
	mnt, home := filepath.Join(top, "mnt"), filepath.Join(top, "home")
	for _, p := range []string{mnt, home} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "XDG_DATA_HOME=" + home, "INTAKE_PATH=" + home, "PYTHONDONTWRITEBYTECODE=1"}
	as := func(ctx context.Context, name string, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env, cmd.Dir = env, top
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		return cmd
	}

	ourMounts.add(mnt)
	logs := &logBuffer{}
	cmd := as(context.Background(), bin, "mount", "--root-map", demoDetectorRoot+"="+filepath.Join(cat, "detector"), cat, mnt)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}) // closed when the server has exited; waitErr is then set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
		if isMounted(mnt) {
			exec.Command("fusermount3", "-u", "-z", mnt).Run()
			detach(mnt)
		}
	})
	waitMounted(t, mnt, logs.String)
	logs.waitFor("msg=mounted", 2*time.Second)

	// The mount is the user's: fuse.brokerfs with its user_id.
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(mi), "\n") {
			if strings.Contains(l, " "+mnt+" ") && !strings.Contains(l, "user_id="+strconv.Itoa(uid)) {
				t.Errorf("the mount is not the user's (user_id=%d): %s", uid, l)
			}
		}
	}

	// The user reads the files with the reference reader.
	ctx, cancel := context.WithTimeout(context.Background(), scriptLimit)
	defer cancel()
	out, err := as(ctx, python, append([]string{filepath.Join(top, "expect.py"), mnt}, runFiles(t, cat)...)...).CombinedOutput()
	if err != nil {
		t.Errorf("expect.py as uid %d: %v\n%s\nbrokerfs says:\n%s", uid, err, out, logs)
	} else {
		t.Logf("expect.py as uid %d: %s", uid, strings.TrimSpace(string(out)))
	}
	out, err = as(ctx, python, "-c", numpyReadAll, mnt).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) == "0" {
		t.Errorf("numpy as uid %d: %v\n%s", uid, err, out)
	}
	if cred != nil {
		// Without allow_other, no one else (root included) sees into the mount.
		if _, err := os.ReadDir(mnt); !errors.Is(err, fs.ErrPermission) {
			t.Errorf("root lists the user's mount without allow_other: %v, want EACCES", err)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		if waitErr != nil {
			t.Errorf("brokerfs exited with %v after SIGTERM, want 0:\n%s", waitErr, logs)
		}
	case <-time.After(exitWait):
		t.Fatalf("brokerfs did not exit within %v of SIGTERM:\n%s", exitWait, logs)
	}
	if isMounted(mnt) {
		t.Errorf("%s still mounted after SIGTERM:\n%s", mnt, logs)
	}
	for _, bad := range []string{"panic:", "DATA RACE", "fatal error:"} {
		if strings.Contains(logs.String(), bad) {
			t.Errorf("brokerfs output holds %q:\n%s", bad, logs)
		}
	}
}

// TestLiveMsgpack follows a msgpack run while it is written: a run without its stop document
// (written by Python's msgpack) grows by two event_page documents, which show as two more rows
// within about a second; a stop document makes stop.json appear.
func TestLiveMsgpack(t *testing.T) {
	t.Parallel()
	d := demoCatalog(t)
	dir := t.TempDir()
	type stripped struct {
		UID, Stream, Field, Stop string
	}
	var live stripped
	var file string
	for _, src := range runFiles(t, d) {
		if !strings.HasSuffix(src, ".msgpack") {
			continue
		}
		dst := filepath.Join(t.TempDir(), filepath.Base(src))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, python, "testdata/docstream.py", "strip", src, dst).Output()
		cancel()
		var s stripped
		if err != nil || json.Unmarshal(out, &s) != nil || s.Stream != "primary" || strings.HasPrefix(s.Field, "cam") {
			continue
		}
		live, file = s, dst
	}
	if live.UID == "" {
		t.Fatal("the demo catalog has no msgpack run with a scalar field in primary")
	}
	final := filepath.Join(dir, filepath.Base(file))
	if err := os.Rename(file, final); err != nil {
		t.Fatal(err)
	}
	file = final
	mnt, logs := mount(t, dir, "--live-ttl", "200ms", "--list-ttl", "200ms")
	run := filepath.Join(mnt, live.UID)
	npy := filepath.Join(run, live.Stream, live.Field+".npy")
	expect(t, mnt, []string{file})
	rows := npyRows(t, npy)
	if _, err := os.Stat(filepath.Join(run, "stop.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stop.json of a run without a stop: %v, want ENOENT", err)
	}

	runPython(t, "testdata/docstream.py", "append", file, live.Stop, "2")
	start := time.Now()
	waitRows(t, npy, rows+2, logs)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("the new rows took %v to show, with --live-ttl 200ms", d)
	}
	expect(t, mnt, []string{file})

	runPython(t, "testdata/docstream.py", "stop", file, live.Stop)
	waitFor(t, "stop.json", logs, func() bool {
		_, err := os.Stat(filepath.Join(run, "stop.json"))
		return err == nil
	})
	expect(t, mnt, []string{file})
	checkStreams(t, []string{file})
}
