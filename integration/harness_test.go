// Package integration builds the brokerfs binary, mounts real catalogs with it and reads them
// back as users would: with the standard library, numpy, pandas, tifffile and PIL. Values are
// checked against testdata/expect.py, a reference reader that decodes the run files itself.
//
// The tests need /dev/fuse and either root or fusermount3, and /usr/bin/python3 with numpy,
// pandas, msgpack, tifffile and PIL (Debian: python3-numpy python3-pandas python3-msgpack
// python3-tifffile python3-pil). Every mount is made on a t.TempDir() and unmounted in
// t.Cleanup; TestMain fails the run if one is left.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	python      = "/usr/bin/python3"
	mountWait   = 10 * time.Second // how long a mount may take to appear
	exitWait    = 15 * time.Second // how long an unmount may take (brokerfs retries a busy one for 5 s)
	scriptLimit = 5 * time.Minute  // a limit for each expect.py run
)

// brokerfs is the binary TestMain builds.
var brokerfs string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "brokerfs-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	brokerfs = filepath.Join(dir, "brokerfs")
	args := []string{"build", "-o", brokerfs}
	if raceEnabled {
		// The server under test runs with the race detector too; a race makes it exit 66,
		// which the unmount check reports.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/brokerfs")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: go build ./cmd/brokerfs failed: %v\n%s", err, out)
		return 1
	}
	// Every mount of this run shares one cache directory, as the mounts of one machine do
	// (and so every test after the first reading of a catalog also reads it from the cache).
	os.Setenv("BROKERFS_CACHE_DIR", filepath.Join(dir, "cache"))
	code := m.Run()
	for _, mnt := range ourMounts.all() {
		if isMounted(mnt) {
			fmt.Fprintf(os.Stderr, "integration: a test left a brokerfs mount on %s; detaching it\n", mnt)
			detach(mnt)
			code = 1
		}
	}
	return code
}

// ourMounts are the mountpoints the tests used: only those are checked at the end (other
// brokerfs mounts on the machine are none of our business).
var ourMounts mountSet

type mountSet struct {
	mu   sync.Mutex
	mnts []string // guarded by mu
}

func (s *mountSet) add(mnt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mnts = append(s.mnts, mnt)
}

func (s *mountSet) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.mnts...)
}

// requireFUSE skips the test where no FUSE mount can be made.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			t.Skip("not root and no fusermount3 (install fuse3): cannot mount")
		}
	}
}

// logBuffer collects a process's output; it is written by exec's copying goroutine while the
// test reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor reports whether the output contains s within d.
func (b *logBuffer) waitFor(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(b.String(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// server is a running `brokerfs mount`.
type server struct {
	t    *testing.T
	mnt  string
	cmd  *exec.Cmd
	logs *logBuffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result; read after done
	// checked: its exit has been checked (by stop or waitExit); used by the test's goroutine
	// and its cleanup only.
	checked bool
}

// mount mounts source on a new empty directory with `brokerfs mount [args] SOURCE MNT` and
// unmounts it when the test ends, checking that the server exits 0 and the mount is gone.
func mount(t *testing.T, source string, args ...string) (mnt string, logs *logBuffer) {
	t.Helper()
	s := startServer(t, source, args...)
	return s.mnt, s.logs
}

// startServer is mount for tests that stop the server themselves (see stop).
func startServer(t *testing.T, source string, args ...string) *server {
	t.Helper()
	return awaitMount(t, source, startServerNoWait(t, source, args...))
}

// startServerEnv is startServer with env added to the server's environment.
func startServerEnv(t *testing.T, env []string, source string, args ...string) *server {
	t.Helper()
	return awaitMount(t, source, startServerEnvNoWait(t, env, source, args...))
}

// startServerOn is startServer on the directory mnt ("": a new empty one).
func startServerOn(t *testing.T, mnt, source string, args ...string) *server {
	t.Helper()
	return awaitMount(t, source, startServerAt(t, mnt, nil, source, args...))
}

// awaitMount waits until s has mounted.
func awaitMount(t *testing.T, source string, s *server) *server {
	t.Helper()
	deadline := time.Now().Add(mountWait)
	for {
		if m, ok := mountinfo()[s.mnt]; ok {
			if !strings.Contains(m.fstype, "brokerfs") {
				t.Errorf("%s is mounted with type %s, want fuse.brokerfs", s.mnt, m.fstype)
			}
			// The mount shows before the server has finished mounting (go-fuse still opens
			// a file in it) and before brokerfs handles signals; its "mounted" log line
			// comes after. Tests of that window use startServerNoWait.
			s.logs.waitFor("msg=mounted", 2*time.Second)
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("brokerfs mount %s exited before mounting: %v\n%s", source, s.err, s.logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.dumpStacks()
			t.Fatalf("%s not mounted after %v; brokerfs says (goroutines at the end):\n%s", s.mnt, mountWait, s.logs)
		}
	}
}

// startServerNoWait starts `brokerfs mount` and returns at once.
func startServerNoWait(t *testing.T, source string, args ...string) *server {
	t.Helper()
	return startServerEnvNoWait(t, nil, source, args...)
}

// startServerEnvNoWait is startServerNoWait with env added to the server's environment.
func startServerEnvNoWait(t *testing.T, env []string, source string, args ...string) *server {
	t.Helper()
	return startServerAt(t, "", env, source, args...)
}

// startServerAt starts `brokerfs mount` on mnt ("": a new empty directory), with env added to
// its environment, and returns at once.
func startServerAt(t *testing.T, mnt string, env []string, source string, args ...string) *server {
	t.Helper()
	requireFUSE(t)
	if mnt == "" {
		var err error
		mnt, err = filepath.EvalSymlinks(t.TempDir()) // as /proc/self/mountinfo shows it
		if err != nil {
			t.Fatal(err)
		}
	}
	s := &server{t: t, mnt: mnt, logs: &logBuffer{}, done: make(chan struct{})}
	ourMounts.add(mnt)
	s.cmd = exec.Command(brokerfs, append(append([]string{"mount"}, args...), source, mnt)...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if env != nil {
		s.cmd.Env = append(os.Environ(), env...)
	}
	s.cmd.WaitDelay = 5 * time.Second // a child holding its output must not stall Wait
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start brokerfs: %v", err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.cleanup)
	return s
}

// stop sends sig and checks that the server exits 0 and leaves no mount behind.
func (s *server) stop(sig syscall.Signal) {
	s.t.Helper()
	select {
	case <-s.done:
	default:
		if err := s.cmd.Process.Signal(sig); err != nil {
			s.t.Errorf("signal brokerfs: %v", err)
		}
	}
	s.waitExit()
}

// waitExit waits for the server to exit on its own (after a signal or an external umount)
// and checks how it went.
func (s *server) waitExit() {
	s.t.Helper()
	s.checked = true
	select {
	case <-s.done:
	case <-time.After(exitWait):
		s.t.Errorf("brokerfs did not exit within %v of being asked to unmount; its goroutines are at the end of its output; killing it", exitWait)
		if !s.dumpStacks() && !s.kill() {
			return
		}
	}
	if s.err != nil {
		s.t.Errorf("brokerfs exited with %v, want status 0; it said:\n%s", s.err, s.logs)
	}
	if isMounted(s.mnt) {
		detach(s.mnt)
		s.t.Errorf("brokerfs exited but left %s mounted (detached it)", s.mnt)
	}
	for _, bad := range []string{"panic:", "DATA RACE", "fatal error:"} {
		if strings.Contains(s.logs.String(), bad) {
			s.t.Errorf("brokerfs output holds %q:\n%s", bad, s.logs)
		}
	}
}

// dumpStacks sends SIGQUIT, which makes a Go program print every goroutine's stack and exit,
// and reports whether the server exited within a few seconds: what a stuck server was doing
// lands in its logs.
func (s *server) dumpStacks() bool {
	s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// kill kills the server and reports whether it is gone. A server stuck in a request to its
// own mount cannot die until that FUSE connection is aborted; then the mount is detached.
func (s *server) kill() bool {
	s.cmd.Process.Kill()
	select {
	case <-s.done:
		return true
	case <-time.After(5 * time.Second):
	}
	m, mounted := mountinfo()[s.mnt]
	s.t.Errorf("brokerfs (pid %d) did not die of SIGKILL: stuck in the kernel on its own mount; aborting its FUSE connection %s", s.cmd.Process.Pid, m.dev)
	if mounted {
		abortConnection(m.dev)
		detach(s.mnt)
	}
	select {
	case <-s.done:
		return true
	case <-time.After(5 * time.Second):
		s.t.Errorf("brokerfs (pid %d) is still stuck; giving up on it; it said:\n%s", s.cmd.Process.Pid, s.logs)
		return false
	}
}

// abortConnection aborts the FUSE connection of the mount with device number dev, as
// `echo 1 > /sys/fs/fuse/connections/N/abort` does (N is the minor number; needs fusectl).
func abortConnection(dev string) {
	_, minor, ok := strings.Cut(dev, ":")
	if !ok {
		return
	}
	conns := "/sys/fs/fuse/connections"
	if _, err := os.Stat(filepath.Join(conns, minor)); err != nil && os.Geteuid() == 0 {
		syscall.Mount("none", conns, "fusectl", 0, "")
	}
	os.WriteFile(filepath.Join(conns, minor, "abort"), []byte("1"), 0)
}

func (s *server) cleanup() {
	if !s.checked {
		s.stop(syscall.SIGTERM) // or, if it died already, report how
	}
	if dir := os.Getenv("BROKERFS_TEST_LOGDIR"); dir != "" {
		// Every server's output, kept for a look at runs that passed too (timings, warnings).
		name := strings.NewReplacer("/", "_", " ", "_").Replace(s.t.Name())
		f, err := os.CreateTemp(dir, name+"-*.log")
		if err == nil {
			fmt.Fprintf(f, "brokerfs %s\n%s", strings.Join(s.cmd.Args[1:], " "), s.logs)
			f.Close()
		}
	}
}

// detach lazily unmounts mnt: the last resort against a stale mount.
func detach(mnt string) {
	if os.Geteuid() == 0 {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err == nil {
			return
		}
	}
	exec.Command("fusermount3", "-u", "-z", mnt).Run()
}

// unmount unmounts mnt as `umount MNT` would.
func unmount(mnt string) error {
	if os.Geteuid() == 0 {
		return syscall.Unmount(mnt, 0)
	}
	if out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
		return fmt.Errorf("fusermount3 -u %s: %v: %s", mnt, err, out)
	}
	return nil
}

// mountEntry is a line of /proc/self/mountinfo.
type mountEntry struct {
	dev    string // major:minor
	fstype string
}

// mountinfo returns the mounts of /proc/self/mountinfo by mount point.
func mountinfo() map[string]mountEntry {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	mounts := map[string]mountEntry{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root MOUNTPOINT options [optional...] - FSTYPE source super
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && len(fields) > 4 {
				mounts[unescapeOctal(fields[4])] = mountEntry{dev: fields[2], fstype: fields[i+1]}
				break
			}
		}
	}
	return mounts
}

// unescapeOctal undoes mountinfo's \040-style escapes.
func unescapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				ok = ok && c >= '0' && c <= '7'
				v = v*8 + c - '0'
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

func isMounted(mnt string) bool {
	_, ok := mountinfo()[mnt]
	return ok
}

// run runs the brokerfs binary to completion (at most limit) and returns its combined output
// and exit code. A command that outlives limit is killed and the test fails; any mount it
// made is detached.
func run(t *testing.T, limit time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if len(args) > 0 && args[0] == "mount" {
		ourMounts.add(args[len(args)-1])
	}
	var out logBuffer
	cmd := exec.CommandContext(ctx, brokerfs, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		if len(args) > 0 && args[0] == "mount" {
			detach(args[len(args)-1])
		}
		t.Fatalf("brokerfs %s did not finish within %v:\n%s", strings.Join(args, " "), limit, out.String())
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("brokerfs %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), 0
}

// demoCatalog writes the demo catalog with `brokerfs demo --no-mount --dir D` and returns D.
func demoCatalog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if out, code := run(t, time.Minute, "demo", "--no-mount", "--dir", dir); code != 0 {
		t.Fatalf("brokerfs demo exited %d:\n%s", code, out)
	}
	return dir
}

// runFiles returns the run files (*.msgpack, *.jsonl) of a directory, sorted.
func runFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"*.msgpack", "*.jsonl"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no run files in %s", dir)
	}
	return files
}

var pythonCheck = sync.OnceValue(func() error {
	out, err := exec.Command(python, "-c", "import numpy, pandas, msgpack, tifffile").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s cannot import numpy, pandas, msgpack and tifffile (apt-get install python3-numpy python3-pandas python3-msgpack python3-tifffile): %v\n%s", python, err, out)
	}
	return nil
})

// runPython runs a Python script with args and returns its output; it fails the test when
// the script exits non-zero.
func runPython(t *testing.T, args ...string) string {
	t.Helper()
	if err := pythonCheck(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scriptLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1") // no __pycache__ in testdata
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", python, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// expect runs testdata/expect.py over the mount and the run files it should show.
func expect(t *testing.T, mnt string, files []string, opts ...string) {
	t.Helper()
	args := append(append([]string{"testdata/expect.py"}, opts...), mnt)
	out := runPython(t, append(args, files...)...)
	t.Logf("expect.py: %s", strings.TrimSpace(out))
}

// runSummary is one line of `expect.py --summary`: a run as the reference reader sees it.
type runSummary struct {
	Path       string  `json:"path"`
	UID        string  `json:"uid"`
	ScanID     any     `json:"scan_id"`
	PlanName   string  `json:"plan_name"`
	Time       float64 `json:"time"`
	ExitStatus string  `json:"exit_status"`
}

// summaries returns the runs of files, oldest first.
func summaries(t *testing.T, files []string) []runSummary {
	t.Helper()
	out := runPython(t, append([]string{"testdata/expect.py", "--summary"}, files...)...)
	var runs []runSummary
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var s runSummary
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("expect.py --summary: %v: %q", err, line)
		}
		runs = append(runs, s)
	}
	return runs
}

// copyFile copies src to the directory dir under name.
func copyFile(t *testing.T, src, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, name)
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}
