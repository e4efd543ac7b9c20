package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// populateCode maps in the pages of the brokerfs executable's and libhdf5's read-only file
// mappings (code, and read-only data such as Go's pclntab, which stack unwinding reads), so
// that the first requests after the mount take no major page fault on code never run
// before. Mapped pages stay in memory through drop_caches; they count in the RSS (about 6 MiB
// more than a fresh mount maps on its own, as measured in BENCHMARKS.md). It returns the bytes
// populated; a kernel without MADV_POPULATE_READ (before 5.14) populates nothing. Call it on a
// goroutine of its own, which ends after it: its thread goes with it.
func populateCode() int64 {
	exe, err := os.Executable()
	if err != nil {
		return 0
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0
	}
	// The pages not in the page cache are read from disk: at the idle I/O priority, so that
	// the reads do not delay what the mount serves meanwhile (the first `ls` of a mount made
	// right after drop_caches). The thread keeps that priority and exits with its goroutine
	// (locked to it, never unlocked).
	runtime.LockOSThread()
	unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, ioprioIdle)
	var total int64
	for _, m := range codeMappings(b, exe) {
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m[0], m[1]-m[0], unix.MADV_POPULATE_READ); e == 0 {
			total += int64(m[1] - m[0])
		}
	}
	return total
}

// ioprio_set(2): IOPRIO_WHO_PROCESS with pid 0 is the calling thread; IOPRIO_CLASS_IDLE (3)
// in the class bits (13 and up).
const (
	ioprioWhoProcess = 1
	ioprioIdle       = 3 << 13
)

// codeMappings returns the [start, end) of the r-x and r-- private file mappings of exe and
// of libhdf5 in maps (the text of /proc/self/maps).
func codeMappings(maps []byte, exe string) [][2]uintptr {
	var out [][2]uintptr
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || (f[1] != "r-xp" && f[1] != "r--p") {
			continue
		}
		if path := f[5]; path != exe && !strings.Contains(path, "/libhdf5") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, [2]uintptr{uintptr(start), uintptr(end)})
	}
	return out
}
