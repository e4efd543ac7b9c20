package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// mount is a brokerfs process serving one mountpoint. Every mount is registered until it is
// closed, so that an error, a panic or a signal in the benchmark still unmounts it: a
// benchmark must never leave a stale mount behind.
type mount struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // the process's exit status; valid after done
	log  string        // path of the process's stderr/stdout
	dev  string        // the mount's device, "0:42", naming its FUSE connection

	label    string
	launched time.Time // when the process was started
	mounted  time.Time // when the mount showed in /proc/self/mountinfo
}

// peak is a brokerfs process's VmHWM, read just before it was told to stop.
type peak struct {
	label string
	kb    int64
}

// mounts is the registry of live mounts; stopping refuses new ones once cleanup has begun.
var (
	mountsMu sync.Mutex
	mounts   = map[*mount]bool{} // guarded by mountsMu
	stopping bool                // guarded by mountsMu
	peaks    []peak              // guarded by mountsMu
)

// startMount runs `bin mount [args] source dir` and waits until dir is a mount point.
func startMount(label, bin, source, dir, logPath string, args ...string) (*mount, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	argv := append(append([]string{"mount"}, args...), source, dir)
	cmd := exec.Command(bin, argv...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// A backstop: if the benchmark dies without running its cleanup, the kernel sends the
	// server SIGTERM, on which brokerfs unmounts itself. Pdeathsig fires when the *thread*
	// that started the child exits, and the Go runtime may end threads: the child is started
	// and waited for on a locked thread that lives until the child has exited.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	m := &mount{dir: dir, cmd: cmd, done: make(chan struct{}), log: logPath, label: label}

	mountsMu.Lock()
	if stopping {
		mountsMu.Unlock()
		return nil, errors.New("benchmark is stopping")
	}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		m.launched = time.Now()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		m.err = cmd.Wait()
		close(m.done)
	}()
	if err := <-started; err != nil {
		mountsMu.Unlock()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	mounts[m] = true
	mountsMu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for {
		if dev, ok, _ := mountDev(dir); ok {
			m.mounted = time.Now()
			m.dev = dev
			return m, nil
		}
		select {
		case <-m.done:
			m.Close()
			return nil, fmt.Errorf("brokerfs exited before mounting %s (%v): %s", dir, m.err, tail(logPath, 2000))
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Close()
			return nil, fmt.Errorf("brokerfs did not mount %s within 60 s: %s", dir, tail(logPath, 2000))
		}
	}
}

// pid is the brokerfs process id.
func (m *mount) pid() int { return m.cmd.Process.Pid }

// Close unmounts: SIGTERM (brokerfs unmounts and exits), then a lazy unmount and SIGKILL if
// it does not exit in time. It is idempotent.
func (m *mount) Close() error {
	mountsMu.Lock()
	if !mounts[m] {
		mountsMu.Unlock()
		return nil
	}
	delete(mounts, m)
	mountsMu.Unlock()

	var errs []error
	select {
	case <-m.done:
	default:
		if st, err := procStatus(m.pid()); err == nil {
			mountsMu.Lock()
			peaks = append(peaks, peak{m.label, st["VmHWM"]})
			mountsMu.Unlock()
		}
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(15 * time.Second):
			errs = append(errs, fmt.Errorf("brokerfs (pid %d) did not exit 15 s after SIGTERM", m.pid()))
		}
	}
	if ok, _ := isMounted(m.dir); ok {
		if err := syscall.Unmount(m.dir, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("lazy unmount %s: %w", m.dir, err))
		}
	}
	select {
	case <-m.done:
	default:
		_ = m.cmd.Process.Kill()
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			// A server that dies while one of its own threads waits on its mount (brokerfs
			// killed by a signal during startup, say) never exits: abort its connection.
			errs = append(errs, fmt.Errorf("brokerfs (pid %d) did not exit after SIGKILL: aborting FUSE connection %s", m.pid(), m.dev))
			if err := abortFUSE(m.dev); err != nil {
				errs = append(errs, err)
			}
			select {
			case <-m.done:
			case <-time.After(5 * time.Second):
				errs = append(errs, fmt.Errorf("brokerfs (pid %d) is stuck", m.pid()))
			}
		}
	}
	if ok, _ := isMounted(m.dir); ok {
		if err := syscall.Unmount(m.dir, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("%s is still mounted: %w", m.dir, err))
		}
	}
	return errors.Join(errs...)
}

// closeAllMounts unmounts every live mount and refuses new ones.
func closeAllMounts() {
	mountsMu.Lock()
	stopping = true
	var ms []*mount
	for m := range mounts {
		ms = append(ms, m)
	}
	mountsMu.Unlock()
	for _, m := range ms {
		if err := m.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: cleanup:", err)
		}
	}
}

// isMounted reports whether dir is a mount point according to /proc/self/mountinfo.
func isMounted(dir string) (bool, error) {
	_, ok, err := mountDev(dir)
	return ok, err
}

// mountDev returns the device ("major:minor") of the mount at dir, if dir is a mount point.
func mountDev(dir string) (dev string, ok bool, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeOctal(fields[4]) == abs {
			dev, ok = fields[2], true // the last mount on dir wins
		}
	}
	return dev, ok, sc.Err()
}

// abortFUSE aborts the FUSE connection of device dev ("0:42") through fusectl, mounting
// fusectl on /sys/fs/fuse/connections if it is not. It touches that one connection only.
func abortFUSE(dev string) error {
	major, minor, ok := strings.Cut(dev, ":")
	if !ok || major != "0" || minor == "" {
		return fmt.Errorf("abort FUSE connection: unexpected device %q", dev)
	}
	const ctl = "/sys/fs/fuse/connections"
	conn := filepath.Join(ctl, minor)
	if _, err := os.Stat(conn); err != nil {
		if err := syscall.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
			return fmt.Errorf("abort FUSE connection %s: mount fusectl: %w", dev, err)
		}
	}
	if err := os.WriteFile(filepath.Join(conn, "abort"), []byte("1"), 0); err != nil {
		return fmt.Errorf("abort FUSE connection %s: %w", dev, err)
	}
	return nil
}

// unescapeOctal undoes mountinfo's \ooo escapes (\040 for a space).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			v, ok := 0, true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + int(c-'0')
			}
			if ok {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
