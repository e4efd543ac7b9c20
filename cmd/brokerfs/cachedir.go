package main

import (
	"os"
	"path/filepath"
)

// defaultCacheDir is where the persistent cache lives unless --cache-dir says otherwise:
// /var/cache/brokerfs for root (system and fstab mounts), else $XDG_CACHE_HOME/brokerfs
// (~/.cache/brokerfs).
func defaultCacheDir() string {
	if os.Geteuid() == 0 {
		return "/var/cache/brokerfs"
	}
	if d := os.Getenv("XDG_CACHE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "brokerfs")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "brokerfs")
	}
	return filepath.Join(os.TempDir(), "brokerfs-cache-"+itoa(os.Geteuid()))
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
