package main

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/brokerfs/brokerfs/cache"
)

// defaultCacheDir is where the persistent cache lives unless --cache-dir says otherwise:
// $BROKERFS_CACHE_DIR if set; /var/cache/brokerfs for root (system and fstab mounts); else
// $XDG_CACHE_HOME/brokerfs (~/.cache/brokerfs).
func defaultCacheDir() string {
	if d := os.Getenv("BROKERFS_CACHE_DIR"); filepath.IsAbs(d) {
		return d
	}
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

// openCache opens the persistent cache the flags describe: --no-cache gives a private
// temporary one, removed when the mount ends; a cache directory that cannot be used gives
// none (one log line) and brokerfs serves without it. close releases it.
func (c *catalogFlags) openCache(log *slog.Logger) (store *cache.Store, close func(), err error) {
	max, err := parseSize(c.cacheMax)
	if err != nil {
		return nil, nil, usageError{fmt.Sprintf("--cache-max: %v", err)}
	}
	o := cache.Options{Dir: c.cacheDir, MaxBytes: max, TTL: c.cacheTTL, Logger: log}
	if c.noCache {
		dir, err := os.MkdirTemp("", "brokerfs-nocache-")
		if err != nil {
			log.Error("cannot create a temporary cache; serving without one", "err", err)
			return nil, func() {}, nil
		}
		o.Dir, o.Temporary = dir, true
	}
	store, err = cache.Open(o)
	if err != nil {
		log.Error("cannot use the cache directory; serving without a cache", "dir", o.Dir, "err", err)
		return nil, func() {}, nil
	}
	return store, func() { store.Close() }, nil
}

// parseSize parses a size like 10G, 512M, 1.5T or 4096 (bytes); K, M, G, T are powers of 1024.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsNaN(f) || f*float64(mult) > math.MaxInt64/2 {
		return 0, fmt.Errorf("not a size: %q (want e.g. 10G, 512M, 4096)", s)
	}
	return int64(f * float64(mult)), nil
}

// cacheDirUsable reports whether dir exists or can be made, and can be written.
func cacheDirUsable(dir string) bool {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false
	}
	return syscall.Access(dir, 2 /* W_OK */) == nil
}
