package fs

import (
	"strings"
	"testing"
)

// Lines in the form of the kernel's show_mountinfo (fs/proc_namespace.c): a mount point with a
// space (\040), optional fields, and two mounts stacked on one directory.
const mountinfoSample = `22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
88 30 0:52 / /mnt/blue\040sky ro,nosuid,nodev,relatime shared:40 - fuse.brokerfs brokerfs:/data/cat ro,user_id=0,group_id=0,default_permissions
89 30 0:53 / /mnt/stacked rw,relatime - fuse.brokerfs brokerfs:/a rw,user_id=0
90 89 0:54 / /mnt/stacked rw,relatime - tmpfs tmpfs rw
91 30 0:55 / /mnt/other rw,relatime master:1 - fuse.sshfs host:/x rw,user_id=0
`

func TestTopMountType(t *testing.T) {
	for _, c := range []struct{ dir, want string }{
		{"/mnt/blue sky", "fuse.brokerfs"},
		{"/mnt/blue\\040sky", ""},
		{"/mnt/stacked", "tmpfs"}, // the topmost mount counts
		{"/mnt/other", "fuse.sshfs"},
		{"/mnt", ""},
		{"/proc", "proc"},
	} {
		got, err := topMountType(strings.NewReader(mountinfoSample), c.dir)
		if err != nil || got != c.want {
			t.Errorf("topMountType(%q) = %q, %v; want %q", c.dir, got, err, c.want)
		}
	}
}
