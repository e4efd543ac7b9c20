package filestore

// A minimal io_uring, for one purpose: reading the first block of many run files with one
// system call per batch. On a cold first listing the head reads are the whole cost, and most of
// it is the kernel's, per request: a pread per file is a request of its own, submitted and
// kicked to the disk alone (a VM exit per file on a virtio disk) and completed by waking its
// thread. A batch of reads submitted at once is plugged together: one kick, adjacent files'
// blocks merged into one request, one wake-up for the batch. Measured on the 10k-run bench
// catalog (2 cores, virtio disk, page cache dropped): half the system time and half the wall
// time of 8 or 32 threads calling pread.
//
// Only IORING_OP_READ on regular files is used; everything else stays with ordinary system
// calls. Where io_uring is missing or refused (old kernels, seccomp, kernel.io_uring_disabled),
// newRing fails and the listing reads heads with pread as before.

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioURingParams is struct io_uring_params.
type ioURingParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
}

// ioURingSQE is struct io_uring_sqe (64 bytes).
type ioURingSQE struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	rwFlags  uint32
	userData uint64
	_        [3]uint64
}

// ioURingCQE is struct io_uring_cqe (16 bytes).
type ioURingCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

const (
	ioURingOpRead         = 22         // IORING_OP_READ
	ioURingFeatSingleMmap = 1 << 0     // IORING_FEAT_SINGLE_MMAP
	ioURingEnterGetEvents = 1 << 0     // IORING_ENTER_GETEVENTS
	ioURingOffSQRing      = 0          // IORING_OFF_SQ_RING
	ioURingOffCQRing      = 0x8000000  // IORING_OFF_CQ_RING
	ioURingOffSQEs        = 0x10000000 // IORING_OFF_SQES
)

// ring is an io_uring instance used by one goroutine at a time.
type ring struct {
	fd           int
	sqMem, cqMem []byte // the rings (one mapping when the kernel shares it)
	sqeMem       []byte
	sqes         []ioURingSQE
	sqHead       *uint32
	sqTail       *uint32
	sqMask       uint32
	sqArray      []uint32
	cqHead       *uint32
	cqTail       *uint32
	cqMask       uint32
	cqes         []ioURingCQE
	entries      int
}

// newRing sets up a ring of (at least) entries submission slots.
func newRing(entries int) (*ring, error) {
	var p ioURingParams
	fd, _, errno := syscall.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, errno
	}
	r := &ring{fd: int(fd), entries: int(p.sqEntries)}
	if err := r.mmap(&p); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *ring) mmap(p *ioURingParams) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(ioURingCQE{}))
	single := p.features&ioURingFeatSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	const prot, flags = syscall.PROT_READ | syscall.PROT_WRITE, syscall.MAP_SHARED | syscall.MAP_POPULATE
	var err error
	if r.sqMem, err = syscall.Mmap(r.fd, ioURingOffSQRing, sqSize, prot, flags); err != nil {
		return err
	}
	r.cqMem = r.sqMem
	if !single {
		if r.cqMem, err = syscall.Mmap(r.fd, ioURingOffCQRing, cqSize, prot, flags); err != nil {
			r.cqMem = nil
			return err
		}
	}
	if r.sqeMem, err = syscall.Mmap(r.fd, ioURingOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(ioURingSQE{})), prot, flags); err != nil {
		return err
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqes = unsafe.Slice((*ioURingSQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.sqHead, r.sqTail = u32(r.sqMem, p.sqOff.head), u32(r.sqMem, p.sqOff.tail)
	r.sqMask = *u32(r.sqMem, p.sqOff.ringMask)
	r.sqArray = unsafe.Slice(u32(r.sqMem, p.sqOff.array), p.sqEntries)
	r.cqHead, r.cqTail = u32(r.cqMem, p.cqOff.head), u32(r.cqMem, p.cqOff.tail)
	r.cqMask = *u32(r.cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*ioURingCQE)(unsafe.Pointer(&r.cqMem[p.cqOff.cqes])), p.cqEntries)
	return nil
}

// close tears the ring down. Reads still in flight (only after readAll failed) may complete
// after it: their buffers must stay referenced (see readAll).
func (r *ring) close() {
	if r.sqeMem != nil {
		syscall.Munmap(r.sqeMem)
	}
	if len(r.cqMem) > 0 && &r.cqMem[0] != &r.sqMem[0] {
		syscall.Munmap(r.cqMem)
	}
	if r.sqMem != nil {
		syscall.Munmap(r.sqMem)
	}
	syscall.Close(r.fd)
}

// errRingBroken: a read was submitted and its completion could not be collected.
var errRingBroken = errors.New("io_uring: completions lost")

// lostBuffers keeps the buffers of reads whose completion was not seen, so that the kernel
// never writes into memory the Go runtime reused. It only grows after an io_uring failure,
// after which no ring is used again.
var lostBuffers struct {
	sync.Mutex
	bufs [][]byte
}

// readAll reads len(bufs[i]) bytes at offset 0 of fds[i] into bufs[i], for every i with
// fds[i] >= 0, and stores the byte count or -errno in n[i]. len(fds) must not exceed the
// ring's entries. When it returns an error, the ring must not be used again.
func (r *ring) readAll(fds []int, bufs [][]byte, n []int32) error {
	if len(fds) > r.entries {
		return errors.New("io_uring: batch larger than the ring")
	}
	tail := atomic.LoadUint32(r.sqTail)
	queued := 0
	for i, fd := range fds {
		if fd < 0 || len(bufs[i]) == 0 {
			n[i] = 0
			continue
		}
		idx := tail & r.sqMask
		r.sqes[idx] = ioURingSQE{
			opcode:   ioURingOpRead,
			fd:       int32(fd),
			addr:     uint64(uintptr(unsafe.Pointer(&bufs[i][0]))),
			len:      uint32(len(bufs[i])),
			userData: uint64(i),
		}
		r.sqArray[idx] = idx
		tail++
		queued++
	}
	atomic.StoreUint32(r.sqTail, tail)
	submitted, done := 0, 0
	for done < queued {
		toSubmit, minComplete := queued-submitted, 0
		if submitted > done {
			minComplete = 1
		}
		ret, _, errno := syscall.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), ioURingEnterGetEvents, 0, 0)
		switch errno {
		case 0:
			if ret == 0 && toSubmit > 0 && submitted == done {
				// Took nothing and has nothing to complete: it would loop forever.
				return r.abandon(fds, bufs, n, submitted, done, syscall.EIO)
			}
			submitted += int(ret)
		case syscall.EINTR, syscall.EAGAIN, syscall.EBUSY:
			if submitted == done {
				if errno == syscall.EINTR {
					continue
				}
				// Nothing in flight to wait for and the kernel cannot take more: give up
				// with nothing outstanding.
				return r.abandon(fds, bufs, n, submitted, done, errno)
			}
		default:
			return r.abandon(fds, bufs, n, submitted, done, errno)
		}
		head := atomic.LoadUint32(r.cqHead)
		for ctail := atomic.LoadUint32(r.cqTail); head != ctail; head++ {
			c := r.cqes[head&r.cqMask]
			if c.userData < uint64(len(n)) {
				n[c.userData] = c.res
			}
			done++
		}
		atomic.StoreUint32(r.cqHead, head)
	}
	return nil
}

// abandon gives up on a batch: the buffers of reads that may still be in flight are kept
// alive, and every read of the batch counts as failed (the caller reads those files again
// with pread).
func (r *ring) abandon(fds []int, bufs [][]byte, n []int32, submitted, done int, errno syscall.Errno) error {
	if submitted > done {
		lostBuffers.Lock()
		lostBuffers.bufs = append(lostBuffers.bufs, bufs...)
		lostBuffers.Unlock()
	}
	for i := range fds {
		n[i] = -int32(syscall.EIO)
	}
	return errors.Join(errRingBroken, errno)
}
