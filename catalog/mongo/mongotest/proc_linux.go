package mongotest

import (
	"os/exec"
	"syscall"
)

// setParentDeath makes the kernel kill the server if the test process dies without
// cleaning up (a panic, a timeout, SIGKILL), so that no server outlives its test.
func setParentDeath(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
