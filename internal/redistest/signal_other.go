//go:build !unix

package redistest

import (
	"errors"
	"os"
)

var errNoSuspend = errors.New("suspending a process needs SIGSTOP, which this platform lacks")

// suspendProcess and resumeProcess fail: there is no SIGSTOP here.
func suspendProcess(*os.Process) error { return errNoSuspend }
func resumeProcess(*os.Process) error  { return errNoSuspend }
