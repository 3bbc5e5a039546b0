package suite

import (
	"bytes"
	"strings"
	"testing"
)

// fakeResults gives every implementation of every group of the full
// report the same figures, except that tier's first metric is tierValue.
func fakeResults(tierValue float64) []GroupResult {
	var out []GroupResult
	for _, g := range Groups(Full) {
		gr := GroupResult{Group: g}
		for _, impl := range g.Impls {
			r := Result{Impl: impl, Samples: make([][]float64, len(g.Metrics))}
			for m := range g.Metrics {
				r.Samples[m] = []float64{100, 90, 110, 100, 105}
				if impl.Role == Tier && m == 0 {
					r.Samples[m] = []float64{tierValue, tierValue, tierValue, tierValue, tierValue}
				}
			}
			gr.Results = append(gr.Results, r)
		}
		out = append(out, gr)
	}
	return out
}

func TestReportRendersEveryRow(t *testing.T) {
	var buf bytes.Buffer
	Render(&buf, Header{Machine: "test CPU, 2 cores", Date: "today", Go: "go1.x", Redis: "fake", Config: Full, Command: "cmd",
		Load: [2]string{"0.10 0.20 0.30", "0.40 0.50 0.60"}}, fakeResults(100))
	out := buf.String()
	for _, want := range []string{"test CPU, 2 cores", "today", "go1.x", "median of 5 runs", "0.10 0.20 0.30 at the start, 0.40 0.50 0.60 at the end"} {
		if !strings.Contains(out, want) {
			t.Errorf("the header lacks %q", want)
		}
	}
	// Every section the issue asks for is there.
	for _, s := range []string{"## Near hit\n", "## Far hit", "## Write", "## Stale window", "## Redis outage", "## Stampede", "## Near hit ratio", "## Heap per entry", "## Targets", "## Where tier loses"} {
		if !strings.Contains(out, s) {
			t.Errorf("no section %q", s)
		}
	}
	rows := 0
	for _, g := range Groups(Full) {
		if !strings.Contains(out, "| "+g.Case+" | **tier**") {
			t.Errorf("no row for %s (%s)", g.ID, g.Case)
		}
		for _, impl := range g.Impls {
			rows++
			fig := formatStat(Stat{100, 90, 110}, g.Metrics[0], 5)
			if impl.Role == Tier {
				fig = formatStat(Stat{100, 100, 100}, g.Metrics[0], 5)
			}
			if !strings.Contains(out, " | "+implLabel(impl)+" | "+fig+" |") {
				t.Errorf("%s: no row for %s with its median and range", g.ID, impl.Name)
			}
		}
	}
	if got := strings.Count(out, "\n| "); got < rows {
		t.Errorf("%d table rows for %d implementations", got, rows)
	}
	// The headline peers of the issue are all measured.
	for _, want := range []string{"otter", "golang-lru", "ristretto", "go-redis/cache", "local.Cache",
		"go-redis GET (floor)", "go-redis MGET (floor)", "go-redis MGET + msgpack decode (floor)", "raw write (floor)",
		"tier, Near.Admission", "Belady's optimum (ceiling)"} {
		if !strings.Contains(out, "| "+want) {
			t.Errorf("no row for %s", want)
		}
	}
	if !strings.Contains(out, "Nowhere in this run") {
		t.Error("equal figures were reported as losses")
	}
}

func TestReportListsLosses(t *testing.T) {
	// tier at 150 against peers at 100 loses every lower-is-better row
	// and wins every hit ratio.
	results := fakeResults(150)
	var buf bytes.Buffer
	Render(&buf, Header{Config: Full}, results)
	out := buf.String()
	if !strings.Contains(out, "| 1.50× |") {
		t.Error("no 1.50× ratio in the tables")
	}
	losses := Losses(results)
	for _, l := range losses {
		if l.Metric.HigherBetter {
			t.Errorf("a higher hit ratio was listed as a loss: %s", l.Group.ID)
		}
		if !strings.Contains(out, "(`"+l.Group.ID+"`): tier 150 "+l.Metric.Name+" against") ||
			!strings.Contains(out, " "+l.Peer+"'s 100 (1.50×)") {
			t.Errorf("loss of %s to %s not listed", l.Group.ID, l.Peer)
		}
	}
	if len(losses) == 0 || !strings.Contains(out, "near-100k-1g") {
		t.Error("no loss listed")
	}
	// And a tier hit ratio below the peers' is a loss.
	low := Losses(fakeResults(50))
	found := false
	for _, l := range low {
		found = found || l.Metric.HigherBetter
	}
	if !found {
		t.Error("a lower hit ratio was not listed as a loss")
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Stat
	}{
		{[]float64{3, 1, 2}, Stat{2, 1, 3}},
		{[]float64{4, 1, 3, 2}, Stat{2.5, 1, 4}},
		{[]float64{7}, Stat{7, 7, 7}},
	} {
		if got, _ := Summarize(tc.in); got != tc.want {
			t.Errorf("Summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	if _, ok := Summarize(nil); ok {
		t.Error("Summarize(nil) reported a figure")
	}
}

func TestLossReasonPrefersTheClosestKey(t *testing.T) {
	old := lossReasons
	defer func() { lossReasons = old }()
	lossReasons = map[string]string{
		"near|*":         "any near",
		"near|otter":     "near otter",
		"near-10k|otter": "near 10k otter",
	}
	for _, tc := range []struct{ id, peer, want string }{
		{"near-10k-par", "otter", "near 10k otter"},
		{"near-100k-1g", "otter", "near otter"},
		{"near-100k-1g", "ristretto", "any near"},
		{"stampede-1", "go-redis/cache", ""},
	} {
		if got := lossReason(tc.id, tc.peer); got != tc.want {
			t.Errorf("lossReason(%q, %q) = %q, want %q", tc.id, tc.peer, got, tc.want)
		}
	}
}

// A missed goal is followed by what keeps tier from it, or by the admission
// that nothing is known; a run that meets every goal lists no reasons.
func TestTargetsSayWhyTheyAreMissed(t *testing.T) {
	render := func(tierValue float64) string {
		var buf bytes.Buffer
		renderTargets(&buf, fakeResults(tierValue))
		return buf.String()
	}
	slow := render(1000)
	for _, want := range []string{"Why the goals not met are missed", whyGetManyTime, whyDecode,
		whyNear100k, "**parallel near hit ≤ otter's** (`near-10k-par`): no reason recorded."} {
		if !strings.Contains(slow, want) {
			t.Errorf("a run that misses the goals lacks %q", want)
		}
	}
	if fast := render(50); strings.Contains(fast, "Why the goals") || strings.Contains(fast, "**no**") {
		t.Errorf("a run that meets every goal lists reasons:\n%s", fast)
	}
}
