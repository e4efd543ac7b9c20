package nodes

import (
	"hash/fnv"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// rootIno is the root directory's inode number; every other node's number is a hash of its
// path in the tree, so that it is the same in every Lookup, Readdir and mount.
const rootIno = 1

// inoOf returns the stable inode number of the node at path (relative to the mount root).
// Collisions of 64-bit FNV-1a hashes over the paths of one catalog are negligible; numbers
// below 2 are moved away from the root's.
func inoOf(path string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(path))
	n := h.Sum64()
	if n <= rootIno {
		n += 2
	}
	return n
}

func stableAttr(path string, mode uint32) gofs.StableAttr {
	return gofs.StableAttr{Mode: mode, Ino: inoOf(path), Gen: 1}
}

const (
	modeDir     = syscall.S_IFDIR
	modeFile    = syscall.S_IFREG
	modeSymlink = syscall.S_IFLNK
)
