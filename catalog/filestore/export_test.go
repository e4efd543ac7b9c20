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
