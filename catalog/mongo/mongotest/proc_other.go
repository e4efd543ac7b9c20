//go:build !linux

package mongotest

import "os/exec"

// setParentDeath does nothing where the kernel cannot tie a child's life to its parent.
func setParentDeath(*exec.Cmd) {}
