package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The example tells the seed's story on an embedded Redis: a load, near and
// far hits, one load per replica in a stampede, a cached "not found".
func TestSchemaServiceStory(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out, "", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		`replica-A Get("users"): 3 columns from load`,
		`replica-A Get("users"): 3 columns from near`,
		`replica-B Get("users"): 3 columns from far `,
		`replica-B Get("users"): 3 columns from near`,
		`replica-A Get("missing"): tier: not found from load`,
		`replica-A Get("missing"): tier: not found from near`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// 200 callers on two replicas: at most one load each.
	if !strings.Contains(got, "200 callers, 1 load(s)") && !strings.Contains(got, "200 callers, 2 load(s)") {
		t.Errorf("stampede line wrong:\n%s", got)
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}
