package cache

import (
	"errors"
	"fmt"
	"syscall"

	"modernc.org/sqlite"
)

var (
	// ErrMiss is returned by Lookup (and Entry.Open) for an entry that is absent, torn, of another
	// format version, expired or modified since it was committed. The caller rebuilds it.
	ErrMiss = errors.New("cache miss")
	// ErrFull is returned by a reservation that cannot fit under MaxBytes even after evicting every
	// entry that may be evicted. The caller serves without caching.
	ErrFull = errors.New("cache full")
	// ErrBusy is returned when an entry cannot be reset or removed because a Sparse of it is open
	// (in this or another process).
	ErrBusy = errors.New("cache entry in use")
	// ErrUnavailable is wrapped, beside the underlying error, by errors that mean the cache
	// directory cannot take writes (no space, quota, read-only, permission, I/O error). The caller
	// serves without the cache and logs one line.
	ErrUnavailable = errors.New("cache dir unavailable")
	// ErrClosed is returned by operations on a closed Store, Builder or Sparse.
	ErrClosed = errors.New("cache closed")
)

// diskError wraps an error of the cache directory that makes the cache unusable for the operation.
type diskError struct {
	op  string
	err error
}

func (e *diskError) Error() string   { return e.op + ": " + e.err.Error() }
func (e *diskError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// sqlite primary result codes that mean the disk, not the query, failed.
const (
	sqlitePerm     = 3
	sqliteCorrupt  = 11
	sqliteNotADB   = 26
	sqliteReadonly = 8
	sqliteIOErr    = 10
	sqliteFull     = 13
	sqliteCantOpen = 14
)

// wrapErr returns "op: err", marked ErrUnavailable when err says the directory cannot take writes.
func wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if isDiskErr(err) {
		return &diskError{op: op, err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isDiskErr(err error) bool {
	for _, e := range []error{syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EACCES,
		syscall.EPERM, syscall.EIO} {
		if errors.Is(err, e) {
			return true
		}
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlitePerm, sqliteReadonly, sqliteIOErr, sqliteFull, sqliteCantOpen:
			return true
		}
	}
	return false
}
