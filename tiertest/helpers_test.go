package tiertest_test

import (
	"fmt"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// stubT stands in for a *testing.T where there is none (in examples), or
// where a test checks that tiertest fails its caller: it runs its cleanups
// when ended, and Fatalf panics with the message.
type stubT struct {
	testing.TB // nil: tiertest calls only the methods below
	cleanups   []func()
}

// newT returns a stubT and the function that ends it.
func newT() (*stubT, func()) {
	t := &stubT{}
	return t, func() {
		for i := len(t.cleanups) - 1; i >= 0; i-- {
			t.cleanups[i]()
		}
	}
}

func (t *stubT) Helper()          {}
func (t *stubT) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }
func (t *stubT) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
