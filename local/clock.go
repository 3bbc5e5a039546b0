package local

import (
	"sync/atomic"
	"time"
)

// A Clock tells the cache what time it is. Deadlines of entries are computed
// from and compared with its readings, so it must not run backwards.
type Clock interface {
	Now() time.Time
}

// SystemClock is a [Clock] that reads [time.Now] on every call: exact, and
// slower than the default clock on a hit (see the package documentation).
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

const (
	// coarseResolution is how often the default clock's goroutine refreshes
	// the value that hits read; it is also the margin by which deadlines are
	// judged early under the default clock.
	coarseResolution = time.Millisecond
	// coarseParkAfter is how many ticks without a read make the goroutine park.
	coarseParkAfter = 1000
)

// coarseClock is the default clock: monotonic nanoseconds since start, read
// from an atomic that a goroutine refreshes every coarseResolution while
// the cache is read. When no one has read it for coarseParkAfter ticks the
// goroutine parks and stores 0; readers who see 0 read the system clock
// themselves and wake it. After stop, it stays at 0 for good, so a closed
// cache still judges deadlines exactly.
type coarseClock struct {
	start   time.Time
	now     atomic.Int64 // nanoseconds since start plus one; 0 while parked or stopped
	touched atomic.Bool  // read since the last tick
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newCoarseClock() *coarseClock {
	c := &coarseClock{
		start: time.Now(),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	c.now.Store(c.precise())
	go c.run()
	return c
}

// precise reads the monotonic clock; it never returns 0, so that 0 can mean
// "no deadline" for entries and "parked" for c.now.
func (c *coarseClock) precise() int64 { return int64(time.Since(c.start)) + 1 }

// read returns the current time in nanoseconds since start (plus one).
func (c *coarseClock) read() int64 {
	if n := c.now.Load(); n != 0 {
		if !c.touched.Load() {
			c.touched.Store(true)
		}
		return n
	}
	return c.readParked()
}

func (c *coarseClock) readParked() int64 {
	n := c.precise()
	c.touched.Store(true)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return n
}

func (c *coarseClock) run() {
	defer close(c.done)
	t := time.NewTicker(coarseResolution)
	defer t.Stop()
	idle := 0
	for {
		select {
		case <-c.stop:
			c.now.Store(0)
			return
		case <-t.C:
		}
		c.now.Store(c.precise())
		if c.touched.Swap(false) {
			idle = 0
			continue
		}
		if idle++; idle < coarseParkAfter {
			continue
		}
		// Park: readers now read the system clock until one wakes us.
		c.now.Store(0)
		t.Stop()
		select {
		case <-c.stop:
			return
		case <-c.wake:
		}
		c.now.Store(c.precise())
		t.Reset(coarseResolution)
		idle = 0
	}
}

// close stops the goroutine and waits for it. It is called once.
func (c *coarseClock) close() {
	close(c.stop)
	<-c.done
}
