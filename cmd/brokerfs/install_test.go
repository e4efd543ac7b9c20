package main

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestInstall installs the running (test) binary into a temporary prefix twice: the copy is
// byte for byte the binary, mode 0755, replaced by a new file (a new inode) the second time,
// and the helper link names it.
func TestInstall(t *testing.T) {
	prefix, sbin := t.TempDir(), t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(prefix, "bin", "brokerfs")
	var inodes []uint64
	for range 2 {
		var out, errs bytes.Buffer
		if err := cmdInstall([]string{"--helper-dir", sbin, prefix}, &out, &errs); err != nil {
			t.Fatalf("install: %v\n%s", err, errs.String())
		}
		got, err := os.ReadFile(bin)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes (%v), want the %d of %s", bin, len(got), err, len(want), self)
		}
		fi, err := os.Stat(bin)
		if err != nil || fi.Mode() != 0o755 {
			t.Errorf("%s: mode %v (%v), want 0755", bin, fi.Mode(), err)
		}
		inodes = append(inodes, fi.Sys().(*syscall.Stat_t).Ino)
		if target, err := os.Readlink(filepath.Join(sbin, helperName)); err != nil || target != bin {
			t.Errorf("%s -> %q (%v), want %s", helperName, target, err, bin)
		}
		if left, _ := filepath.Glob(filepath.Join(prefix, "bin", ".*")); len(left) > 0 {
			t.Errorf("temporary files left: %q", left)
		}
	}
	if inodes[0] == inodes[1] {
		t.Errorf("the second install wrote into the installed file instead of replacing it")
	}
	// --no-helper touches no helper directory.
	other := t.TempDir()
	if err := cmdInstall([]string{"--no-helper", "--helper-dir", other, t.TempDir()}, new(bytes.Buffer), new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(other); len(entries) > 0 {
		t.Errorf("--no-helper linked %v", entries)
	}
}
