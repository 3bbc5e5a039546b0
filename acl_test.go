package tier

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tier-cache/tier/internal/redistest"
)

// aclSetUser is the least-privilege user README.md documents for the
// namespace "app": its keys, its invalidation channel and the replicas'
// writer channels after it, and the commands tier sends, nothing else.
var aclSetUser = []any{"ACL", "SETUSER", "tier-app", "on", ">s3cret", "resetkeys", "resetchannels",
	"~app:*", "&app:invalidate", "&app:invalidate:writer:*",
	"-@all", "+get", "+mget", "+set", "+unlink", "+publish", "+subscribe", "+ping", "+multi", "+exec", "+evalsha", "+eval", "+del"}

// tier works as a user that may touch only its namespace and channels; and
// as one whose ACL names the invalidation channel alone, without the
// writer channels (see invalidate.Bus.WriterChannel), as README.md used to
// document it.
func TestLeastPrivilegeACLUser(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		name   string
		keep   func(rule any) bool
		writer bool
	}{
		{"documented", func(any) bool { return true }, true},
		{"channel only", func(r any) bool { return r != "&app:invalidate:writer:*" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rules []any
			for _, r := range aclSetUser {
				if tc.keep(r) {
					rules = append(rules, r)
				}
			}
			testACLUser(t, srv, rules, tc.writer)
		})
	}
}

func testACLUser(t *testing.T, srv *redistest.Server, rules []any, writer bool) {
	ctx := context.Background()
	if err := srv.Client(t).Do(ctx, rules...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	connect := func() *redis.Client {
		o := srv.Options()
		o.Username, o.Password = "tier-app", "s3cret"
		c := redis.NewClient(o)
		t.Cleanup(func() { c.Close() })
		return c
	}
	a := newCache[string](t, Options{Redis: connect(), Namespace: "app"})
	b := newCache[string](t, Options{Redis: connect(), Namespace: "app"})
	bEvents := events(b)
	if has := a.bus.WriterChannel() != ""; has != writer {
		t.Fatalf("writer channel: %v, want %v", has, writer)
	}

	if err := a.Set(ctx, "k", "v1"); err != nil {
		t.Fatalf("Set as the ACL user: %v", err)
	}
	await(t, bEvents, "keys")
	if r, err := b.Fetch(ctx, "k", constLoader("unused")); err != nil || r.Value != "v1" || r.Source != SourceFar {
		t.Fatalf("Fetch as the ACL user: %+v, %v", r, err)
	}
	if v, err := b.Get(ctx, "new", constLoader("loaded")); err != nil || v != "loaded" {
		t.Fatalf("a load as the ACL user: %q, %v", v, err)
	}
	if err := a.Delete(ctx, "k", "new"); err != nil {
		t.Fatalf("Delete as the ACL user: %v", err)
	}
	await(t, bEvents, "keys")
	if _, err := b.GetMany(ctx, []string{"x", "y"}, BatchLoaderFunc[string](func(context.Context, []string) (map[string]string, error) {
		return map[string]string{"x": "1"}, nil
	})); err != nil {
		t.Fatalf("GetMany as the ACL user: %v", err)
	}
	for _, c := range []*Cache[string]{a, b} {
		if st := c.Stats(); st.FarErrors != 0 {
			t.Fatalf("the ACL user hit %d far errors: a permission is missing", st.FarErrors)
		}
	}
	// And the user really is confined to its namespace.
	if err := connect().Set(ctx, "other:k", "v", 0).Err(); err == nil {
		t.Fatal("the ACL user wrote outside its namespace")
	}
}
