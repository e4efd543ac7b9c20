package nodes

import (
	"context"
	"errors"
	"syscall"

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
	st.log.Error("operation failed", "op", op, "path", path, "err", err)
	return syscall.EIO
}

func isNotFound(err error) bool { return errors.Is(err, catalog.ErrNotFound) }
