package tier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// heldGet starts a Get of key whose load waits until finish releases it
// and then returns value; finish returns what the Get returned. The load
// also ends when the cache is closed, so that a test that fails while it
// holds the load ends instead of hanging in Close.
func heldGet(t *testing.T, c *Cache[string], key, value string) (finish func() string) {
	t.Helper()
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan string, 1)
	go func() {
		v, _ := c.Get(context.Background(), key, LoaderFunc[string](func(ctx context.Context, _ string) (string, error) {
			close(entered)
			select {
			case <-release:
				return value, nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}))
		done <- v
	}()
	within(t, entered, "the held load")
	return func() string {
		close(release)
		return within(t, done, "the held Get")
	}
}

// A load that read the source before another replica's Set does not
// overwrite the Set's value in Redis: the Set replaced its lease.
func TestSlowLoadDoesNotOverwriteSet(t *testing.T) {
	m, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	finish := heldGet(t, b, "k", "stale")
	if raw, _ := m.Get("tier:k"); !isLease([]byte(raw)) {
		t.Fatalf("Redis holds %q during the load, want its lease", raw)
	}
	if err := a.Set(context.Background(), "k", "fresh"); err != nil {
		t.Fatal(err)
	}
	if v := finish(); v != "stale" {
		t.Fatalf("the waiting caller got %q, want what its load returned", v)
	}
	if got, _ := m.Get("tier:k"); !strings.Contains(got, "fresh") {
		t.Fatalf("Redis holds %q after Set(fresh) and the slow load", got)
	}
	third := newCache[string](t, Options{Redis: client})
	if v, _ := third.Get(context.Background(), "k", constLoader("unused")); v != "fresh" {
		t.Fatalf("after Set(fresh) and the slow load, replicas read %q", v)
	}
}

// A load that read the source before a Delete does not write the deleted
// value back into Redis: the Delete removed its lease.
func TestSlowLoadDoesNotResurrectDeletedKey(t *testing.T) {
	m, client, _ := newMiniredis(t)
	loading := newCache[string](t, Options{Redis: client})
	deleting := newCache[string](t, Options{Redis: client})
	finish := heldGet(t, loading, "k", "old")
	if !m.Exists("tier:k") {
		t.Fatal("the load took no lease under the key")
	}
	if err := deleting.Delete(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if v := finish(); v != "old" {
		t.Fatalf("the waiting caller got %q", v)
	}
	if m.Exists("tier:k") {
		got, _ := m.Get("tier:k")
		t.Fatalf("Redis holds %q for k after Delete", got)
	}
}

// While one replica loads, another reads its lease as a miss (not as
// corrupt bytes), loads too, and writes nothing over the lease: the value
// in Redis is the lease holder's.
func TestLeaseIsAMissForOthers(t *testing.T) {
	m, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	finish := heldGet(t, a, "k", "from a")
	if r, err := b.Fetch(context.Background(), "k", constLoader("from b")); err != nil || r.Value != "from b" || r.Source != SourceLoad {
		t.Fatalf("b during a's load: %+v, %v", r, err)
	}
	if st := b.Stats(); st.Corrupt != 0 || st.FarHits != 0 {
		t.Fatalf("b took a lease for a value: %+v", st)
	}
	if raw, _ := m.Get("tier:k"); !isLease([]byte(raw)) {
		t.Fatalf("b wrote %q over a's lease", raw)
	}
	finish()
	if got, _ := m.Get("tier:k"); !strings.Contains(got, "from a") {
		t.Fatalf("Redis holds %q; want a's value, written over its own lease", got)
	}
}

// A load that fails gives its lease back before its callers return, so
// that the next load, here or on another replica, stores its value.
func TestFailedLoadGivesItsLeaseBack(t *testing.T) {
	m, client, _ := newMiniredis(t)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client})
	ctx := context.Background()
	if _, err := a.Get(ctx, "e", failLoader(errors.New("source down"))); err == nil {
		t.Fatal("Get with a failing loader succeeded")
	}
	if m.Exists("tier:e") {
		raw, _ := m.Get("tier:e")
		t.Fatalf("right after the failed load, Redis holds %q", raw)
	}
	if _, err := b.Get(ctx, "e", constLoader("v")); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get("tier:e"); !strings.Contains(got, "v") {
		t.Fatalf("Redis holds %q after b's load, want its value", got)
	}
}

// Close cancels a load under way and waits for it, and the load gives its
// lease back: right after Close returns, Redis holds nothing under the
// key, so that the other replicas' loads store their values at once.
func TestCloseDuringLoadGivesTheLeaseBack(t *testing.T) {
	m, client, _ := newMiniredis(t)
	c, err := New[string](Options{Redis: client, FarTimeout: generous})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	entered := make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := c.Get(context.Background(), "k", LoaderFunc[string](func(ctx context.Context, _ string) (string, error) {
			close(entered)
			<-ctx.Done()
			return "", ctx.Err()
		}))
		done <- err
	}()
	within(t, entered, "the load")
	if raw, _ := m.Get("tier:k"); !isLease([]byte(raw)) {
		t.Fatalf("Redis holds %q during the load, want its lease", raw)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	if err := within(t, closed, "Close"); err != nil {
		t.Fatal(err)
	}
	if m.Exists("tier:k") {
		raw, _ := m.Get("tier:k")
		t.Fatalf("right after Close returned, Redis holds %q", raw)
	}
	if err := within(t, done, "the caller"); !errors.Is(err, ErrClosed) {
		t.Fatalf("the caller got %v, want ErrClosed", err)
	}
}

// leaseWatch is a go-redis hook that reports its replica's index on seen,
// once, when a GET returns a lease: the replica has found another's load
// under way.
type leaseWatch struct {
	replica int
	once    sync.Once
	seen    chan<- int
}

func (h *leaseWatch) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *leaseWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if s, ok := cmd.(*redis.StringCmd); ok && cmd.Name() == "get" && isLease([]byte(s.Val())) {
			h.once.Do(func() { h.seen <- h.replica })
		}
		return err
	}
}

func (h *leaseWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// With WaitForLoads, 5 replicas × 200 goroutines missing one cold key
// cause one load: the replica holding the lease loads, the others wait
// for its value in Redis.
func TestWaitForLoadsOneLoadAcrossReplicas(t *testing.T) {
	m, _, _ := newMiniredis(t)
	const replicas, perReplica = 5, 200
	var loads [replicas]atomic.Int64
	release := make(chan struct{})
	seen := make(chan int, replicas)
	var cs []*Cache[string]
	for i := range replicas {
		client := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		client.AddHook(&leaseWatch{replica: i, seen: seen})
		t.Cleanup(func() { client.Close() })
		cs = append(cs, newCache[string](t, Options{Redis: client, WaitForLoads: patience}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, replicas*perReplica)
	for i, c := range cs {
		loader := LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
			loads[i].Add(1)
			select {
			case <-release:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			return "loaded", nil
		})
		for range perReplica {
			wg.Go(func() {
				v, err := c.Get(context.Background(), "cold", loader)
				if err == nil && v != "loaded" {
					err = errors.New("got " + v)
				}
				if err != nil {
					errs <- err
				}
			})
		}
	}
	// Every replica but the lease holder finds the lease, and so waits,
	// before the load may end.
	waiting := map[int]bool{}
	for len(waiting) < replicas-1 {
		select {
		case i := <-seen:
			waiting[i] = true
		case <-time.After(patience):
			t.Fatalf("replicas %v found the lease, want %d of them", waiting, replicas-1)
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var total int64
	for i, c := range cs {
		n := loads[i].Load()
		total += n
		st := c.Stats()
		if waiting[i] && (n != 0 || st.LoadWaits != 1) {
			t.Fatalf("replica %d found another's lease, then loaded %d times and waited %d times; want no load and 1 wait", i, n, st.LoadWaits)
		}
		if st.FarErrors != 0 {
			t.Fatalf("replica %d: %d far errors", i, st.FarErrors)
		}
	}
	if total != 1 {
		t.Fatalf("%d replicas × %d goroutines: the loader ran %d times, want 1", replicas, perReplica, total)
	}
}

// A wait that outlasts WaitForLoads ends in a load of this replica's own,
// which writes nothing over the other's lease.
func TestWaitForLoadsGivesUp(t *testing.T) {
	m, client, _ := newMiniredis(t)
	release := make(chan struct{})
	defer close(release)
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: client, WaitForLoads: 50 * time.Millisecond})
	entered := make(chan struct{})
	go a.Get(context.Background(), "k", LoaderFunc[string](func(ctx context.Context, key string) (string, error) {
		close(entered)
		select { // holds its lease until the test ends
		case <-release:
		case <-ctx.Done():
		}
		return "a", nil
	}))
	within(t, entered, "a's load")
	v, err := b.Get(context.Background(), "k", constLoader("b"))
	if err != nil || v != "b" {
		t.Fatalf("b.Get = %q, %v; want its own load after the wait", v, err)
	}
	if st := b.Stats(); st.LoadWaits != 1 || st.Loads != 1 {
		t.Fatalf("b: %d waits, %d loads; want 1 and 1", st.LoadWaits, st.Loads)
	}
	if raw, _ := m.Get("tier:k"); !isLease([]byte(raw)) {
		t.Fatalf("b wrote %q over a's lease", raw)
	}
}

// WaitForLoads must not outlast the lease it waits on.
func TestWaitForLoadsValidated(t *testing.T) {
	_, client, _ := newMiniredis(t)
	_, err := New[string](Options{Redis: client, WaitForLoads: time.Minute, LoadTimeout: time.Second})
	if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "WaitForLoads") || !strings.Contains(err.Error(), "LoadTimeout") {
		t.Fatalf("New = %v, want an error naming WaitForLoads and LoadTimeout", err)
	}
	c := newCache[string](t, Options{Redis: client, WaitForLoads: time.Second, LoadTimeout: time.Second})
	if _, err := c.Get(context.Background(), "k", constLoader("v")); err != nil {
		t.Fatal(err)
	}
}

// loseLeaseReply is a go-redis hook that, once armed, lets the next
// command or pipeline that takes leases (SET ... NX) run on the server,
// then reports it failed, as when its reply is lost to a timeout.
type loseLeaseReply struct {
	armed atomic.Bool
}

var errReplyLost = fmt.Errorf("i/o timeout, reply lost: %w", context.DeadlineExceeded)

func takesLease(cmd redis.Cmder) bool {
	if cmd.Name() != "set" {
		return false
	}
	for _, a := range cmd.Args() {
		if s, ok := a.(string); ok && strings.EqualFold(s, "nx") {
			return true
		}
	}
	return false
}

func (h *loseLeaseReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *loseLeaseReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err == nil && takesLease(cmd) && h.armed.CompareAndSwap(true, false) {
			cmd.SetErr(errReplyLost)
			return errReplyLost
		}
		return err
	}
}

func (h *loseLeaseReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err == nil && len(cmds) > 0 && takesLease(cmds[0]) && h.armed.CompareAndSwap(true, false) {
			for _, c := range cmds {
				c.SetErr(errReplyLost)
			}
			return errReplyLost
		}
		return err
	}
}

// newLosingClient returns a client of m whose next lease reply is lost.
func newLosingClient(t *testing.T, addr string) *redis.Client {
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	h := &loseLeaseReply{}
	h.armed.Store(true)
	client.AddHook(h)
	t.Cleanup(func() { client.Close() })
	return client
}

// A lease whose reply was lost (the server took it, the client timed out
// waiting) is given back when the load ends, as any other: it must not
// stay in Redis until LoadTimeout, when every replica's loads of the key
// would store nothing (or, with WaitForLoads, wait in vain).
func TestLeaseWithLostReplyIsGivenBack(t *testing.T) {
	m, _, _ := newMiniredis(t)
	c := newCache[string](t, Options{Redis: newLosingClient(t, m.Addr())})
	if v, err := c.Get(context.Background(), "k", constLoader("v")); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if raw, err := m.Get("tier:k"); err == nil && isLease([]byte(raw)) {
		t.Fatalf("right after the load, Redis holds its lease %q: it stays for LoadTimeout", raw)
	}
}

// A replica waiting for another's load (WaitForLoads) whose load fails
// and gives its lease back loads at once, under a lease of its own, and
// stores its value.
func TestWaitForLoadsAfterAFailedLoad(t *testing.T) {
	m, client, _ := newMiniredis(t)
	seen := make(chan int, 1)
	bClient := redis.NewClient(&redis.Options{Addr: m.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	bClient.AddHook(&leaseWatch{replica: 1, seen: seen})
	t.Cleanup(func() { bClient.Close() })
	a := newCache[string](t, Options{Redis: client})
	b := newCache[string](t, Options{Redis: bClient, WaitForLoads: patience})
	entered, release := make(chan struct{}), make(chan struct{})
	aDone := make(chan error, 1)
	go func() {
		_, err := a.Get(context.Background(), "k", LoaderFunc[string](func(ctx context.Context, _ string) (string, error) {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return "", errors.New("source down")
		}))
		aDone <- err
	}()
	within(t, entered, "a's load")
	bDone := make(chan Result[string], 1)
	go func() {
		r, err := b.Fetch(context.Background(), "k", constLoader("from b"))
		if err != nil {
			r.Value = err.Error()
		}
		bDone <- r
	}()
	within(t, seen, "b finding a's lease")
	close(release)
	if err := within(t, aDone, "a's Get"); err == nil {
		t.Fatal("a's failed load returned no error")
	}
	if r := within(t, bDone, "b's Get"); r.Value != "from b" || r.Source != SourceLoad {
		t.Fatalf("b = %+v, want its own load", r)
	}
	if st := b.Stats(); st.LoadWaits != 1 || st.Loads != 1 {
		t.Fatalf("b: %d waits, %d loads; want 1 and 1", st.LoadWaits, st.Loads)
	}
	if got, _ := m.Get("tier:k"); !strings.Contains(got, "from b") {
		t.Fatalf("Redis holds %q, want b's value", got)
	}
}
