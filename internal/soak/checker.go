package soak

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
)

// Times are nanoseconds since the checker's origin; these stand for "before
// everything" (the initial state) and "not completed" (a write still under
// way, or one that failed and may take effect at any time).
const (
	never   = math.MinInt64
	pending = math.MaxInt64
)

// maxKept is how many violations a Checker keeps in full; the rest are
// only counted.
const maxKept = 20

// Checker judges reads against the writes that completed before them.
// Create one with [NewChecker]; it is safe for concurrent use.
type Checker struct {
	slack  int64
	origin time.Time

	mu     sync.Mutex
	writes []write // by version - 1
	keys   map[string]*keyHist
	rep    Counts
	kept   []Violation
}

// write is one write or delete.
type write struct {
	key        *keyHist
	start, end int64 // end is pending until it completes
	del        bool
	pos        int32 // index in key.done once completed
}

// keyHist is the completed writes of one key, in the order they completed.
type keyHist struct {
	name     string
	done     []uint64 // versions, by end time
	maxStart []int64  // maxStart[i]: the latest start among done[:i+1]
	lastDel  uint64   // the completed delete that ended last; 0: none
	openDels int      // deletes under way
}

// Counts is what a Checker has judged.
type Counts struct {
	Writes, Deletes   int   // begun
	FailedWrites      int   // writes and deletes that returned an error
	Reads             int   // reads checked
	FailedReads       int   // reads that returned an error (not judged)
	Absent            int   // reads that found no value
	StaleWithinSlack  int   // reads of an overwritten value, within Slack
	Violations        int   // reads of a value overwritten more than Slack before they started
	MaxLag            int64 // nanoseconds: the longest any read value had been overwritten
	MaxLagOfViolation int64
}

// Violation is a read that returned a value overwritten in real time
// before the read started.
type Violation struct {
	Key           string
	ReadStart     time.Duration // since the checker's origin
	ReadEnd       time.Duration
	Returned      uint64 // the version read; 0: absent
	Found         bool
	ReturnedEnd   time.Duration // when the write of the returned version completed
	Newer         uint64        // a write that started after that and completed before the read
	NewerStart    time.Duration
	NewerEnd      time.Duration
	NewerIsDelete bool
	Lag           time.Duration // ReadStart - NewerEnd: how long the value had been overwritten
	Reason        string
}

func (v Violation) String() string {
	if v.Newer == 0 {
		return fmt.Sprintf("key %q: read [%v, %v] returned %s: %s", v.Key, v.ReadStart, v.ReadEnd, v.returned(), v.Reason)
	}
	what := "write"
	if v.NewerIsDelete {
		what = "delete"
	}
	return fmt.Sprintf("key %q: read [%v, %v] returned %s; %s %d %s", v.Key, v.ReadStart, v.ReadEnd, v.returned(), what, v.Newer, v.Reason)
}

func (v Violation) returned() string {
	if !v.Found {
		return "absent"
	}
	return fmt.Sprintf("version %d", v.Returned)
}

// NewChecker returns a checker that tolerates reads of a value overwritten
// at most slack before they started.
func NewChecker(slack time.Duration) *Checker {
	return &Checker{slack: int64(slack), origin: time.Now(), keys: map[string]*keyHist{}}
}

// now is the time since origin; call it with mu held, so that the order of
// timestamps is the order of the records.
func (c *Checker) now() int64 { return int64(time.Since(c.origin)) }

func (c *Checker) key(name string) *keyHist {
	k := c.keys[name]
	if k == nil {
		k = &keyHist{name: name}
		c.keys[name] = k
	}
	return k
}

// A Write is a write under way; call End when it returns.
type Write struct {
	c       *Checker
	Version uint64
}

// BeginWrite records the start of a write of key (del: a delete) and
// returns its version, unique across keys, starting at 1. Apply the write
// to the source of truth and to the cache after this call.
func (c *Checker) BeginWrite(key string, del bool) Write {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Write{c: c, Version: c.beginWrite(c.now(), key, del)}
}

func (c *Checker) beginWrite(at int64, key string, del bool) uint64 {
	k := c.key(key)
	c.writes = append(c.writes, write{key: k, start: at, end: pending, del: del, pos: -1})
	if del {
		c.rep.Deletes++
		k.openDels++
	} else {
		c.rep.Writes++
	}
	return uint64(len(c.writes))
}

// End records that the write returned. A write that failed may still
// take effect at any time, so it never counts as completed.
func (w Write) End(err error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	w.c.endWrite(w.c.now(), w.Version, err != nil)
}

func (c *Checker) endWrite(at int64, version uint64, failed bool) {
	w := &c.writes[version-1]
	k := w.key
	if failed {
		c.rep.FailedWrites++
		return // an open delete stays open: it may still land
	}
	w.end = at
	w.pos = int32(len(k.done))
	m := w.start
	if n := len(k.maxStart); n > 0 && k.maxStart[n-1] > m {
		m = k.maxStart[n-1]
	}
	k.done = append(k.done, version)
	k.maxStart = append(k.maxStart, m)
	if w.del {
		k.openDels--
		k.lastDel = version
	}
}

// A Read is a read under way; call End when it returns.
type Read struct {
	c     *Checker
	key   string
	start int64
}

// BeginRead records the start of a read of key.
func (c *Checker) BeginRead(key string) Read {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Read{c: c, key: key, start: c.now()}
}

// End judges the read: it returned version (found), no value (!found), or
// failed (err != nil, counted and not judged). It reports whether the read
// was a violation.
func (r Read) End(version uint64, found bool, err error) bool {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	if err != nil {
		r.c.rep.FailedReads++
		return false
	}
	return r.c.endRead(r.c.now(), r.key, r.start, version, found)
}

func (c *Checker) endRead(at int64, key string, start int64, version uint64, found bool) bool {
	c.rep.Reads++
	if !found {
		c.rep.Absent++
	}
	k := c.key(key)
	v := Violation{Key: key, ReadStart: time.Duration(start), ReadEnd: time.Duration(at), Returned: version, Found: found}

	// The writes of key that completed Slack before the read started are
	// k.done[:n]; the latest of their starts is the newest state the read
	// must not predate.
	n := sort.Search(len(k.done), func(i int) bool {
		return c.writes[k.done[i]-1].end > start-c.slack
	})
	newest := int64(never)
	if n > 0 {
		newest = k.maxStart[n-1]
	}

	// x is the write the read is explained by: the version it returned, or
	// for "absent", the delete that ended last (or the initial state).
	var xEnd int64
	var xPos int32 = -1
	switch {
	case found:
		if version == 0 || version > uint64(len(c.writes)) {
			return c.violate(v, 0, "no write of this version had started before the read ended")
		}
		x := &c.writes[version-1]
		if x.key != k || x.del {
			return c.violate(v, 0, "the version was not a write of this key")
		}
		xEnd, xPos = x.end, x.pos
	case k.openDels > 0:
		xEnd = pending // a delete under way explains it
	case k.lastDel != 0:
		x := &c.writes[k.lastDel-1]
		xEnd, xPos = x.end, x.pos
	default:
		xEnd = never
	}
	if xEnd == pending {
		return false
	}

	// The lag: how long before the read started the first write that
	// began after x completed had itself completed.
	lag := int64(0)
	var newer uint64
	for i := int(xPos) + 1; i < len(k.done); i++ {
		y := &c.writes[k.done[i]-1]
		if y.end >= start {
			break
		}
		if y.start > xEnd {
			lag, newer = start-y.end, k.done[i]
			break
		}
	}
	if lag > c.rep.MaxLag {
		c.rep.MaxLag = lag
	}
	if xEnd >= newest {
		if lag > 0 {
			c.rep.StaleWithinSlack++
		}
		return false
	}
	if newer == 0 { // cannot happen: newest > xEnd names such a write
		return c.violate(v, lag, "overwritten before the read started")
	}
	y := &c.writes[newer-1]
	if xEnd != never {
		v.ReturnedEnd = time.Duration(xEnd)
	}
	v.Newer, v.NewerStart, v.NewerEnd = newer, time.Duration(y.start), time.Duration(y.end)
	v.NewerIsDelete = y.del
	written := fmt.Sprintf("after the returned value was written (%v)", v.ReturnedEnd)
	if xEnd == never {
		written = "over the initial empty state"
	}
	return c.violate(v, lag, fmt.Sprintf("started at %v, %s, and completed at %v, %v before the read started (slack %v)",
		v.NewerStart, written, v.NewerEnd, time.Duration(lag), time.Duration(c.slack)))
}

func (c *Checker) violate(v Violation, lag int64, reason string) bool {
	c.rep.Violations++
	if lag > c.rep.MaxLagOfViolation {
		c.rep.MaxLagOfViolation = lag
	}
	v.Lag, v.Reason = time.Duration(lag), reason
	if len(c.kept) < maxKept {
		c.kept = append(c.kept, v)
	}
	return true
}

// Counts returns what the checker has judged so far.
func (c *Checker) Counts() Counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rep
}

// Violations returns the first violations found (at most 20).
func (c *Checker) Violations() []Violation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Violation(nil), c.kept...)
}

// Op is one operation of a recorded history, for [Check].
type Op struct {
	Kind       Kind
	Key        string
	Version    uint64 // written, or read (with Found)
	Found      bool   // a read found a value
	Failed     bool   // the operation returned an error
	Start, End time.Duration
}

// Kind is the kind of an [Op].
type Kind uint8

// The kinds of operation.
const (
	KindRead Kind = iota + 1
	KindWrite
	KindDelete
)

// Check judges a recorded history, as a live Checker would have: the
// versions of its writes may be any distinct numbers (0 is "absent"). It
// returns the counts and the first violations.
func Check(ops []Op, slack time.Duration) (Counts, []Violation) {
	type event struct {
		at    int64
		order int // at one instant: ends of writes, then starts, then ends of reads
		op    int
	}
	var events []event
	for i, op := range ops {
		switch op.Kind {
		case KindWrite, KindDelete:
			events = append(events, event{int64(op.Start), 1, i}, event{int64(op.End), 0, i})
		case KindRead:
			events = append(events, event{int64(op.Start), 1, i}, event{int64(op.End), 2, i})
		}
	}
	sort.SliceStable(events, func(a, b int) bool {
		if events[a].at != events[b].at {
			return events[a].at < events[b].at
		}
		return events[a].order < events[b].order
	})
	c := &Checker{slack: int64(slack), keys: map[string]*keyHist{}}
	internal := map[uint64]uint64{} // the history's version -> the checker's
	for _, e := range events {
		op := ops[e.op]
		switch {
		case op.Kind != KindRead && e.order == 1:
			internal[op.Version] = c.beginWrite(e.at, op.Key, op.Kind == KindDelete)
		case op.Kind != KindRead:
			c.endWrite(e.at, internal[op.Version], op.Failed)
		case e.order == 2 && op.Failed:
			c.rep.FailedReads++
		case e.order == 2:
			v := internal[op.Version]
			if op.Found && v == 0 {
				v = uint64(len(c.writes)) + 1 // a version no write began
			}
			c.endRead(e.at, op.Key, int64(op.Start), v, op.Found)
		}
	}
	external := make(map[uint64]uint64, len(internal))
	for h, v := range internal {
		external[v] = h
	}
	for i := range c.kept {
		c.kept[i].Returned = external[c.kept[i].Returned]
		c.kept[i].Newer = external[c.kept[i].Newer]
	}
	return c.rep, c.kept
}
