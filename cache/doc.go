// Package cache is brokerfs's persistent on-disk cache: decoded columns kept as files that the
// kernel can read directly (FUSE passthrough), shared by every brokerfs process that uses the same
// directory.
//
// # Two kinds of entries
//
// An entry (Build, Create, Reserve, Commit; Lookup, Entry.Open) is an immutable directory of named
// files plus a caller's meta blob, committed atomically: a stream's .npy columns, a .csv. A sparse
// file (OpenSparse, Fill) has a fixed logical size, a header then units × unitBytes, filled unit by
// unit (detector frames, read lazily), with a persistent bitmap of the filled units.
//
// # On-disk layout
//
//	DIR/index.sqlite            the index (SQLite, WAL): entries (key, kind, bytes, committed,
//	                            last access, generation; for sparse files geometry and bitmap) and
//	                            reservations (bytes promised to builders not yet committed)
//	DIR/entries/ab/<sha256>/    a committed entry: its files (0400) and MANIFEST, written last
//	DIR/sparse/<sha256>-<gen>   a sparse file; the generation changes whenever it is reset
//	DIR/tmp/<pid>-<rnd>.lock    one per live Store, held LOCK_EX (flock) for the Store's life
//	DIR/tmp/<pid>-<rnd>.b<n>/   a builder's private directory, renamed into entries/ by Commit
//	DIR/trash/<pid>-<rnd>.<n>/  an entry being removed: renamed here whole, then deleted
//
// Keys are untrusted strings: directories are named by the SHA-256 of the key (of "sparse\0"+key for
// sparse files); the key itself is kept in the manifest and the index and compared on Lookup.
//
// MANIFEST is "BRKFSCM\n", the format version (uint32 LE), a boot id (16 bytes; zero once the
// entry is durable), the body length, a JSON body (key, generation, commit time, meta, and per
// file: name, size, ctime, inode, CRC32C of the first and of the last 4 KiB) and a CRC32C of
// everything before it.
//
// # Why a crash or a second process never yields a served torn entry
//
// A builder writes only in its private tmp/ directory. Commit records every file (closed, so
// complete), writes the manifest, and only then renames the directory into entries/. So an entry
// directory under entries/ has a complete manifest describing files complete before it. Commit
// does not wait for the disk: the manifest carries the running kernel's boot id, and the entry is
// made durable in the background (fsync of its files and of entries/xx, then the same manifest
// with a zero boot id written under a temporary name, fsynced, renamed over MANIFEST, and the
// directory fsynced; see durable.go). Until then the page cache holds it whole, whatever happens
// to the process; a crash of the machine, which may lose any of it, changes the boot id, and an
// entry naming another boot is a miss. Where the boot id cannot be read, Commit syncs every file,
// the manifest and the directories before and around the rename, as before. So a crash leaves
// either no entry, a whole one, or one that is never served. Lookup serves an entry only when its
// manifest parses, has this format version, carries its CRC, names this key and, if not yet
// durable, this boot, is within the TTL, and every file it lists has the recorded size, ctime and
// inode; Entry.Open re-checks that and the CRCs of the file's first and last 4 KiB, which catches
// truncation, rewriting and most corruption by other hands (a change in the middle of a file
// that keeps size, ctime and inode cannot be seen without reading it all). Anything else is
// ErrMiss, and the entry is removed (only if it is still the generation that failed, so a fresh
// entry another process committed meanwhile survives).
//
// Every change of what is under entries/ and sparse/, and every change of the accounting, happens
// inside one IMMEDIATE transaction of the index, whose write lock all processes share: a rename
// into place and its row, an eviction and its row, a reservation and the evictions that make room
// for it. Two processes committing the same key: the first wins; the second finds a valid entry,
// discards its own and returns the winner's. A crash between a rename and the index commit leaves
// a directory without a row: a complete entry, but not accounted, which Open removes (Lookup may
// serve it until its access reaches the index, which removes it); a row without its files is
// deleted by Open, and by the next write of accesses after a Lookup found no directory. A Store that dies leaves its tmp/ directories, trash and reservations;
// they are removed by any Store that finds its lock file unlocked (Open, and Reserve before it
// gives up), never those of a live Store, whatever its pid namespace.
//
// A sparse file's bitmap lives in the index. A unit's mark is persisted only after an fdatasync of
// the file, so a crash loses marks of units written since the last sync, never marks a unit whose
// data is not on disk. The file name carries a generation recorded in the row: a reset makes a new
// file, so an old bitmap can never describe a new file. Two processes may fill one sparse file;
// bitmaps are merged (OR) when persisted. A sparse file is checked for its size and header
// only: the bytes of a unit carry no checksum. Its creation is not synced: a file that a crash
// left without its name, size or header is reset when next opened, and its row has no marks
// that the last fdatasync did not cover.
//
// A Temporary Store (--no-cache) skips every fsync: its directory is private and removed by Close,
// so no entry of it outlives a crash; what it serves is checked all the same.
//
// # What the cap covers
//
// MaxBytes bounds, at every moment, the bytes of entry files on disk in DIR, counted as file
// sizes: committed entries' files and manifests, builders' reservations (a builder must Reserve
// before it writes; Commit reserves the manifest and anything written beyond the reservation),
// and sparse files' headers and filled units (unit reservations are made before the write; two
// handles filling one unit before either persists it both reserve it, and the later one gives its
// reservation back when it persists; a crash in between leaves an overcount, never an undercount). The
// index, lock files and filesystem block rounding are not counted. The accounting is in the index,
// so it is shared by all processes; each enforces its own MaxBytes at its reservations. Eviction is
// least recently used first, by the last Lookup or fill, across processes. Lookup never waits for
// the index: it notes the access in memory (once a second per entry at most), and the Store writes
// it within a second, and before it evicts anything itself; so another process's eviction may see
// this one's accesses up to a second late. Each Reserve and each Fill is one index transaction:
// reserve in large steps (a column's predicted size) where that is known. Never evicted: builders' reservations (they are not entries) and sparse files
// any Sparse has open (each holds LOCK_SH on it). An entry another process has open may be
// evicted: its open files keep working, and its next Entry.Open is a miss.
//
// # Errors
//
// ErrMiss: rebuild. ErrFull: serve without caching. ErrBusy: a sparse file is open elsewhere (with
// another geometry, or for Remove). Errors of the directory itself (ENOSPC, EDQUOT, EROFS, EACCES,
// EIO, and SQLite's equivalents) wrap ErrUnavailable beside the original error (errors.Is works for
// both): serve without the cache and log one line. Nothing half-written is ever served after any of
// them: a failed Commit removes its directory and releases its reservation; a failed Fill leaves
// its unit unmarked.
//
// A corrupt index is replaced by a new one at Open (its entries are then discarded); an index of
// another version makes Open fail. The directory must be on a local filesystem (flock and SQLite
// locking).
package cache
