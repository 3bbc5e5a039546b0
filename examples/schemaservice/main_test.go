package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tier-cache/tier/internal/redistest"
)

// The example tells the seed's story on an embedded Redis: a load, near and
// far hits, a change on one replica that the other serves next from Redis,
// one load in all for a stampede on both replicas, a cached "not found".
func TestSchemaServiceStory(t *testing.T) {
	checkStory(t, "")
}

// The same story on a real redis-server.
func TestSchemaServiceStoryOnRealRedis(t *testing.T) {
	checkStory(t, redistest.Start(t).Addr())
}

func checkStory(t *testing.T, addr string) {
	var out bytes.Buffer
	if err := run(&out, addr, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	want := []string{
		`replica-A Get users: version 1 from load`,
		`replica-A Get users: version 1 from near`,
		`replica-B Get users: version 1 from far `,
		`replica-B Get users: version 1 from near`,
		// The change: B's first read of version 2 comes from Redis.
		"replica-A Set users v2 (column \"email\" added)\n   replica-B Get users: version 2 from far\n",
		// WaitForLoads: the second replica waits for the first's load.
		`200 callers, 1 load(s) of the store`,
		`replica-A Get missing: tier: not found from load`,
		`replica-A Get missing: tier: not found from near`,
	}
	at := 0
	for _, w := range want {
		i := strings.Index(got[at:], w)
		if i < 0 {
			t.Errorf("output lacks %q after byte %d", w, at)
			continue
		}
		at += i + len(w)
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
