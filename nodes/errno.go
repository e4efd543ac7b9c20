package nodes

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/brokerfs/brokerfs/catalog"
)

// toErrno maps an error to the errno a user sees and logs the ones that are failures:
// not-found is ENOENT, a canceled call EINTR, everything else EIO with one log line naming the
// operation and the path. go-fuse's ToErrno is not used: it cannot see through wrapped errors.
func (st *state) toErrno(op, path string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, catalog.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, syscall.EROFS):
		return syscall.EROFS
	}
	if st.shouldLog(path, err) {
		st.log.Error("operation failed", "op", op, "path", path, "err", err)
	}
	return syscall.EIO
}

// logQuiet is how long one failure of one path is not logged again: the kernel and tools
// repeat a failing lookup or read (ls -l stats, readahead retries), and one log line per
// failure is what an operator wants.
const logQuiet = 30 * time.Second

// shouldLog reports whether the failure of path with err has not been logged within logQuiet.
func (st *state) shouldLog(path string, err error) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.shouldLogLocked(path, err)
}

// shouldLogLocked is shouldLog with st.mu held.
func (st *state) shouldLogLocked(path string, err error) bool {
	key := path + "\x00" + err.Error()
	now := st.cfg.Clock.Now()
	if t, ok := st.logged[key]; ok && now.Sub(t) < logQuiet {
		return false
	}
	if len(st.logged) > 4096 {
		clear(st.logged)
	}
	st.logged[key] = now
	return true
}

func isNotFound(err error) bool { return errors.Is(err, catalog.ErrNotFound) }
