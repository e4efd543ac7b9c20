package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Issue 11 item 7: what running brokerfs as a service needs. One catalog of runs started at
// chosen local times serves every subtest.

// opsStarts are the runs' start times, in local time: around the days the subtests select.
var opsStarts = []string{
	"2024-02-29 23:59:59",
	"2024-03-01 00:00:00",
	"2024-03-01 12:00:00",
	"2024-03-01 23:30:00",
	"2024-03-02 00:00:00",
	"2024-03-05 08:00:00",
}

func opsCatalog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for i, s := range opsStarts {
		tm, err := time.ParseInLocation(time.DateTime, s, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		writeCacheRun(t, dir, fmt.Sprintf("r%d.msgpack", i), uidN(920+i), "--events", "3", "--t0", fmt.Sprint(tm.Unix()))
	}
	return dir
}

// inRanges lists, for each [since, until) pair, the uids of the runs in files whose start
// document's time lies in it, as Python reads the files and the times ("" = unbounded; no
// offset = local time).
func inRanges(t *testing.T, files []string, ranges [][2]string) [][]string {
	t.Helper()
	arg, _ := json.Marshal(ranges)
	out := runPython(t, append([]string{"-c", `
import datetime, json, sys, msgpack
def ts(s, default):
    return datetime.datetime.fromisoformat(s).timestamp() if s else default
starts = []
for p in sys.argv[2:]:
    with open(p, "rb") as f:
        starts.append(next(iter(msgpack.Unpacker(f, raw=False)))[1])
for since, until in json.loads(sys.argv[1]):
    lo, hi = ts(since, float("-inf")), ts(until, float("inf"))
    print(json.dumps(sorted(s["uid"] for s in starts if lo <= s["time"] < hi)))
`, string(arg)}, files...)...)
	var want [][]string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var uids []string
		if err := json.Unmarshal([]byte(l), &uids); err != nil {
			t.Fatalf("python: %v: %q", err, out)
		}
		want = append(want, uids)
	}
	if len(want) != len(ranges) {
		t.Fatalf("python printed %d lines for %d ranges:\n%s", len(want), len(ranges), out)
	}
	return want
}

// runDirs lists the run directories of a mount.
func runDirs(t *testing.T, mnt string) []string {
	t.Helper()
	entries, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, e := range entries {
		if e.Name() != "by-scan-id" && e.Name() != "latest" {
			uids = append(uids, e.Name())
		}
	}
	slices.Sort(uids)
	return uids
}

func TestOps(t *testing.T) {
	t.Parallel()
	cat := opsCatalog(t)
	files := runFiles(t, cat)

	t.Run("since until", func(t *testing.T) {
		t.Parallel()
		ranges := [][2]string{
			{"2024-03-01", "2024-03-02"},
			{"2024-03-01 12:00", ""},
			{"2024-03-01 12:00:01", ""},
			{"", "2024-03-01T23:00:00+00:00"},
			{"2024-02-29T23:00:00Z", "2024-03-01T12:00:00-05:00"},
		}
		wants := inRanges(t, files, ranges)
		t.Logf("the runs each range selects, by Python: %v", wants)
		t.Run("mount", func(t *testing.T) {
			t.Parallel()
			mnt, logs := mount(t, cat, "--since", ranges[0][0], "--until", ranges[0][1])
			if got := runDirs(t, mnt); !slices.Equal(got, wants[0]) {
				t.Errorf("mount --since %s --until %s shows %v, want %v; brokerfs says:\n%s", ranges[0][0], ranges[0][1], got, wants[0], logs)
			}
		})
		for i, r := range ranges {
			t.Run(fmt.Sprint("ls ", i), func(t *testing.T) {
				t.Parallel()
				args := []string{"ls"}
				if r[0] != "" {
					args = append(args, "--since", r[0])
				}
				if r[1] != "" {
					args = append(args, "--until", r[1])
				}
				out, code := run(t, time.Minute, append(args, cat)...)
				if code != 0 {
					t.Fatalf("brokerfs %s exited %d:\n%s", strings.Join(args, " "), code, out)
				}
				got := []string{}
				for _, l := range strings.Split(out, "\n") {
					if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "a1111111-") {
						got = append(got, f[0])
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, wants[i]) {
					t.Errorf("brokerfs %s lists %v, want %v (time zone %s)", strings.Join(args, " "), got, wants[i], time.Local)
				}
			})
		}
		t.Run("bad", func(t *testing.T) {
			t.Parallel()
			out, code := run(t, time.Minute, "ls", "--since", "2024-03-02", "--until", "2024-03-01", cat)
			if code != 2 || !strings.Contains(out, "not before") {
				t.Errorf("ls with --since after --until: exit %d, want 2 and a message:\n%s", code, out)
			}
			out, code = run(t, time.Minute, "ls", "--since", "last tuesday", cat)
			if code != 2 || !strings.Contains(out, "--since") {
				t.Errorf("ls --since 'last tuesday': exit %d, want 2 and a message naming --since:\n%s", code, out)
			}
		})
	})

	t.Run("stale mount and modes", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, cat)
		mnt := s.mnt
		// A crash: the server dies without unmounting.
		s.cmd.Process.Kill()
		<-s.done
		s.checked = true
		// statfs always asks the server (stat may be answered from the attribute cache for
		// a second); the new mount starts at once, within that second, as systemd's
		// Restart=on-failure would.
		var st syscall.Statfs_t
		if err := syscall.Statfs(mnt, &st); !errors.Is(err, syscall.ENOTCONN) {
			t.Fatalf("after SIGKILL, statfs %s: %v, want ENOTCONN (a stale mount)", mnt, err)
		}
		s2 := startServerOn(t, mnt, cat)
		// The stale mount was listed on mnt already: startServerOn may return before the
		// new server has mounted.
		s2.logs.waitFor("msg=mounted", mountWait)
		if !strings.Contains(s2.logs.String(), "cleared a stale brokerfs mount") {
			t.Errorf("the second mount does not say it cleared the stale one:\n%s", s2.logs)
		}
		if got := runDirs(t, mnt); len(got) != len(files) {
			t.Errorf("the new mount lists %d runs, want %d", len(got), len(files))
		}
		// A live mount is not cleared: another brokerfs is serving it.
		out, code := run(t, 30*time.Second, "mount", cat, mnt)
		if code == 0 || !strings.Contains(out, "already a mount point") {
			t.Errorf("mount on a live brokerfs mount: exit %d, want a refusal:\n%s", code, out)
		}
		if got := runDirs(t, mnt); len(got) != len(files) {
			t.Errorf("after the refused mount the live one lists %d runs, want %d", len(got), len(files))
		}

		runDir := filepath.Join(mnt, uidN(920))
		for _, c := range []struct {
			path string
			mode fs.FileMode
		}{
			{mnt, fs.ModeDir | 0o755},
			{runDir, fs.ModeDir | 0o755},
			{filepath.Join(runDir, "primary"), fs.ModeDir | 0o755},
			{filepath.Join(runDir, "start.json"), 0o644},
			{filepath.Join(runDir, "primary", "x.npy"), 0o644},
			{filepath.Join(runDir, "primary", "timestamps"), fs.ModeDir | 0o755},
			{filepath.Join(runDir, "primary", "timestamps", "x.npy"), 0o644},
		} {
			fi, err := os.Stat(c.path)
			switch {
			case err != nil:
				t.Errorf("stat: %v", err)
			case fi.Mode() != c.mode:
				t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
			}
		}
		if err := os.Chmod(filepath.Join(runDir, "start.json"), 0o600); !errors.Is(err, syscall.EROFS) {
			t.Errorf("chmod in the mount: %v, want EROFS", err)
		}
		if err := os.WriteFile(filepath.Join(runDir, "start.json"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
			t.Errorf("write to start.json: %v, want EROFS", err)
		}
		deleteCopyAsOwner(t, runDir)
	})
}

// deleteCopyAsOwner copies a run directory with `cp -a`, gives the copy to nobody, and
// deletes it as nobody: the copy's modes must let its owner delete it.
func deleteCopyAsOwner(t *testing.T, run string) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if os.Geteuid() != 0 || err != nil {
		t.Logf("not root or no setpriv: the copy is not deleted as another user")
		return
	}
	parent, err := os.MkdirTemp("", "brokerfs-modes-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o777); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(parent, "copy")
	if out, err := exec.Command("cp", "-a", run, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s: %v\n%s", run, err, out)
	}
	if out, err := exec.Command("chown", "-R", "65534:65534", cp).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	out, err := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "rm", "-r", cp).CombinedOutput()
	if err != nil {
		t.Errorf("the owner of a cp -a copy of a run cannot delete it: %v\n%s", err, out)
	}
	if _, err := os.Stat(cp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the copy is still there after rm -r by its owner: %v", err)
	}
}

// TestDemoCleanup runs `brokerfs demo MNT` as a user would and stops it: the temporary catalog
// it wrote and the mountpoint it made are gone afterwards.
func TestDemoCleanup(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	tmp := t.TempDir()
	mnt := filepath.Join(t.TempDir(), "demo") // missing: the demo makes it
	ourMounts.add(mnt)
	cmd := exec.Command(brokerfs, "demo", mnt)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var logs logBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if !logs.waitFor("msg=mounted", mountWait+20*time.Second) {
		cmd.Process.Kill()
		<-done
		detach(mnt)
		t.Fatalf("brokerfs demo did not mount:\n%s", logs.String())
	}
	if cats, _ := filepath.Glob(filepath.Join(tmp, "brokerfs-demo-catalog-*")); len(cats) != 1 {
		t.Errorf("while mounted, TMPDIR holds %q, want one demo catalog", cats)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("brokerfs demo exited with %v:\n%s", err, logs.String())
		}
	case <-time.After(exitWait):
		cmd.Process.Kill()
		<-done
		detach(mnt)
		t.Fatalf("brokerfs demo did not exit within %v of SIGTERM:\n%s", exitWait, logs.String())
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("after the demo exited TMPDIR still holds %v", left)
	}
	if _, err := os.Stat(mnt); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the mountpoint the demo made is still there: %v", err)
	}
}
