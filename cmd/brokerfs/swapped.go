package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/brokerfs/brokerfs/catalog/tiled"
)

// swappedMountArgs recognises `brokerfs mount MOUNTPOINT SOURCE`: SOURCE (the first argument)
// is a directory that looks like a mountpoint (empty, or a mount point, and no catalog) and
// MOUNTPOINT (the second) looks like a catalog (a URI, a run file, a directory of run files or a
// databroker-pack). Such a mount would fail anyway (a catalog is never an empty directory to
// mount on), so saying "arguments swapped?" instead changes no mount that could succeed; the
// arguments are never swapped silently.
func swappedMountArgs(source, mnt string) bool {
	if looksLikeCatalog(source) || !looksLikeMountpoint(source) {
		return false
	}
	return looksLikeCatalog(mnt)
}

// looksLikeMountpoint: an existing directory that is empty or is a mount point.
func looksLikeMountpoint(p string) bool {
	fi, err := os.Stat(p)
	if err != nil || !fi.IsDir() {
		return false
	}
	if abs, err := filepath.Abs(p); err == nil {
		if ok, _ := isMounted(abs); ok {
			return true
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	return errors.Is(err, io.EOF)
}

// looksLikeCatalog: a mongodb:// or tiled URL, a run file, or a directory holding catalog.yml
// or run files (only its first 10,000 names are looked at, a batch at a time: every mount
// asks, and a directory of run files answers in its first batch instead of being read whole
// before the mount, cold, when the listing index makes reading it needless).
func looksLikeCatalog(p string) bool {
	if isMongoURI(p) || tiled.IsURL(p) {
		return true
	}
	fi, err := os.Stat(p)
	if err != nil {
		return false
	}
	if !fi.IsDir() {
		return isRunFile(p)
	}
	if _, err := os.Stat(filepath.Join(p, "catalog.yml")); err == nil {
		return true
	}
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for seen := 0; seen < 10000; {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if isRunFile(n) {
				return true
			}
		}
		if err != nil {
			return false
		}
		seen += len(names)
	}
	return false
}

func isRunFile(name string) bool {
	return strings.HasSuffix(name, ".msgpack") || strings.HasSuffix(name, ".jsonl")
}
