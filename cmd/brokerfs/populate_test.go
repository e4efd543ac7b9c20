package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestCodeMappings(t *testing.T) {
	maps := `00400000-00a00000 r-xp 00000000 fd:01 123 /usr/bin/brokerfs
00a00000-01000000 r--p 00600000 fd:01 123 /usr/bin/brokerfs
01000000-01010000 rw-p 00c00000 fd:01 123 /usr/bin/brokerfs
01010000-01020000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libhdf5_serial.so.103.3.1
7f0000100000-7f0000108000 r--p 00100000 fd:01 456 /usr/lib/x86_64-linux-gnu/libhdf5_serial.so.103.3.1
7f0000200000-7f0000300000 r-xp 00000000 fd:01 789 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000300000-7f0000301000 r-xp 00000000 fd:01 790 /usr/bin/brokerfs.old
7f0000400000-7f0000401000 r-xp 00000000 00:00 0
bad line
zz-yy r-xp 00000000 fd:01 123 /usr/bin/brokerfs
`
	got := codeMappings([]byte(maps), "/usr/bin/brokerfs")
	want := [][2]uintptr{{0x400000, 0xa00000}, {0xa00000, 0x1000000}, {0x7f0000000000, 0x7f0000100000}, {0x7f0000100000, 0x7f0000108000}}
	if len(got) != len(want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: %x, want %x", i, got[i], want[i])
		}
	}
}

// After populateCode, every page of the test binary's code and read-only data, and of
// libhdf5's (which the hdf5 handlers link), is resident in this process.
func TestPopulateCode(t *testing.T) {
	n := populateCode()
	if n == 0 {
		t.Skip("nothing populated: a kernel without MADV_POPULATE_READ (Linux < 5.14)")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cur string // the current mapping, when it is one populateCode maps in
	var size, total int64
	sawHDF5 := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":"):
			cur = ""
			if len(fs) >= 6 && (fs[1] == "r-xp" || fs[1] == "r--p") && (fs[5] == exe || strings.Contains(fs[5], "/libhdf5")) {
				cur = fs[0] + " " + fs[5]
				sawHDF5 = sawHDF5 || strings.Contains(fs[5], "/libhdf5")
			}
		case cur != "" && len(fs) == 3 && fs[0] == "Size:":
			size, _ = strconv.ParseInt(fs[1], 10, 64)
			total += size * 1024
		case cur != "" && len(fs) == 3 && fs[0] == "Rss:":
			rss, _ := strconv.ParseInt(fs[1], 10, 64)
			if rss != size {
				t.Errorf("%s: %d KiB resident of %d", cur, rss, size)
			}
		}
	}
	if !sawHDF5 {
		t.Error("no libhdf5 mapping in /proc/self/smaps")
	}
	if total != n {
		t.Errorf("populateCode says %d bytes, the mappings have %d", n, total)
	}
}
