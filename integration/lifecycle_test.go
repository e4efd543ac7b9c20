package integration

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSignalUnmount: the server unmounts and exits 0 on SIGINT (Ctrl-C), also while a file
// is held open, and exits 0 when someone runs `umount MNT`. (SIGTERM is what every other
// test's cleanup sends.)
func TestSignalUnmount(t *testing.T) {
	t.Parallel()
	catalog := demoCatalog(t)

	t.Run("SIGINT", func(t *testing.T) {
		s := startServer(t, catalog)
		if _, err := os.ReadDir(s.mnt); err != nil {
			t.Fatal(err)
		}
		s.stop(syscall.SIGINT)
	})

	t.Run("SIGINT while a file is open", func(t *testing.T) {
		s := startServer(t, catalog)
		f, err := os.Open(filepath.Join(s.mnt, "latest", "start.json"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s.stop(syscall.SIGINT)
	})

	// A signal as soon as the mount shows in /proc/self/mountinfo, as a script or systemd
	// stopping a just-started mount sends it: the server may still be finishing the mount.
	t.Run("SIGTERM right after mounting", func(t *testing.T) {
		for i := 0; i < 10 && !t.Failed(); i++ {
			s := startServerNoWait(t, catalog)
			for !isMounted(s.mnt) {
				select {
				case <-s.done:
					t.Fatalf("brokerfs exited before mounting: %v\n%s", s.err, s.logs)
				default:
				}
			}
			s.stop(syscall.SIGTERM)
		}
	})

	t.Run("umount", func(t *testing.T) {
		s := startServer(t, catalog)
		if err := unmount(s.mnt); err != nil {
			t.Fatal(err)
		}
		s.waitExit()
	})
}
