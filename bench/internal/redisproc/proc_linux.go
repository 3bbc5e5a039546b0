package redisproc

import "syscall"

// sysProcAttr asks the kernel to kill the server if this process dies
// without closing it, so no redis-server outlives the report.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
