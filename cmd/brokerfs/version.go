package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is brokerfs's version when a release build sets it:
//
//	go build -ldflags "-X main.version=v1.2.0" ./cmd/brokerfs
//
// Otherwise it is the module version Go stamped into the binary: v1.2.0 for
// `go install github.com/brokerfs/brokerfs/cmd/brokerfs@v1.2.0`, a pseudo-version or (devel)
// for a build from a checkout.
var version string

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("version", stderr)
	fl.Usage = func() {
		fmt.Fprintf(stderr, "Usage: brokerfs version (or brokerfs --version)\n\nPrints brokerfs's version, the commit it was built from and the Go version that built it.\n")
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 0 {
		return usageError{"version takes no arguments"}
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprint(stdout, formatVersion(version, bi))
	return nil
}

// formatVersion says what a binary is, from its build information (nil when it has none):
//
//	brokerfs v1.2.0
//	commit   0123abcd... (modified), 2026-12-02T20:37:12Z
//	go       go1.26.8 linux/amd64
//
// The commit and its time are Go's vcs.revision and vcs.time, stamped by `go build` in a git
// checkout; "(modified)" is vcs.modified: the tree had uncommitted changes.
func formatVersion(v string, bi *debug.BuildInfo) string {
	commit, modified, when := "unknown (built without version control information)", false, ""
	if bi != nil {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			case "vcs.time":
				when = s.Value
			}
		}
	}
	if v == "" {
		v = "(unknown)"
	}
	if modified {
		commit += " (modified)"
	}
	if when != "" {
		commit += ", " + when
	}
	return fmt.Sprintf("brokerfs %s\ncommit   %s\ngo       %s %s/%s\n", v, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
