package filestore

import "time"

// WaitChecked waits for the background check of a listing made from the listing index.
func (c *Catalog) WaitChecked() { c.bg.Wait() }

// ReadHeadsWithRing sets whether heads may be read through io_uring (else with pread only);
// it returns a function restoring the setting.
func ReadHeadsWithRing(on bool) (restore func()) {
	old := ringOff.Load()
	ringOff.Store(!on)
	return func() { ringOff.Store(old) }
}

// RingUsed reports whether a listing read heads through io_uring since the last call.
func RingUsed() bool { return ringUsed.Swap(false) }

// SetWarmFresh sets how long a listing Warm made serves the first caller after it; it
// returns a function restoring the setting.
func SetWarmFresh(d time.Duration) (restore func()) {
	old := warmFresh
	warmFresh = d
	return func() { warmFresh = old }
}

// FailRingAt makes the n-th batched read of the next listings fail as a broken io_uring would;
// it returns a function restoring io_uring.
func FailRingAt(n int) (restore func()) {
	ringFailAt.Store(int64(n))
	return func() { ringFailAt.Store(0); ringBroken.Store(false) }
}
