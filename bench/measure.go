package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dropCaches writes dirty pages back and drops the page, dentry and inode caches, so that the
// next read comes from the disk. A failure is recorded once in the notes and otherwise
// tolerated: the "cold" figures are then only cold with respect to brokerfs's own caches.
func (b *bench) dropCaches() {
	syscall.Sync()
	err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
	if err != nil && !b.dropFailed {
		b.dropFailed = true
		b.note("`echo 3 > /proc/sys/vm/drop_caches` failed (%v): cold figures below are a fresh brokerfs process with the page cache possibly warm", err)
	}
}

// timeCmd runs a command with stdout discarded and returns its wall time.
func timeCmd(name string, args ...string) (time.Duration, error) {
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	err := cmd.Run() // Stdout nil: /dev/null
	d := time.Since(t0)
	if err != nil {
		return d, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return d, nil
}

// median of a non-empty sample.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// procStatus returns the kB values of /proc/PID/status fields such as VmRSS and VmHWM.
func procStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(k, "Vm") {
			continue
		}
		f := strings.Fields(v)
		if len(f) >= 1 {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux architecture
// Go supports.
const clockTicks = 100

// procCPU returns a process's user and system CPU time so far.
func procCPU(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces: fields are counted after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc/PID/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, errors.New("short /proc/PID/stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, errors.New("malformed /proc/PID/stat times")
	}
	tick := time.Second / clockTicks
	return time.Duration(ut) * tick, time.Duration(st) * tick, nil
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readResult is one sequential read of a file.
type readResult struct {
	bytes int64
	wall  time.Duration
	cpu   time.Duration // this process's CPU time during the read (read syscalls: the copies)
}

func (r readResult) mbps() float64 { return float64(r.bytes) / 1e6 / r.wall.Seconds() }

// readFile reads path from start to end with bufSize reads, as `dd bs=1M` does, timing from
// the open (which includes lookups) to the last read. check, when not nil, sees every chunk
// with its file offset.
func readFile(path string, bufSize int, check func(off int64, p []byte)) (readResult, error) {
	buf := make([]byte, bufSize)
	cpu0 := selfCPU()
	t0 := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return readResult{}, err
	}
	defer f.Close()
	var n int64
	for {
		k, err := f.Read(buf)
		if k > 0 {
			if check != nil {
				check(n, buf[:k])
			}
			n += int64(k)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return readResult{}, fmt.Errorf("read %s at %d: %w", path, n, err)
		}
	}
	return readResult{bytes: n, wall: time.Since(t0), cpu: selfCPU() - cpu0}, nil
}

// statfsFree is the free space, in bytes, of the file system holding path, and whether it is
// a tmpfs.
func statfsFree(path string) (free int64, tmpfs bool, err error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(path, &s); err != nil {
		return 0, false, err
	}
	const tmpfsMagic = 0x01021994
	return int64(s.Bavail) * s.Bsize, s.Type == tmpfsMagic, nil
}

// duSize is the disk usage, in bytes, of everything under dir.
func duSize(dir string) int64 {
	var total int64
	_ = walkFiles(dir, func(fi os.FileInfo) {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += fi.Size()
		}
	})
	return total
}

func walkFiles(dir string, fn func(os.FileInfo)) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if e.IsDir() {
			_ = walkFiles(dir+"/"+e.Name(), fn)
			continue
		}
		fn(fi)
	}
	return nil
}

// perfRecord, when enabled, samples a process's stacks with perf until the returned stop is
// called; the data goes to out. Without perf it does nothing.
func (b *bench) perfRecord(pid int, out string) (stop func()) {
	if !b.perf {
		return func() {}
	}
	perf, err := exec.LookPath("perf")
	if err != nil {
		b.note("-perf: perf is not installed")
		b.perf = false
		return func() {}
	}
	cmd := exec.Command(perf, "record", "-q", "-F", "499", "-g", "-p", strconv.Itoa(pid), "-o", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.note("-perf: %v", err)
		return func() {}
	}
	time.Sleep(300 * time.Millisecond) // let perf attach before the measured operation
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		// perf exits by the signal it was sent, or with status 0 after handling it.
		if err := cmd.Wait(); err != nil && !strings.Contains(err.Error(), "signal: interrupt") {
			b.note("-perf %s: %v %s", out, err, strings.TrimSpace(stderr.String()))
		}
	}
}
